"""The faults the cluster test makes, each against the node running the sync mid-import, and
what each one measures: SIGKILL, SIGSTOP past the lease then SIGCONT, the lease's session
terminated, a PostgreSQL restart, and rolling SIGTERM restarts of every node.

Each waits until a run is importing (its last line ``Batch k/N imported``), finds its node
from the database (``sync_lease.node`` while the run lock is held, as an operator would), makes
the fault, and times what follows from the moment it was made: the replacement run's first
line, the interrupted run's end, the nodes ready again. Killed nodes are started again, so
every node is up when a fault returns.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from .cluster import SUCCESS, Cluster, Node, Plan, Probe
from .wait import wait_for_async

_BATCH = re.compile(r"^Batch (\d+)/(\d+) imported")


@dataclass
class Outcome:
    """One fault and what followed it (seconds from the fault)."""

    fault: str
    node: str
    at: float
    """When it was made (``time.time()``)."""
    settled: float
    """When what it set off was over (the nodes up again, the replacement running)."""
    run_id: int | None = None
    """The run the fault interrupted."""
    failover: float | None = None
    """To the first line of the run that replaced it."""
    figures: dict[str, float] = field(default_factory=dict)


def epoch_seconds(moment: datetime) -> float:
    """A database timestamp (UTC, naive) as ``time.time()`` seconds."""
    return moment.replace(tzinfo=UTC).timestamp()


async def importing_run(probe: Probe) -> tuple[int, int, int] | None:
    """The open run's id, batch and batch count when its last line is ``Batch k/N imported``."""
    found = await probe.rows(
        "SELECT l.id, (SELECT message FROM job_log_details d WHERE d.job_log_id = l.id "
        "ORDER BY d.id DESC LIMIT 1) FROM job_logs l WHERE l.status IN (0, 1) "
        "ORDER BY l.id DESC LIMIT 1"
    )
    if not found or found[0][1] is None:
        return None
    batch = _BATCH.match(found[0][1])
    return (int(found[0][0]), int(batch[1]), int(batch[2])) if batch else None


async def mid_import(
    cluster: Cluster, probe: Probe, plan: Plan, *, last_batch: bool = False
) -> tuple[int, Node]:
    """Wait until a run is importing — past its first batch and well before its last, or
    (``last_batch``) just after its last, before the swap — on a node that is up; the run's
    id and its node."""

    async def found() -> tuple[int, Node] | None:
        run = await importing_run(probe)
        if run is None:
            return None
        run_id, batch, batches = run
        wanted = batch == batches if last_batch else 2 <= batch <= batches - 2
        name = await probe.sync_node() if wanted else None
        if name is None:
            return None
        node = cluster.node(name)
        return (run_id, node) if node.running and not node.paused else None

    return await wait_for_async(
        found,
        f"a run importing ({'its last batch' if last_batch else 'mid-import'})",
        within=plan.interval + 2 * plan.run_seconds + 30,
        every=0.02,
    )


async def next_run(probe: Probe, after: int, within: float) -> tuple[int, float]:
    """The first run after ``after`` to write a line: its id and its first line's time."""

    async def found() -> tuple[int, float] | None:
        rows = await probe.rows(
            "SELECT l.id, min(d.created_at) FROM job_logs l JOIN job_log_details d "
            "ON d.job_log_id = l.id WHERE l.id > %s GROUP BY l.id ORDER BY l.id LIMIT 1",
            (after,),
        )
        return (int(rows[0][0]), epoch_seconds(rows[0][1])) if rows else None

    return await wait_for_async(found, f"a run after run {after}", within=within, every=0.05)


async def ended(probe: Probe, run_id: int, within: float) -> float:
    """Wait until run ``run_id`` has ended; the time it ended (its updated_at)."""

    async def found() -> float | None:
        rows = await probe.rows(
            "SELECT updated_at FROM job_logs WHERE id = %s AND status IN (2, 3)", (run_id,)
        )
        return epoch_seconds(rows[0][0]) if rows else None

    return await wait_for_async(found, f"run {run_id} ended", within=within, every=0.05)


async def restart(node: Node, within: float = 30.0) -> None:
    """Start ``node`` again and wait until it is ready."""
    await asyncio.to_thread(node.start)
    await asyncio.to_thread(node.wait_up, within)


async def all_up(cluster: Cluster, within: float = 30.0) -> None:
    """Start every node that is not running; return once each answers ``/readyz``."""
    for node in cluster.nodes:
        if node.paused:
            node.resume()
        if not node.running:
            await asyncio.to_thread(node.start)
    for node in cluster.nodes:
        await asyncio.to_thread(node.wait_up, within)


async def kill_sync_node(cluster: Cluster, probe: Probe, plan: Plan) -> Outcome:
    """SIGKILL the node running the sync mid-import; a node takes over within ~1 s."""
    run_id, node = await mid_import(cluster, probe, plan)
    at = time.time()
    node.kill()
    replacement, first_line = await next_run(probe, run_id, within=plan.lease + 20)
    closed = await ended(probe, run_id, within=10)
    await restart(node)
    return Outcome(
        "SIGKILL",
        node.name,
        at,
        max(first_line, closed),
        run_id,
        first_line - at,
        {"closed": closed - at, "replacement": replacement},
    )


