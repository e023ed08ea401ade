"""A test's figures as a table docs can quote: each a name, what was measured, the bound it is
held to (if any) and whether it held; checked all together, so one failure hides no other."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (``share`` 0.99 for p99) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def seconds(values: Sequence[float]) -> str:
    """``1.23 s`` for one value; ``max 1.23 s (0.91, 1.02, 1.23)`` for several."""
    if not values:
        return "none"
    if len(values) == 1:
        return f"{values[0]:.2f} s"
    return f"max {max(values):.2f} s ({', '.join(f'{v:.2f}' for v in values)})"


def milliseconds(values: Sequence[float]) -> str:
    """p50, p99 and max of ``values`` (seconds) in ms, with how many there were."""
    if not values:
        return "no samples"
    p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
    return (
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(values) * 1000:.1f} ms (n={len(values):,})"
    )


@dataclass(frozen=True)
class Figure:
    """One row of the table."""

    name: str
    value: str
    bound: str = ""
    held: bool | None = None
    """None: a figure, not a check."""


@dataclass
class Figures:
    """The rows, in the order they were added."""

    title: str
    rows: list[Figure] = field(default_factory=list)

    def add(self, name: str, value: str, bound: str = "", held: bool | None = None) -> None:
        """One row; ``held`` False marks a failed check."""
        self.rows.append(Figure(name, value, bound, held))

    def check(self, name: str, value: str, bound: str, held: bool) -> None:
        """One row that is a check."""
        self.add(name, value, bound, held)

    @property
    def failed(self) -> list[Figure]:
        """The checks that did not hold."""
        return [row for row in self.rows if row.held is False]

    def table(self) -> str:
        """The rows as a Markdown table under the title."""
        lines = [f"### {self.title}", "", "| | measured | bound | |", "| --- | --- | --- | --- |"]
        for row in self.rows:
            mark = {None: "", True: "ok", False: "**FAILED**"}[row.held]
            value = row.value.replace("|", "\\|")
            lines.append(f"| {row.name} | {value} | {row.bound} | {mark} |")
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> None:
        """Write the table to ``path`` and print it (``pytest -s`` shows it)."""
        text = self.table()
        path.write_text(text)
        print(f"\n{text}\n(written to {path})")
