"""What every benchmark shares: figures with their spread, goals, its Markdown section, its CLI.

A benchmark is a module ``bench.<name>`` with ``run(quick: bool) -> Section`` and a ``main()``
that hands it to :func:`main` here (``--quick``, ``--out``). It measures the service against its
baseline in the same process run, alternately, and reports medians with their spread; absolute
times are context, ratios and goals are the point. Servers are started as the tests start them
(tests/support/server.py's ``ServerProcess``).
``python -m bench.run_all [--quick]`` runs each in a process of its own and writes
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


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


def main(
    module: str,
    quick: str,
    measure: Callable[[argparse.Namespace], Section | None],
    options: Callable[[argparse.ArgumentParser], object] = lambda parser: None,
) -> None:
    """The command line of ``python -m bench.<module>``: ``--quick`` (``quick`` says what it
    shrinks) and ``--out PATH``, plus the module's own ``options``. ``measure`` gets the
    arguments and returns the section, which is written to ``--out`` when given and printed;
    None when it answered a helper mode of its own (a child process's ``--client``, ``--one``).
    """
    parser = argparse.ArgumentParser(prog=f"python -m bench.{module}")
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--out", type=Path, help="write the section's Markdown here")
    options(parser)
    args = parser.parse_args()
    section = measure(args)
    if section is None:
        return
    text = section.markdown()
    if args.out is not None:
        args.out.write_text(text)
    print(text)