async def stop_sync_node(
    cluster: Cluster, probe: Probe, plan: Plan, *, last_batch: bool
) -> Outcome:
    """SIGSTOP the node running the sync (mid-import, or between its last batch and its swap)
    for longer than the lease and until another node has taken over, then SIGCONT: its late
    work must count for nothing, and it must go on serving."""
    run_id, node = await mid_import(cluster, probe, plan, last_batch=last_batch)
    at = time.time()
    node.pause()
    try:
        replacement, first_line = await next_run(probe, run_id, within=plan.lease + 20)
        await asyncio.sleep(max(0.0, at + plan.lease + 1 - time.time()))
    finally:
        node.resume()
    resumed = time.time()
    await asyncio.to_thread(node.wait_up, 30)
    return Outcome(
        "SIGSTOP at the last batch" if last_batch else "SIGSTOP mid-import",
        node.name,
        at,
        time.time(),
        run_id,
        first_line - at,
        {
            "stopped": resumed - at,
            "ready again": time.time() - resumed,
            "replacement": replacement,
        },
    )


async def cut_lease_session(cluster: Cluster, probe: Probe, plan: Plan) -> Outcome:
    """pg_terminate_backend of the session holding the run lock: its node must stop the run."""
    run_id, node = await mid_import(cluster, probe, plan)
    session = await probe.lease_session()
    assert session is not None, "no session holds the run lock"
    pid, name = session
    assert node.name in name, f"the lock's session {name!r} is not {node.name}'s"
    at = time.time()
    assert await probe.value("SELECT pg_terminate_backend(%s)", (pid,)) is True
    stopped = await ended(probe, run_id, within=plan.lease + 20)
    _, first_line = await next_run(probe, run_id, within=plan.interval + plan.lease + 20)
    await all_up(cluster)
    return Outcome(
        "lease session terminated",
        node.name,
        at,
        stopped,
        run_id,
        first_line - at,
        {"run ended": stopped - at},
    )


async def restart_postgres(cluster: Cluster, probe: Probe, plan: Plan) -> Outcome:
    """Stop PostgreSQL (fast: every session ends) mid-import and start it again."""
    run_id, node = await mid_import(cluster, probe, plan)
    at = time.time()
    await asyncio.to_thread(cluster.server.stop)
    await asyncio.to_thread(cluster.server.start)
    back = time.time()
    await asyncio.gather(*(asyncio.to_thread(n.wait_up, 30) for n in cluster.nodes))
    ready = time.time()
    stopped = await ended(probe, run_id, within=plan.lease + 30)
    _, first_line = await next_run(probe, run_id, within=plan.interval + plan.lease + 30)
    return Outcome(
        "PostgreSQL restart",
        node.name,
        at,
        max(ready, stopped),
        run_id,
        first_line - at,
        {"down": back - at, "nodes ready": ready - at, "run ended": stopped - at},
    )


async def rolling_restart(cluster: Cluster, probe: Probe, plan: Plan) -> list[Outcome]:
    """SIGTERM each node in turn, mid-import, and start it again once it has exited."""
    await mid_import(cluster, probe, plan)
    outcomes = []
    for node in cluster.nodes:
        at = time.time()
        code, took = await asyncio.to_thread(node.stop, signal.SIGTERM, 15.0)
        started = time.time()
        await restart(node)
        outcomes.append(
            Outcome(
                "SIGTERM",
                node.name,
                at,
                time.time(),
                figures={"exit code": code, "stop": took, "ready": time.time() - started},
            )
        )
    return outcomes


async def stop_in_transaction(cluster: Cluster, probe: Probe, plan: Plan) -> Outcome:
    """SIGSTOP the node running the sync inside one of its transactions, past the lease.

    Every writer of job-log lines takes the schema's commit-order lock (a transaction-scoped
    advisory lock, (0x4A4C, 1)) at its first insert. Another writer — the Rails app, here the
    test — holds it a moment, so the node's next line waits for it inside its transaction; the
    node is stopped there and the lock let go: the stopped node's session takes it and stays
    idle in its transaction, as a node frozen between its INSERT and its COMMIT would.
    """
    run_id, node = await mid_import(cluster, probe, plan)
    async with await psycopg.AsyncConnection.connect(cluster.admin_url) as other_writer:
        await other_writer.execute("SELECT pg_advisory_xact_lock(19020, 1)")
        await wait_for_async(
            lambda: probe.rows(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 19020 "
                "AND objid = 1 AND NOT granted"
            ),
            "the sync's node waiting for the commit-order lock",
            within=plan.interval + plan.run_seconds,
            every=0.01,
        )
        node.pause()
        at = time.time()
        await other_writer.commit()
    failover: float | None = None
    try:
        _, first_line = await next_run(probe, run_id, within=plan.lease + 10)
        failover = first_line - at
        await asyncio.sleep(max(0.0, at + plan.lease + 1 - time.time()))
    except AssertionError:
        pass  # no replacement while it hangs: resumed all the same, and the caller told
    finally:
        node.resume()
    resumed = time.time()
    await asyncio.to_thread(node.wait_up, 30)
    return Outcome(
        "SIGSTOP inside a transaction",
        node.name,
        at,
        time.time(),
        run_id,
        failover,
        {"stopped": resumed - at},
    )


async def succeeded_after(probe: Probe, after: int, within: float) -> int:
    """Wait until a run after ``after`` has succeeded; its id."""

    async def found() -> int | None:
        value = await probe.value(
            "SELECT min(id) FROM job_logs WHERE id > %s AND status = %s", (after, SUCCESS)
        )
        return None if value is None else int(value)

    return await wait_for_async(found, f"a run after {after} succeeded", within=within)
