"""What every benchmark shares: figures with their spread, goals, and its Markdown section.

A benchmark is a module ``bench.<name>`` with ``run(quick: bool) -> Section``. It measures the
service against its baseline in the same process run, alternately, and reports medians with
their spread; absolute times are context, ratios and goals are the point.
``python -m bench.run_all [--quick]`` runs each in a process of its own and writes
docs/benchmarks.md.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def spread(values: Sequence[float], unit: str = "s", digits: int = 2) -> str:
    """``median (min to max)`` with ``unit``."""
    return (
        f"{median(values):,.{digits}f} {unit} "
        f"({min(values):,.{digits}f} to {max(values):,.{digits}f})"
    ).replace(" )", ")")


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0 to 100) of ``values``, nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Goal:
    """A goal of the benchmark issue and whether this run met it."""

    text: str
    met: bool
    figure: str

    def row(self) -> str:
        """One row of the goals table."""
        return f"| {self.text} | {self.figure} | {'met' if self.met else '**not met**'} |"


@dataclass
class Section:
    """One benchmark's part of docs/benchmarks.md."""

    title: str
    command: str
    method: str
    tables: list[str] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """Add a Markdown table."""
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
        self.tables.append("\n".join(lines))

    def goal(self, text: str, met: bool, figure: str) -> None:
        """Record a goal, met or not, with the figure that decides it."""
        self.goals.append(Goal(text, met, figure))

    def markdown(self) -> str:
        """The section as Markdown."""
        parts = [f"## {self.title}", f"`{self.command}` — {self.method}", *self.tables]
        if self.goals:
            rows = "\n".join(goal.row() for goal in self.goals)
            parts.append(f"| goal | figure | |\n| --- | --- | --- |\n{rows}")
        parts += self.notes
        return "\n\n".join(parts) + "\n"
