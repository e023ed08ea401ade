"""The fan-out part of bench.postgres: how fast committed lines reach SSE clients
(bench/fanout_client.py) on one node. PostgreSQL: node A runs a demo run (``POST /api/job_logs``)
and the clients listen on node B, woken by LISTEN/NOTIFY; SQLite: they listen on the node running
the run. Latency is from each line's ``created_at`` (stamped by the writing node just before its
transaction) to receipt. Then lines committed by this process at 10/s (PostgreSQL: an INSERT and
``pg_notify`` a transaction, as the service writes; SQLite: an INSERT a transaction, seen by the
node's change check): commit to receipt. With each round, the receiving node's CPU and the lines
lost or duplicated.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from bench.common import Section, spread
from bench.fanout import Round, _combine, _send, _stop, read_line, spawn
from bench.postgres_common import SERVICE_ENV, _get, _order
from service.store import to_db
from service.store.postgres import CHANNEL
from tests.support.api import ADMIN
from tests.support.faults import cpu_seconds
from tests.support.postgres import PostgresServer
from tests.support.server import ServerProcess

# A demo run of 77 batches of 20 rows, 0.1 s apart: about ten lines a second.
DEMO_RUN = {"DEMO_DELAY_SECONDS": "0.1", "SYNC_BATCH_SIZE": "20"}
WRITER_RATE = 10.0
CLIENT_PROCESSES = 2


Sent = list[tuple[int, float]]


def demo_run(url: str) -> Sent:
    """Start a run on the node at ``url``, wait for its end; each line's id and created_at."""
    request = urllib.request.Request(f"{url}/api/job_logs", method="POST", headers=ADMIN)
    with urllib.request.urlopen(request, timeout=30) as response:
        log = json.load(response)
    for _ in range(1200):  # two minutes at most
        if _get(f"{url}/api/job_logs/{log['name']}")["status"] in ("success", "error"):
            break
        time.sleep(0.1)
    sent: Sent = []
    after: int | None = 0
    while after is not None:
        page = _get(f"{url}/api/job_logs/{log['name']}/details?limit=1000&after={after}")
        sent += [
            (d["id"], datetime.fromisoformat(d["created_at"]).timestamp()) for d in page["items"]
        ]
        after = page["next_after"]
    return sent


class PgWriter:
    """Commits lines to a finished run as another program would: INSERT, then ``pg_notify``
    as the service does, one transaction each."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.log_id = self._insert(
            "INSERT INTO job_logs (name, status, created_at, updated_at) "
            "VALUES ('bench-writer', 3, %(at)s, %(at)s) RETURNING id"
        )

    def _insert(self, statement: str, **values: object) -> int:
        at = datetime.now(UTC).replace(tzinfo=None)
        with self.conn.transaction():
            row = self.conn.execute(statement, {"at": at, **values}).fetchone()
            assert row is not None
            self.conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, json.dumps({"detail": row[0]})))
        return int(row[0])

    def __call__(self, n: int) -> tuple[int, float]:
        line = self._insert(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (%(log)s, %(message)s, %(at)s, %(at)s) RETURNING id",
            log=self.log_id,
            message=f"Batch {n:,} imported (500 records)",
        )
        return line, time.time()

    def close(self) -> None:
        self.conn.close()


class SqliteWriter:
    """Commits lines to a finished run as the Rails app or a ``run-once`` would."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.log_id = self._insert(
            "INSERT INTO job_logs (name, status, created_at, updated_at) "
            "VALUES ('bench-writer', 3, :at, :at) RETURNING id"
        )

    def _insert(self, statement: str, **values: object) -> int:
        self.conn.execute("BEGIN IMMEDIATE")
        (row_id,) = self.conn.execute(
            statement, {"at": to_db(datetime.now(UTC)), **values}
        ).fetchone()
        self.conn.execute("COMMIT")
        return int(row_id)

    def __call__(self, n: int) -> tuple[int, float]:
        line = self._insert(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (:log, :message, :at, :at) RETURNING id",
            log=self.log_id,
            message=f"Batch {n:,} imported (500 records)",
        )
        return line, time.time()

    def close(self) -> None:
        self.conn.close()


def paced(write: Callable[[int], tuple[int, float]], seconds: float) -> Sent:
    """``write`` at WRITER_RATE for ``seconds``."""
    sent = []
    start = time.monotonic()
    for n in range(round(WRITER_RATE * seconds)):
        delay = start + n / WRITER_RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent.append(write(n + 1))
    return sent


