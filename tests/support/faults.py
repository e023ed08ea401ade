"""Faults and load against a real server process: its CPU and memory, its metrics, another
writer on its database, and slow SQL that holds one of its transactions open.

Everything here looks at the service from outside, as an operator or another process would:
``/proc`` for the process, ``/metrics`` and the API over HTTP, the database through ``sqlite3``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import ADMIN
from tests.support.wait import wait_for

PENDING, PROCESSING, ERROR, SUCCESS = 0, 1, 2, 3

SERVICE_TABLES = {
    "open_orders",
    "job_logs",
    "job_log_details",
    "service_heartbeat",
    "sqlite_sequence",
    # The per-status counts and the trigram search index over detail messages (FTS5).
    "job_log_counts",
    "job_log_details_search",
    "job_log_details_search_config",
    "job_log_details_search_data",
    "job_log_details_search_docsize",
    "job_log_details_search_idx",
    # The runs in (status, created_at) order, and where the background builds of an adopted
    # history stand.
    "job_logs_by_status",
    "job_logs_by_status_build",
    "search_index_build",
}
"""Every table a healthy database holds between runs (no staging table)."""


def slow(cost: str = "1") -> str:
    """An SQL expression that takes about 10 ms to compute when ``cost`` is 1 and nothing when
    it is 0; deterministic, so an index may use it. Put inside a trigger or an index, it holds
    the statement's transaction open for as long as the test needs to land a kill in it."""
    return f"length(hex(zeroblob(10000000 * ({cost}))))"


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) the process ``pid`` has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """The resident memory of process ``pid`` (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def wait_for_cpu(pid: int, seconds: float, what: str) -> None:
    """Return once process ``pid`` has used ``seconds`` more CPU time than now: proof that it
    is busy in the slow SQL the test planted, not waiting somewhere else."""
    start = cpu_seconds(pid)
    wait_for(lambda: cpu_seconds(pid) - start >= seconds, what)


def connected_to(port: int) -> bool:
    """True when some TCP connection on this machine is established to loopback ``port``."""
    wanted = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == wanted and fields[3] == "01":  # rem_address, st == ESTABLISHED
            return True
    return False


def raise_open_files(needed: int) -> int:
    """Raise this process's soft limit of open files to ``needed`` (child processes inherit
    it); fail saying so when the hard limit is lower. Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"the test needs {needed} open files; ulimit -Hn is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


# --- HTTP ------------------------------------------------------------------------------------


def request(url: str, method: str = "GET", timeout: float = 10) -> tuple[int, Any]:
    """Status and JSON body (``None`` when empty) of one request; a POST proves the admin."""
    headers = ADMIN if method == "POST" else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method=method, headers=headers), timeout=timeout
        ) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as error:
        with error:
            body = error.read()
            return error.code, json.loads(body) if body else None


def scrape(base_url: str) -> dict[str, float]:
    """``GET /metrics``: every sample without labels, by name (labelled ones with them)."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def start_run(base_url: str) -> dict[str, Any]:
    """``POST /api/job_logs``, which must be accepted; the new log."""
    status, body = request(f"{base_url}/api/job_logs", method="POST")
    assert status == 202, body
    assert isinstance(body, dict)
    return body


# --- the database, as another process sees it --------------------------------------------------


def stamp() -> str:
    """Now as the service and Rails store it: UTC ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class OtherWriter:
    """Writes job logs and details to the service's database as another process would
    (Rails, ``run-once``): its own connection, one short transaction per statement."""

    def __init__(self, database: Path) -> None:
        # One caller at a time, but perhaps from a worker thread (asyncio.to_thread).
        self.conn = sqlite3.connect(
            database, timeout=10, isolation_level=None, check_same_thread=False
        )

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def create_log(self, name: str, status: int = PROCESSING) -> int:
        """A new job log; its id."""
        now = stamp()
        cursor = self.conn.execute(
            "INSERT INTO job_logs (name, status, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (name, status, now, now),
        )
        return int(cursor.lastrowid or 0)

    def append(self, job_log_id: int, message: str) -> int:
        """Append one detail (committed on return); its id."""
        now = stamp()
        cursor = self.conn.execute(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (?, ?, ?, ?)",
            (job_log_id, message, now, now),
        )
        return int(cursor.lastrowid or 0)

    def end_log(self, job_log_id: int, status: int = SUCCESS) -> None:
        """Give a log its final status."""
        self.conn.execute(
            "UPDATE job_logs SET status = ?, updated_at = ? WHERE id = ?",
            (status, stamp(), job_log_id),
        )

    def execute(self, sql: str) -> None:
        """Run one statement (e.g. plant or remove a trigger)."""
        self.conn.execute(sql)


def query(database: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of one read on its own connection."""
    with closing(sqlite3.connect(database, timeout=10)) as conn:
        return list(conn.execute(sql, params))


def details_after(database: Path, after: int = 0) -> list[tuple[int, str]]:
    """Every detail with an id above ``after``: (id, message), in order."""
    return [
        (int(row[0]), str(row[1]))
        for row in query(
            database, "SELECT id, message FROM job_log_details WHERE id > ? ORDER BY id", (after,)
        )
    ]


def messages(database: Path, job_log_id: int) -> list[str]:
    """The messages of one log, in order."""
    return [
        str(row[0])
        for row in query(
            database,
            "SELECT message FROM job_log_details WHERE job_log_id = ? ORDER BY id",
            (job_log_id,),
        )
    ]


def has_message(database: Path, job_log_id: int, prefix: str) -> bool:
    """True once the log has a detail starting with ``prefix``."""
    try:
        return any(m.startswith(prefix) for m in messages(database, job_log_id))
    except sqlite3.OperationalError:
        return False  # not created yet


def wait_until_stuck(database: Path, job_log_id: int, quiet: float = 1.0) -> None:
    """Return once the log has had no new detail for ``quiet`` seconds: the run, which wrote a
    line every few milliseconds, is blocked."""
    count, since = -1, time.monotonic()

    def stuck() -> bool:
        nonlocal count, since
        now = len(messages(database, job_log_id))
        if now != count:
            count, since = now, time.monotonic()
        return time.monotonic() - since >= quiet

    wait_for(stuck, f"job log {job_log_id} makes no progress")


def status_of(database: Path, job_log_id: int) -> int:
    """A log's status code."""
    return int(query(database, "SELECT status FROM job_logs WHERE id = ?", (job_log_id,))[0][0])


def wait_ended(database: Path, job_log_id: int, within: float = 30.0) -> int:
    """Wait until a log has a final status (error or success); that status."""
    wait_for(
        lambda: status_of(database, job_log_id) in (ERROR, SUCCESS),
        f"job log {job_log_id} ended",
        within=within,
    )
    return status_of(database, job_log_id)


async def gather_limited(calls: list[Callable[[], Awaitable[Any]]], at_once: int) -> list[Any]:
    """Await every call, at most ``at_once`` at a time; results in order."""
    gate = asyncio.Semaphore(at_once)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return await asyncio.gather(*(one(call) for call in calls))
