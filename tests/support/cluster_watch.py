"""What the cluster test watches in the database while the faults come, as psql would see it:
every 50 ms the open runs (never more than one) and who holds the run lease; on a session of
its own, the total of ``open_orders`` (only ever a complete set); and this process's own event
loop lag, which every figure taken here carries.

Each poller reconnects when a restart cuts its session and keeps count of how long it could
not read.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import psycopg

from service.tasks import cancel_and_wait

from .cluster import RUN_LOCK

EVERY = 0.05

Connection = psycopg.AsyncConnection[Any]

_OPEN_AND_LEASE = (
    "SELECT (SELECT count(*) FROM job_logs WHERE status IN (0, 1)), epoch, node, "
    "EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
    "AND objid = %s AND granted) FROM sync_lease WHERE id = 1"
)


@dataclass(frozen=True)
class LeaseSeen:
    """The lease as first seen in this state: when (``time.time()``), epoch, node, held."""

    at: float
    epoch: int
    node: str | None
    held: bool


@dataclass
class Poller:
    """One poll loop's record: its samples, the time it could not read, its errors."""

    samples: int = 0
    down_since: float | None = None
    longest_down: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)

    def up(self) -> None:
        """A sample was read."""
        self.samples += 1
        if self.down_since is not None:
            self.longest_down = max(self.longest_down, time.monotonic() - self.down_since)
            self.down_since = None

    def down(self, error: BaseException) -> None:
        """A sample could not be read."""
        self.errors[type(error).__name__] += 1
        if self.down_since is None:
            self.down_since = time.monotonic()


class Watch:
    """The watchers, started together and stopped together."""

    def __init__(self, url: str, allowed_totals: Collection[int], *, every: float = EVERY) -> None:
        self.url = url
        self.allowed_totals = set(allowed_totals)
        self.every = every
        self.runs = Poller()
        self.orders = Poller()
        self.open_max = 0
        self.too_many_open: list[tuple[float, int]] = []
        """(time.time(), open runs) whenever more than one run was open."""
        self.leases: list[LeaseSeen] = []
        self.totals: Counter[int | str] = Counter()
        """Each total of open_orders read (``"absent"`` while it does not exist), how often."""
        self.bad_totals: list[tuple[float, int | str]] = []
        self.lags: list[float] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start polling."""
        self._tasks = [
            asyncio.create_task(self._poll(self.runs, self._open_and_lease), name="watch-runs"),
            asyncio.create_task(self._poll(self.orders, self._total), name="watch-orders"),
            asyncio.create_task(self._lag(), name="watch-lag"),
        ]

    async def stop(self) -> None:
        """Stop polling."""
        for task in self._tasks:
            await cancel_and_wait(task)

    def node_at(self, moment: float) -> str | None:
        """The node that held the lease at ``moment`` (``time.time()``) as far as seen: the
        last holder first seen before it (a tick's grace included)."""
        holder = None
        for seen in self.leases:
            if seen.at > moment + 2 * self.every:
                break
            if seen.held:
                holder = seen.node
        return holder

    async def _poll(self, poller: Poller, read: Callable[[Connection], Awaitable[None]]) -> None:
        conn: Connection | None = None
        try:
            while True:
                started = time.monotonic()
                try:
                    if conn is None:
                        conn = await psycopg.AsyncConnection.connect(
                            self.url, autocommit=True, connect_timeout=2
                        )
                    await read(conn)
                    poller.up()
                except psycopg.Error as exc:
                    poller.down(exc)
                    if conn is not None and (conn.closed or conn.broken):
                        await conn.close()
                        conn = None
                await asyncio.sleep(max(0.0, self.every - (time.monotonic() - started)))
        finally:
            if conn is not None:
                await conn.close()

    async def _open_and_lease(self, conn: Connection) -> None:
        cursor = await conn.execute(_OPEN_AND_LEASE, RUN_LOCK)
        row = await cursor.fetchone()
        assert row is not None, "sync_lease has no row"
        now = time.time()
        open_runs, epoch, node, held = int(row[0]), int(row[1]), row[2], bool(row[3])
        self.open_max = max(self.open_max, open_runs)
        if open_runs > 1:
            self.too_many_open.append((now, open_runs))
        last = self.leases[-1] if self.leases else None
        if last is None or (last.epoch, last.node, last.held) != (epoch, node, held):
            self.leases.append(LeaseSeen(now, epoch, node, held))

    async def _total(self, conn: Connection) -> None:
        try:
            cursor = await conn.execute("SELECT count(*) FROM open_orders")
            row = await cursor.fetchone()
            total: int | str = int(row[0]) if row is not None else "none"
        except psycopg.errors.UndefinedTable:
            total = "absent"
        self.totals[total] += 1
        complete = total in self.allowed_totals
        before_any = not any(self.totals[t] for t in self.allowed_totals)
        if not complete and not (before_any and total in ("absent", 0)):
            self.bad_totals.append((time.time(), total))

    async def _lag(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.every)
            self.lags.append(time.monotonic() - started - self.every)