def fan_round(
    mode: str, receiver: ServerProcess, subscribers: int, write: Callable[[], Sent]
) -> Round:
    """Clients on ``receiver``, ``write`` while they listen, and what each received when."""
    clients = []
    try:
        for n in range(CLIENT_PROCESSES):
            share = subscribers // CLIENT_PROCESSES + (n < subscribers % CLIENT_PROCESSES)
            port = str(receiver.port)
            clients.append(
                spawn("bench.fanout_client", "--port", port, "--connections", str(share))
            )
        for client in clients:
            assert read_line(client, 60).strip() == "READY"
        assert receiver.process is not None
        before = cpu_seconds(receiver.process.pid)
        started = time.monotonic()
        sent = write()
        elapsed = time.monotonic() - started
        time.sleep(1.0)  # let the last lines arrive
        cpu = cpu_seconds(receiver.process.pid) - before
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
            json.dump({"sent": sent}, file)
        for client in clients:
            _send(client, f"REPORT {file.name}")
        reports = [json.loads(read_line(client, 120)) for client in clients]
        Path(file.name).unlink()
    finally:
        for client in clients:
            _stop(client)
    result = _combine(mode, WRITER_RATE, len(sent) / elapsed, cpu, reports)
    print(
        f"{mode:22} p50 {result.p50:6.1f} p99 {result.p99:6.1f} max {result.max:6.1f} ms "
        f"n={result.deliveries} lost={result.lost} dup={result.duplicated}",
        file=sys.stderr,
        flush=True,
    )
    return result


def fanout(server: PostgresServer, quick: bool, work: Path) -> dict[str, Any]:
    """Rounds of each kind on each backend, alternating."""
    subscribers, cycles, seconds = (100, 1, 5.0) if quick else (500, 3, 8.0)
    url = server.store_database("fanout")
    for name in ("node-a", "node-b", "sqlite"):
        (work / name).mkdir()
    env = {**SERVICE_ENV, **DEMO_RUN}
    database = work / "sqlite" / "data" / "joblog.sqlite3"
    rounds: dict[str, list[Round]] = {}
    with (
        ServerProcess(work / "node-a", DATABASE_URL=url, NODE_NAME="a", **env) as node_a,
        ServerProcess(work / "node-b", DATABASE_URL=url, NODE_NAME="b", **env) as node_b,
        ServerProcess(work / "sqlite", DATABASE_PATH=str(database), **env) as lite,
    ):
        for node in (node_a, node_b, lite):
            node.wait_ready(within=120)
        # Untimed: the first run makes the demo file and open_orders.
        runs = {"postgresql": partial(demo_run, node_a.url), "sqlite": partial(demo_run, lite.url)}
        for run in runs.values():
            run()
        receivers = {"postgresql": node_b, "sqlite": lite}
        writers: dict[str, PgWriter | SqliteWriter] = {
            "postgresql": PgWriter(url),
            "sqlite": SqliteWriter(database),
        }
        try:
            for n in range(cycles):
                for backend in _order(n):
                    mode = f"run {backend}"
                    result = fan_round(mode, receivers[backend], subscribers, runs[backend])
                    rounds.setdefault(mode, []).append(result)
                for backend in _order(n):
                    mode = f"writer {backend}"
                    write = partial(paced, writers[backend], seconds)
                    result = fan_round(mode, receivers[backend], subscribers, write)
                    rounds.setdefault(mode, []).append(result)
        finally:
            for writer in writers.values():
                writer.close()
    return {"subscribers": subscribers, "cycles": cycles, "seconds": seconds, "rounds": rounds}


FAN_LABELS = {
    "run postgresql": "PostgreSQL: demo run on node A, clients on node B (created_at → receipt)",
    "run sqlite": "SQLite: demo run on the clients' node (created_at → receipt)",
    "writer postgresql": "PostgreSQL: INSERT + pg_notify by another process, 10/s, clients "
    "on node B (commit → receipt)",
    "writer sqlite": "SQLite: INSERT by another process, 10/s, clients on the node "
    "(commit → receipt)",
}


def report_fanout(section: Section, measured: dict[str, Any]) -> None:
    """The fan-out table."""
    rounds: dict[str, list[Round]] = measured["rounds"]
    section.table(
        [
            f"{measured['subscribers']:,} SSE clients",
            "p50",
            "p99",
            "max",
            "receiving node's CPU per 1,000 deliveries",
            "lost / dup",
            "deliveries",
        ],
        [
            [
                FAN_LABELS[mode],
                spread([r.p50 for r in rs], "ms", 1),
                spread([r.p99 for r in rs], "ms", 1),
                spread([r.max for r in rs], "ms", 1),
                spread([r.cpu_per_1000 for r in rs], "ms", 1),
                f"{sum(r.lost for r in rs)} / {sum(r.duplicated for r in rs)}",
                f"{sum(r.deliveries for r in rs):,}",
            ]
            for mode in FAN_LABELS
            if (rs := rounds.get(mode))
        ],
    )
