"""Three nodes on one PostgreSQL, 300 event-stream clients spread over them, and the faults a
cluster meets: the node running the sync killed, hung past its lease, cut off from the
database; the database restarted; every node restarted in turn. Checked from outside only
(HTTP, signals, the database as psql sees it): one sync at a time, each slot run at most once,
a lost node's run closed and replaced at once, open_orders always complete, and every client
— those whose node died too — received exactly the table's lines, none lost, none twice.

``make test`` runs the short round (each fault once); ``make cluster-test`` the full one (each
five times, 20-second runs). The figures are printed (``-s``) and written beside the test's
files as cluster-figures.md.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.sources.demo import ROWS as DEMO_ROWS
from tests.support.cluster import (
    SUCCESS,
    VIEW_TOKEN,
    Cluster,
    Plan,
    Probe,
    cluster,
)
from tests.support.cluster_faults import (
    Outcome,
    all_up,
    cut_lease_session,
    kill_sync_node,
    restart_postgres,
    rolling_restart,
    stop_sync_node,
    succeeded_after,
)
from tests.support.cluster_runs import (
    Run,
    Slot,
    overlaps,
    read_runs,
    read_slots,
    slot_problems,
    stale_problems,
)
from tests.support.cluster_watch import Watch
from tests.support.delivery_probe import DeliveryProbe
from tests.support.faults import raise_open_files
from tests.support.figures import Figures, milliseconds, percentile, seconds
from tests.support.sse_fleet import Fleet, FleetReport

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

CROSS_NODE_P99 = 0.050
"""Commit on one node to receipt on another node's stream, 99th percentile (seconds)."""
KILL_FAILOVER = 3.0
"""SIGKILL of the sync's node to its replacement run's first line (seconds)."""
MARGIN = 1.0
"""Lines written this close to a fault (seconds) time the fault, not the delivery."""


