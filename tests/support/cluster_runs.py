"""The cluster's run history read back from the database, and what must hold of it: runs never
overlap, each scheduled slot starts at most one run, and a run whose node was lost is closed
as such and never claims success afterwards."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .cluster import NODE_LOST, SUCCEEDED, Probe
from .cluster_faults import epoch_seconds

REPLACED_WITHIN = 2.0
"""A replacement run starts this soon (seconds) after the lost run's ``node lost`` line."""
SLOT_WITHIN = (-0.5, 3.0)
"""A scheduled run is created this soon (seconds) after its slot was claimed."""


@dataclass(frozen=True)
class Run:
    """One job log and its lines (times as ``time.time()`` seconds)."""

    id: int
    name: str
    status: int
    created: float
    updated: float
    lines: list[tuple[float, str]]

    @property
    def lost_at(self) -> float | None:
        """When it was closed as ``node lost`` (that line's time), if it was."""
        return next((at for at, message in self.lines if message == NODE_LOST), None)

    @property
    def succeeded(self) -> bool:
        """True when one of its lines says it completed."""
        return any(message.startswith(SUCCEEDED) for _, message in self.lines)

    @property
    def last_line(self) -> str:
        """Its last line (empty when none)."""
        return self.lines[-1][1] if self.lines else ""


@dataclass(frozen=True)
class Slot:
    """A claimed slot of the schedule: its time, the claiming node, when it was claimed."""

    slot: float
    node: str
    claimed: float


async def read_runs(probe: Probe) -> list[Run]:
    """Every run with its lines, in id order."""
    lines: dict[int, list[tuple[float, str]]] = {}
    for job_log_id, created, message in await probe.rows(
        "SELECT job_log_id, created_at, message FROM job_log_details ORDER BY id"
    ):
        lines.setdefault(int(job_log_id), []).append((epoch_seconds(created), str(message)))
    return [
        Run(int(i), str(name), int(status), epoch_seconds(c), epoch_seconds(u), lines.get(i, []))
        for i, name, status, c, u in await probe.rows(
            "SELECT id, name, status, created_at, updated_at FROM job_logs ORDER BY id"
        )
    ]


async def read_slots(probe: Probe) -> list[Slot]:
    """Every claimed slot, in order."""
    return [
        Slot(epoch_seconds(slot), str(node), epoch_seconds(claimed))
        for slot, node, claimed in await probe.rows(
            "SELECT slot, node, claimed_at FROM sync_ticks ORDER BY slot"
        )
    ]


def overlaps(runs: Sequence[Run]) -> list[str]:
    """Consecutive runs (those not closed as node lost) whose times overlap."""
    kept = sorted((run for run in runs if run.lost_at is None), key=lambda run: run.created)
    return [
        f"{a.name} ({a.created:.3f}..{a.updated:.3f}) overlaps {b.name} (from {b.created:.3f})"
        for a, b in itertools.pairwise(kept)
        if a.updated > b.created
    ]


def replacements(runs: Sequence[Run]) -> list[Run]:
    """The runs started to replace a run whose node was lost."""
    lost = [at for run in runs if (at := run.lost_at) is not None]
    return [run for run in runs if any(at <= run.created <= at + REPLACED_WITHIN for at in lost)]


def slot_problems(runs: Sequence[Run], slots: Sequence[Slot]) -> list[str]:
    """Scheduled runs (every run but replacements) that no claimed slot explains, and slots
    that started more than one run."""
    replaced = {run.id for run in replacements(runs)}
    problems: list[str] = []
    per_slot: dict[float, list[str]] = {}
    low, high = SLOT_WITHIN
    for run in runs:
        if run.id in replaced:
            continue
        owner = next((s for s in slots if low <= run.created - s.claimed <= high), None)
        if owner is None:
            problems.append(f"run {run.name} was started by no claimed slot")
        else:
            per_slot.setdefault(owner.slot, []).append(run.name)
    problems += [
        f"slot {slot:.0f} started {len(names)} runs: {names}"
        for slot, names in per_slot.items()
        if len(names) > 1
    ]
    return problems


def stale_problems(runs: Sequence[Run], run_ids: Iterable[int]) -> list[str]:
    """Runs of a node that was stopped past its lease: each must be closed as node lost, in
    error, and never say it completed (its late swap refused)."""
    by_id = {run.id: run for run in runs}
    problems = []
    for run_id in run_ids:
        run = by_id[run_id]
        if run.lost_at is None or run.status != 2 or run.succeeded:
            problems.append(
                f"run {run.name}: status {run.status}, node lost line "
                f"{'present' if run.lost_at else 'missing'}, last line {run.last_line!r}"
            )
    return problems
