"""Several service nodes on one PostgreSQL, as real processes: the cluster test's and
``make cluster``'s.

One PostgreSQL 15 (tests/support/postgres.py's throwaway server) holds the job-log database;
each node is ``python -m service`` (tests/support/server.py's process) with ``DATABASE_URL``,
a ``NODE_NAME`` and a port of its own, the same tokens, and a short ``SYNC_LEASE_SECONDS``.
A :class:`Plan` says how long a run lasts and how often the faults come (the short round of
``make test``, the full round of ``make cluster-test``). A node is driven from outside only:
signals, ``/readyz``, and the database read by :class:`Probe` as an operator's psql would.

    python -m tests.support.cluster    # make cluster: three nodes on 8081-8083 until Ctrl-C
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import pytest

from service.sources.demo import ROWS as DEMO_ROWS

from .api import ADMIN_TOKEN
from .postgres import SUPERUSER, PostgresServer, postgres_server
from .server import ServerProcess
from .system import free_port

STORE_DATABASE = "joblog"
VIEW_TOKEN = "cluster-view-token-0123456789"
"""Every node's viewer token: what the event-stream clients prove themselves with."""
NODE_COUNT = 3
NODE_LOST = "ERROR: Interrupted - node lost"
JOB_STARTED = "Job started - SyncOpenOrdersJob"
SUCCEEDED = "Job completed successfully"
# The sync's run lock: a session advisory lock (0x4A4C 'JL', 10) held by a session named so.
RUN_LOCK = (19020, 10)
LEASE_SESSION = "joblog run lease"
PENDING, PROCESSING, ERROR, SUCCESS = 0, 1, 2, 3


@dataclass(frozen=True)
class Plan:
    """One round of the cluster test: the nodes' settings and how often each fault comes."""

    name: str
    repeat: int
    """How many times each fault is made."""
    batch_size: int
    demo_delay: float
    """The demo's pause after each batch: with ``batch_size``, how long a run lasts."""
    interval: float
    """SYNC_INTERVAL_SECONDS: a little longer than a run."""
    timeout: float
    """The round's deadline (pytest-timeout), in seconds."""
    lease: float = 3.0
    clients: int = 300
    ping: float = 1.0
    """SSE_PING_SECONDS: an idle stream's comment, by which a client tells a hung node."""

    @property
    def batches(self) -> int:
        """Batches per run."""
        return math.ceil(DEMO_ROWS / self.batch_size)

    @property
    def run_seconds(self) -> float:
        """About how long a run lasts."""
        return self.batches * self.demo_delay

    def node_env(self) -> dict[str, str]:
        """The settings every node of the round shares (besides the database and its name)."""
        return {
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "VIEW_TOKEN": VIEW_TOKEN,
            "HOST": "127.0.0.1",
            "SYNC_LEASE_SECONDS": f"{self.lease:g}",
            "SYNC_INTERVAL_SECONDS": f"{self.interval:g}",
            "SYNC_BATCH_SIZE": str(self.batch_size),
            "DEMO_DELAY_SECONDS": f"{self.demo_delay:g}",
            "SSE_PING_SECONDS": f"{self.ping:g}",
        }


# The short round runs inside `make test` (under 3 minutes); the full one is `make cluster-test`.
SHORT = Plan("short", repeat=1, batch_size=100, demo_delay=0.4, interval=10, timeout=300)
FULL = Plan("full", repeat=5, batch_size=50, demo_delay=0.65, interval=25, timeout=3600)
PLANS = {plan.name: plan for plan in (SHORT, FULL)}


class Node(ServerProcess):
    """One node: ``python -m service`` in a folder of its own, on a port that stays its own
    across restarts; what it writes is appended to ``server.out``/``server.err`` there."""

    def __init__(self, name: str, workdir: Path, port: int, env: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir, **{**env, "PORT": str(port), "NODE_NAME": name})
        self.name = name
        self.starts = 0
        self.paused = False

    def start(self) -> None:
        """Start (or start again) the node, its output appended to its files."""
        self.starts += 1
        with self.output.open("ab") as out, self.errors.open("ab") as err:
            out.write(f"--- start {self.starts} ---\n".encode())
            out.flush()
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(
                self.command, cwd=self.workdir, env=self.env, stdout=out, stderr=err
            )
        self.paused = False

    def ready(self) -> bool:
        """True when ``/readyz`` answers 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_up(self, within: float = 30.0) -> float:
        """Return once ``/readyz`` answers 200, with the seconds since the start."""
        return self.wait_until(self.ready, "not ready", within=within, every=0.05)

    def kill(self) -> None:
        """SIGKILL, reaped."""
        self.end()
        self.paused = False

    def signal(self, signum: int) -> None:
        """Send ``signum``, waiting for nothing."""
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def pause(self) -> None:
        """SIGSTOP: the process hangs, its sockets open."""
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT."""
        self.signal(signal.SIGCONT)
        self.paused = False

    def end(self) -> None:
        """Kill the process (a stopped one too) and reap it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()


class Cluster:
    """The nodes of one PostgreSQL database; :func:`cluster` starts and ends them."""

    def __init__(
        self, server: PostgresServer, folder: Path, env: dict[str, str], ports: Sequence[int]
    ) -> None:
        self.server = server
        self.url = server.store_database(STORE_DATABASE)
        self.admin_url = f"postgresql://{SUPERUSER}@{server.host}:{server.port}/{STORE_DATABASE}"
        node_env = {**env, "DATABASE_URL": self.url}
        self.nodes = [
            Node(f"node-{i}", folder / f"node-{i}", port, node_env)
            for i, port in enumerate(ports, start=1)
        ]

    @property
    def urls(self) -> list[str]:
        """Every node's base URL, in order."""
        return [node.url for node in self.nodes]

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        return next(node for node in self.nodes if node.name == name)

    def start(self, within: float = 60.0) -> None:
        """Start every node; return once each answers ``/readyz``."""
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_up(within)

    def close(self, *, gently: bool = False) -> None:
        """End every node still running: killed (stopped ones too), or ``gently`` with
        SIGTERM first (killed if it has not exited after 10 s)."""
        for node in self.nodes:
            if node.running and gently and not node.paused:
                node.signal(signal.SIGTERM)
        for node in self.nodes:
            if node.running and gently and not node.paused:
                with suppress(subprocess.TimeoutExpired):
                    node.wait(timeout=10)
            if node.running:
                node.end()

    def logs(self) -> str:
        """What every node wrote, node by node (for a failure's message)."""
        return "\n".join(f"===== {node.name}\n{node.logs()}" for node in self.nodes)