def client_starts(ids: Sequence[int], clients: int) -> list[int]:
    """Where each client starts: most from the latest line, one in ten from the very first,
    one in ten from the middle of what is there."""
    latest = ids[-1] if ids else 0
    middle = ids[len(ids) // 2] if ids else 0
    return [0 if i % 10 == 0 else middle if i % 10 == 1 else latest for i in range(clients)]


def error_lines(logs: str) -> list[str]:
    """The lines a node logged at ERROR or CRITICAL (tracebacks folded in), and the start of
    any traceback it printed raw."""
    return [
        line
        for line in logs.splitlines()
        if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
    ]


async def faults(nodes: Cluster, probe: Probe, plan: Plan) -> list[Outcome]:
    """Each fault ``plan.repeat`` times, in turn; after each turn a run must succeed."""
    outcomes: list[Outcome] = []
    for turn in range(plan.repeat):
        outcomes.append(await kill_sync_node(nodes, probe, plan))
        # The short round stops the node between its last batch and its swap: the late swap.
        outcomes.append(await stop_sync_node(nodes, probe, plan, last_batch=turn % 2 == 0))
        outcomes.append(await cut_lease_session(nodes, probe, plan))
        outcomes.append(await restart_postgres(nodes, probe, plan))
        outcomes += await rolling_restart(nodes, probe, plan)
        await all_up(nodes)
        latest = int(await probe.value("SELECT coalesce(max(id), 0) FROM job_logs"))
        await succeeded_after(probe, latest - 1, within=plan.interval + 2 * plan.run_seconds + 30)
    return outcomes


def fault_figures(figures: Figures, outcomes: Sequence[Outcome], plan: Plan) -> None:
    """Each fault's failover and what else it measured."""
    for kind in dict.fromkeys(outcome.fault for outcome in outcomes):
        same = [outcome for outcome in outcomes if outcome.fault == kind]
        failovers = [o.failover for o in same if o.failover is not None]
        if kind == "SIGKILL":
            figures.check(
                "SIGKILL → replacement's first line",
                seconds(failovers),
                f"≤ {KILL_FAILOVER:g} s",
                max(failovers) <= KILL_FAILOVER,
            )
        elif kind.startswith("SIGSTOP"):
            bound = plan.lease + 3
            figures.check(
                f"{kind} → replacement's first line",
                seconds(failovers),
                f"≤ lease + 3 = {bound:g} s",
                max(failovers) <= bound,
            )
        elif failovers:
            figures.add(f"{kind} → next run's first line", seconds(failovers))
        for name in dict.fromkeys(key for o in same for key in o.figures):
            if name in ("replacement", "exit code"):
                continue
            values = [o.figures[name] for o in same if name in o.figures]
            if kind == "lease session terminated" and name == "run ended":
                bound = plan.lease + 3
                figures.check(
                    f"{kind} → its run ended",
                    seconds(values),
                    f"≤ lease + 3 = {bound:g} s",
                    max(values) <= bound,
                )
            else:
                figures.add(f"{kind}: {name}", seconds(values))
    codes = [int(o.figures["exit code"]) for o in outcomes if "exit code" in o.figures]
    figures.check(
        "SIGTERM exit codes", str(sorted(set(codes))), "0", bool(codes) and set(codes) == {0}
    )


def run_figures(
    figures: Figures, runs: Sequence[Run], problems: dict[str, list[str]], outcomes: list[Outcome]
) -> None:
    """The run history: counts, durations, overlaps, slots, the runs of lost nodes."""
    succeeded = [run for run in runs if run.status == SUCCESS]
    durations = [run.updated - run.created for run in succeeded]
    figures.add(
        "runs",
        f"{len(runs)}: {len(succeeded)} succeeded, "
        f"{sum(run.lost_at is not None for run in runs)} closed as node lost, "
        f"{len(runs) - len(succeeded)} in error",
    )
    if durations:
        figures.add("successful run's duration", f"median {statistics.median(durations):.1f} s")
    by_id = {run.id: run for run in runs}
    interrupted = [o.run_id for o in outcomes if o.fault.startswith(("SIGKILL", "SIGSTOP"))]
    not_lost = [by_id[i].name for i in interrupted if i is not None and by_id[i].lost_at is None]
    figures.check(
        "killed/stopped node's run closed as node lost",
        f"{len(interrupted) - len(not_lost)} of {len(interrupted)}",
        "all",
        not not_lost,
    )
    for kind in dict.fromkeys(o.fault for o in outcomes if o.run_id is not None):
        last = [by_id[o.run_id].last_line for o in outcomes if o.fault == kind and o.run_id]
        figures.add(f"{kind}: the interrupted run's last line", " / ".join(dict.fromkeys(last)))
    for name, found in problems.items():
        figures.check(name, "; ".join(found[:3]) or "none", "none", not found)


Delivery = tuple[int, float, int, float]
"""A line delivered: its run, its ``created_at``, the delivering node, seconds to arrival."""


def split_deliveries(
    deliveries: Iterable[Delivery],
    writers: dict[int, str | None],
    names: Sequence[str],
    faulty: Sequence[tuple[float, float]],
) -> tuple[list[float], list[float], int]:
    """Seconds to arrival on the writing node's streams and on the others' (``writers``: each
    run's node), for the lines written outside the ``faulty`` windows; and how many were
    left out (written during a fault, or by a node not seen holding the lease)."""
    same: list[float] = []
    cross: list[float] = []
    left_out = 0
    for job_log_id, created, node, took in deliveries:
        writer = writers.get(job_log_id)
        if writer is None or any(start <= created <= end for start, end in faulty):
            left_out += 1
        else:
            (same if writer == names[node] else cross).append(took)
    return same, cross, left_out


def delivery_figures(
    figures: Figures,
    probe: DeliveryProbe,
    fleet: Fleet,
    writers: dict[int, str | None],
    names: Sequence[str],
    faulty: Sequence[tuple[float, float]],
) -> None:
    """Commit → stream: as the probe saw it (a process following one stream per node), and
    as the 300 clients did (their event loop's own lag included)."""
    same, cross, left_out = split_deliveries(
        ((r.job_log_id, r.created, r.node, r.seconds) for r in probe.received()),
        writers,
        names,
        faulty,
    )
    figures.add("delivery, same node (commit → stream; probe)", milliseconds(same))
    figures.check(
        "delivery, across nodes (commit on A → B's stream; probe)",
        milliseconds(cross),
        f"p99 ≤ {CROSS_NODE_P99 * 1000:g} ms",
        bool(cross) and percentile(cross, 0.99) <= CROSS_NODE_P99,
    )
    d = fleet.deliveries
    same, cross, fleet_left_out = split_deliveries(
        zip(d.job_log_ids, d.created, d.nodes, d.seconds, strict=True), writers, names, faulty
    )
    # One process reads all 300 streams: a line reaches them in a burst it works through.
    figures.add(
        "delivery to the 300 clients, same node (their reading included)", milliseconds(same)
    )
    figures.add("delivery to the 300 clients, across nodes (same)", milliseconds(cross))
    figures.add(
        "deliveries not timed (written during a fault)",
        f"probe {left_out:,}, clients {fleet_left_out:,}",
    )


@dataclass
class Observed:
    """What a round saw."""

    outcomes: list[Outcome]
    report: FleetReport
    runs: list[Run]
    slots: list[Slot]
    leftovers: list[str]
    """Staging tables of runs that have ended."""


async def ride_out(
    nodes: Cluster, plan: Plan, probe: Probe, fleet: Fleet, timer: DeliveryProbe
) -> Observed:
    """The faults against the running cluster, then a quiet run; what the clients received."""
    await fleet.start()
    with timer:
        outcomes = await faults(nodes, probe, plan)
        latest = int(await probe.value("SELECT max(id) FROM job_logs"))
        await succeeded_after(probe, latest, within=plan.interval + 2 * plan.run_seconds + 30)
        table = await probe.detail_ids()
        await fleet.caught_up(table[-1])
    leftovers = await probe.rows(
        "SELECT tablename FROM pg_tables WHERE tablename LIKE 'open\\_orders\\_staging\\_%' "
        "AND NOT EXISTS (SELECT 1 FROM job_logs WHERE status IN (0, 1) "
        "AND tablename = 'open_orders_staging_' || id)"
    )
    return Observed(
        outcomes,
        fleet.check(table, table[-1]),
        await read_runs(probe),
        await read_slots(probe),
        [str(row[0]) for row in leftovers],
    )


async def test_three_nodes_ride_out_kills_hangs_cuts_and_restarts(
    plan: Plan, tmp_path: Path
) -> None:
    raise_open_files(4096)
    figures = Figures(
        f"Cluster round `{plan.name}`: 3 nodes, {plan.clients} event-stream clients, "
        f"each fault {plan.repeat} times, runs of ~{plan.run_seconds:.0f} s, lease {plan.lease:g} s"
    )
    with cluster(tmp_path, plan.node_env()) as nodes:
        probe = Probe(nodes.admin_url)
        watch = Watch(nodes.admin_url, {DEMO_ROWS})
        watch.start()
        try:
            await succeeded_after(probe, 0, within=plan.interval + 2 * plan.run_seconds + 30)
            ids = await probe.detail_ids()
            fleet = Fleet(
                nodes.urls, VIEW_TOKEN, client_starts(ids, plan.clients), silence=3 * plan.ping
            )
            timer = DeliveryProbe(tmp_path / "deliveries.txt", VIEW_TOKEN, ids[-1], nodes.urls)
            try:
                seen = await ride_out(nodes, plan, probe, fleet, timer)
            finally:
                await fleet.close()
        finally:
            await watch.stop()
            await probe.close()
        alive = [node.name for node in nodes.nodes if node.running]
        logs = nodes.logs()
        errors = {node.name: error_lines(node.logs()) for node in nodes.nodes}
    outcomes, report, runs = seen.outcomes, seen.report, seen.runs
    stale = [o.run_id for o in outcomes if o.fault.startswith("SIGSTOP") and o.run_id]
    fault_figures(figures, outcomes, plan)
    figures.check(
        "open runs at once (every 50 ms)",
        f"max {watch.open_max} ({watch.runs.samples:,} samples)",
        "≤ 1",
        watch.open_max <= 1,
    )
    figures.check(
        "open_orders totals read",
        ", ".join(f"{total}: {n:,} times" for total, n in watch.totals.items()),
        f"{DEMO_ROWS:,} only (before the first swap: absent or 0)",
        not watch.bad_totals,
    )
    run_figures(
        figures,
        runs,
        {
            "overlapping runs": overlaps(runs),
            "slots with more than one run, runs without a slot": slot_problems(runs, seen.slots),
            "stopped node's late work counted": stale_problems(runs, stale),
        },
        outcomes,
    )
    figures.check(
        "lines to every client (exactly the table's from its start)",
        f"{report.received:,} received by {report.clients} clients over {report.streams:,} "
        f"streams: {report.lost} lost, {report.duplicated} twice, "
        f"{report.out_of_order} out of order, {report.foreign} not in the table",
        "0 lost, 0 twice",
        report.exact,
    )
    figures.add(
        "client stream endings", ", ".join(f"{k} {v:,}" for k, v in report.problems.items())
    )
    delivery_figures(
        figures,
        timer,
        fleet,
        {run.id: watch.node_at(run.created) for run in runs},
        [node.name for node in nodes.nodes],
        [(o.at - MARGIN, o.settled + MARGIN) for o in outcomes],
    )
    lags = watch.lags
    figures.add(
        "the clients' event loop lag (in their delivery figures)",
        f"p99 {percentile(lags, 0.99) * 1000:.1f} ms, max {max(lags, default=0) * 1000:.1f} ms",
    )
    figures.add("staging tables of ended runs left at the end", ", ".join(seen.leftovers) or "none")
    figures.check("nodes up at the end", ", ".join(alive), "all 3", len(alive) == 3)
    error_figure(figures, errors, tmp_path / "node-errors.txt")
    figures.write(tmp_path / "cluster-figures.md")
    assert not figures.failed, f"{figures.table()}\n{report.examples}\n{logs[-20000:]}"


def error_figure(figures: Figures, errors: dict[str, list[str]], path: Path) -> None:
    """The nodes' ERROR lines, written to ``path``; how many, and the commonest."""
    path.write_text(
        "".join(f"{name}: {line}\n" for name, lines in errors.items() for line in lines)
    )
    kinds = Counter(re.sub(r"^\S+ \S+ ", "", line)[:90] for v in errors.values() for line in v)
    figures.add(
        f"nodes' ERROR lines ({path.name})",
        f"{sum(map(len, errors.values()))}: "
        + "; ".join(f"{n} times: {text}" for text, n in kinds.most_common(4)),
    )
