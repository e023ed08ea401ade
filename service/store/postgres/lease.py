"""One sync at a time across nodes: the run lock on PostgreSQL is a lease.

The lock is ``pg_try_advisory_lock`` held by a session of its own — a direct connection, never
through a transaction-pooling PgBouncer, which would hand the session to someone else. The
session has TCP keepalives and a short ``idle_session_timeout``, and the holder pings it more
often than that:

* a killed node's session ends with its process, and the lock is free at once;
* a hung or cut-off node stops pinging: the server ends its idle session after the timeout,
  and the lock is free then — the lease's length;
* a holder whose ping fails has lost the lease (another node may hold it by now) and must stop.

Each take raises the epoch in ``sync_lease``; :func:`fence` checks it inside a run's final
transaction, so a holder that lost the lease without noticing can commit nothing that counts.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import tuple_row

from ..errors import StoreError

logger = logging.getLogger(__name__)

# (0x4A4C 'JL', 10): the sync's run lock; 11: the purge's (see schema.py for the others).
RUN_LOCK = (19020, 10)
PURGE_LOCK = (19020, 11)

Connection = psycopg.AsyncConnection[Any]


class LeaseLost(StoreError):
    """The run lock is no longer this run's: another node may be running the sync (a swap
    fenced by its epoch ends the run as ``ERROR: Replace failed - …``)."""


class RunLease:
    """The sync's run lock (or, ``key=PURGE_LOCK``, the purge's, which has no epoch), held by
    ``node`` on a session of its own."""

    def __init__(
        self,
        url: str,
        node: str,
        *,
        idle_seconds: float = 10.0,
        connect_seconds: float = 5.0,
        key: tuple[int, int] = RUN_LOCK,
    ) -> None:
        self._url = url
        self._key = key
        self.node = node
        self.idle_seconds = idle_seconds
        self._connect_seconds = connect_seconds
        self._conn: Connection | None = None
        self.epoch: int | None = None

    @property
    def where(self) -> str:
        """For messages: what the lock is."""
        return "the run lease on PostgreSQL" if self._key == RUN_LOCK else "the purge lock"

    @property
    def held(self) -> bool:
        """True from a successful :meth:`acquire` until :meth:`release` or a failed ping."""
        return self._conn is not None

    @property
    def ping_seconds(self) -> float:
        """How often the holder must ping: well inside the session's idle timeout."""
        return self.idle_seconds / 3

    async def acquire(self) -> bool:
        """Take the lock if it is free (raising the epoch); False when another node holds it."""
        if self._conn is not None:
            return False
        conn = await direct_session(
            self._url, f"joblog run lease ({self.node})", self._connect_seconds
        )
        try:
            await conn.execute(
                "SELECT set_config('idle_session_timeout', %s, false)",
                (f"{max(1, round(self.idle_seconds * 1000))}ms",),
            )
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", self._key)
            row = await cursor.fetchone()
            if row is None or not row[0]:
                await conn.close()
                return False
            if self._key != RUN_LOCK:
                self._conn = conn
                return True
            cursor = await conn.execute(
                "UPDATE sync_lease SET epoch = epoch + 1, node = %s, "
                "taken_at = now() AT TIME ZONE 'UTC' WHERE id = 1 RETURNING epoch",
                (self.node,),
            )
            taken = await cursor.fetchone()
            if taken is None:
                raise LeaseLost("sync_lease has no row: the schema was not applied")
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self.epoch = int(taken[0])
        logger.info("run lease taken by %s (epoch %d)", self.node, self.epoch)
        return True

    async def ping(self) -> bool:
        """A round trip on the lock's session. False — and the lease dropped — when it fails:
        the session timed out or was cut, and the lock may be another node's by now."""
        conn = self._conn
        if conn is None:
            return False
        try:
            async with asyncio.timeout(self.ping_seconds):
                await conn.execute("SELECT 1")
        except (psycopg.Error, TimeoutError) as exc:
            logger.warning("run lease of %s lost: %s", self.node, one_line(exc))
            await self._drop()
            return False
        return True

    async def keep(self) -> None:
        """Ping every :attr:`ping_seconds` while the lease is held; return once a ping fails
        (the lease is lost: the run under it must stop)."""
        while True:
            if not await self.ping():
                return
            await asyncio.sleep(self.ping_seconds)

    async def release(self) -> None:
        """Let go of the lock (closing the session would too)."""
        conn = self._conn
        if conn is None:
            return
        try:
            await conn.execute("SELECT pg_advisory_unlock(%s, %s)", self._key)
        except psycopg.Error as exc:
            logger.info("releasing the run lease: %s", one_line(exc))
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


async def direct_session(url: str, name: str, connect_seconds: float) -> Connection:
    """A session of its own, never from the pool (a lock or LISTEN lives as long as it does):
    autocommit, named ``name`` in pg_stat_activity, with TCP keepalives that notice a dead
    peer within about 11 s even while it is idle."""
    return await psycopg.AsyncConnection.connect(
        url,
        autocommit=True,
        connect_timeout=max(1, round(connect_seconds)),
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
        application_name=name[:63],
    )


async def fence(conn: Connection, epoch: int) -> None:
    """Inside a run's final transaction: raise LeaseLost unless ``epoch`` is still the lease's.

    The row is read FOR SHARE: a node taking the lease waits for this transaction to end before
    it raises the epoch, so a check that passed holds until the commit.
    """
    row = await _one(conn, "SELECT epoch FROM sync_lease WHERE id = 1 FOR SHARE", ())
    current = None if row is None else int(row[0])
    if current != epoch:
        raise LeaseLost(f"the run lease moved on (epoch {current}, this run's {epoch})")


async def claim_slot(conn: Connection, slot: datetime, node: str) -> bool:
    """Claim the scheduled ``slot`` (UTC, naive) for ``node``; False when another node did."""
    row = await _one(
        conn,
        "INSERT INTO sync_ticks (slot, node) VALUES (%s, %s) ON CONFLICT (slot) DO NOTHING "
        "RETURNING slot",
        (slot, node),
    )
    return row is not None


async def database_now(conn: Connection) -> datetime:
    """The database's clock (UTC, naive): every node ticks on the same grid by it."""
    row = await _one(conn, "SELECT now() AT TIME ZONE 'UTC'", ())
    assert row is not None
    value: datetime = row[0]
    return value


async def _one(
    conn: Connection, query: LiteralString, params: tuple[object, ...]
) -> tuple[Any, ...] | None:
    """The first row as a tuple, whatever rows the connection makes by default."""
    async with conn.cursor(row_factory=tuple_row) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchone()


def one_line(exc: BaseException) -> str:
    """A driver error on one line (psycopg's carry the server's multi-line detail)."""
    return " ".join(str(exc).split()) or type(exc).__name__