@contextmanager
def cluster(
    folder: Path, env: dict[str, str], *, ports: Sequence[int] | None = None, gently: bool = False
) -> Iterator[Cluster]:
    """A PostgreSQL server and :data:`NODE_COUNT` nodes on it, started; all gone at exit
    (``gently``: the nodes are sent SIGTERM first)."""
    with postgres_server() as server:
        chosen = list(ports) if ports is not None else [free_port() for _ in range(NODE_COUNT)]
        nodes = Cluster(server, folder, env, chosen)
        try:
            nodes.start()
            yield nodes
        finally:
            nodes.close(gently=gently)


class Probe:
    """A superuser session on the store database, as an operator's psql: each query on a
    session that is reconnected when a restart cut it (for up to ``patience`` seconds)."""

    def __init__(self, url: str, patience: float = 30.0) -> None:
        self.url = url
        self.patience = patience
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def rows(
        self, sql: LiteralString, params: Sequence[object] = ()
    ) -> list[tuple[Any, ...]]:
        """The rows of one statement (autocommit)."""
        deadline = time.monotonic() + self.patience
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True, connect_timeout=2
                    )
                # No parameters: no placeholders either (a LIKE pattern's % stays itself).
                cursor = await self._conn.execute(sql, params or None)
                return await cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError:
                await self.close()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def value(self, sql: LiteralString, params: Sequence[object] = ()) -> Any:
        """The first column of the first row (None when no row)."""
        found = await self.rows(sql, params)
        return found[0][0] if found else None

    async def close(self) -> None:
        """Close the session."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def detail_ids(self) -> list[int]:
        """Every line's id, in order."""
        return [
            int(row[0]) for row in await self.rows("SELECT id FROM job_log_details ORDER BY id")
        ]

    async def sync_node(self) -> str | None:
        """The node holding the run lease now (its name in sync_lease, while the lock is held)."""
        node = await self.value(
            "SELECT node FROM sync_lease WHERE id = 1 AND EXISTS (SELECT 1 FROM pg_locks "
            "WHERE locktype = 'advisory' AND classid = %s AND objid = %s AND granted)",
            RUN_LOCK,
        )
        return None if node is None else str(node)

    async def lease_session(self) -> tuple[int, str] | None:
        """The backend pid and application_name of the session holding the run lock."""
        found = await self.rows(
            "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a "
            "USING (pid) WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s "
            "AND l.granted AND a.application_name LIKE %s",
            (*RUN_LOCK, f"{LEASE_SESSION}%"),
        )
        return (int(found[0][0]), str(found[0][1])) if found else None


def main(ports: Sequence[int] = (8081, 8082, 8083)) -> int:
    """``make cluster``: PostgreSQL in a throwaway folder and three nodes on ``ports`` until
    Ctrl-C, which stops them all and removes the folder."""
    admin, view = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = {
        "ADMIN_TOKEN": admin,
        "VIEW_TOKEN": view,
        "HOST": "127.0.0.1",
        "SYNC_INTERVAL_SECONDS": "60",
        "SYNC_LEASE_SECONDS": "5",
        "SYNC_BATCH_SIZE": "100",
    }
    folder = Path(tempfile.mkdtemp(prefix="joblog-cluster-"))
    signal.signal(signal.SIGTERM, _interrupt)  # a kill ends it as Ctrl-C does, cleaning up
    try:
        with cluster(folder, env, ports=ports, gently=True) as running:
            print(f"PostgreSQL: psql {running.url}")
            for node in running.nodes:
                assert node.process is not None
                print(f"{node.name} (pid {node.process.pid}): {node.url}/#signin={admin}")
            print(f"admin token: {admin}\nview token:  {view}")
            print(f"logs: {folder}/node-*/server.out")
            print("Ctrl-C stops the nodes and the database.", flush=True)
            while all(node.running for node in running.nodes):
                time.sleep(0.5)
            gone = [node.name for node in running.nodes if not node.running]
            print(f"{', '.join(gone)} exited: stopping the cluster", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        return 0
    except pytest.skip.Exception as missing:  # tests.support.system.missing(): not installed
        print(missing.msg, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
