"""What one service node holds on PostgreSQL, opened together and closed together.

The pool (:class:`PgDatabase`) and the contract on it (:class:`PostgresStore`); the LISTEN
session that wakes this node's readers for every node's commits (:class:`Wakeups`, calling
``db.on_commit``); the sync's run lease (:class:`RunLease`); the indexes over existing rows,
built once in the background by one node. Lock and LISTEN sessions are direct: ``direct_url``
when the pool's URL goes through a transaction-pooling PgBouncer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from service.clock import Clock, utc_now
from service.tasks import cancel_and_wait

from ..errors import StoreError
from ..heartbeat import Unready
from .database import PgDatabase, scrubbed
from .lease import PURGE_LOCK, RUN_LOCK, RunLease, claim_slot, direct_session, one_line
from .schema import build_indexes
from .store import PostgresStore
from .target import PgTarget
from .wakeups import Wake, Wakeups

logger = logging.getLogger(__name__)

# Claimed slots are kept this long (what ran where, for an operator), then deleted.
_SLOTS_KEPT = timedelta(days=7)


class PgNode:
    """One node's sessions to the shared PostgreSQL database."""

    def __init__(
        self, db: PgDatabase, wakeups: Wakeups, lease: RunLease, urls: tuple[str, str], node: str
    ) -> None:
        self.db = db
        self.store = PostgresStore(db)
        self.target = PgTarget(db)
        self.wakeups = wakeups
        self.lease = lease
        # One purge at a time across nodes.
        self.purge_lock = RunLease(urls[1], node, key=PURGE_LOCK)
        self.node = node
        self._url, self._direct_url = urls
        self._build: asyncio.Task[None] | None = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str,
        *,
        direct_url: str | None = None,
        node: str,
        clock: Clock = utc_now,
        zone: ZoneInfo | None = None,
        lease_seconds: float = 10.0,
        poll_seconds: float = 1.0,
        serving: bool = True,
    ) -> AsyncIterator[PgNode]:
        """Open the pool (applying the schema); serving, start listening and the index
        build."""
        direct = direct_url or url
        db = await PgDatabase.open(
            url,
            clock=clock,
            zone=zone,
            name=f"joblog ({node})",
            idle_in_transaction_seconds=lease_seconds,
        )

        def wake(_: Wake) -> None:
            for listener in list(db.on_commit):
                listener()

        wakeups = Wakeups(direct, wake, poll_seconds=poll_seconds)
        lease = RunLease(direct, node, idle_seconds=lease_seconds)
        self = cls(db, wakeups, lease, (url, direct), node)
        if serving:
            wakeups.start()
            self._build = asyncio.create_task(self._build_indexes(), name="pg-index-build")
        try:
            yield self
        finally:
            await cancel_and_wait(self._build)
            await self.lease.release()
            await self.purge_lock.release()
            await wakeups.close()
            await db.close()

    async def _build_indexes(self) -> None:
        try:
            conn = await direct_session(self._direct_url, "joblog index build", 5.0)
            try:
                await build_indexes(conn)
            finally:
                await conn.close()
        except (psycopg.Error, OSError) as exc:
            reason = self._scrubbed(exc)
            logger.warning("building the indexes failed (searches are slower): %s", reason)

    async def check_ready(self, within: float = 1.0) -> None:
        """A round trip through the pool, and the LISTEN session up; Unready otherwise."""
        if not self.wakeups.listening:
            raise Unready("the session that hears other nodes' commits is down")
        started = time.monotonic()
        try:
            async with asyncio.timeout(within):
                await self.db.read("SELECT 1")
        except TimeoutError:
            raise Unready(f"a round trip did not finish within {within:g} s") from None
        except (StoreError, OSError) as exc:  # the pool's failures come as the store's
            raise Unready(f"a round trip failed: {self._scrubbed(exc)}") from None
        logger.debug("round trip in %.1f ms", (time.monotonic() - started) * 1000)

    async def claim(self, slot: datetime) -> bool:
        """Claim the scheduled ``slot`` for this node; False when another node did first."""
        naive = slot.astimezone(UTC).replace(tzinfo=None)
        async with self.db.transaction() as conn:
            claimed = await claim_slot(conn, naive, self.node)
            if claimed:
                await conn.execute("DELETE FROM sync_ticks WHERE slot < %s", (naive - _SLOTS_KEPT,))
        return claimed

    async def claim_day(self, day: date) -> bool:
        """Claim ``day``'s retention purge for this node; False when another node did first."""
        async with self.db.transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO purge_days (day, node) VALUES (%s, %s) ON CONFLICT (day) DO NOTHING "
                "RETURNING day",
                (day, self.node),
            )
            claimed = await cursor.fetchone() is not None
            if claimed:
                await conn.execute("DELETE FROM purge_days WHERE day < %s", (day - _SLOTS_KEPT,))
        return claimed

    async def sync_node(self) -> str | None:
        """The node holding the run lease now, None when no node holds it."""
        rows = await self.db.read(
            "SELECT node FROM sync_lease WHERE id = 1 AND EXISTS (SELECT 1 FROM pg_locks "
            "WHERE locktype = 'advisory' AND classid = %s AND objid = %s AND granted)",
            RUN_LOCK,
        )
        return str(rows[0]["node"]) if rows and rows[0]["node"] is not None else None

    async def clock_offset(self) -> timedelta:
        """How far the database's clock is ahead of this machine's (half a round trip's
        precision): every node ticks on the database's time."""
        before = utc_now()
        rows = await self.db.read("SELECT now() AT TIME ZONE 'UTC' AS now")
        after = utc_now()
        database: datetime = rows[0]["now"].replace(tzinfo=UTC)
        return database - (before + (after - before) / 2)

    def _scrubbed(self, exc: BaseException) -> str:
        """A driver error on one line, without either URL or their passwords."""
        return scrubbed(scrubbed(one_line(exc), self._url), self._direct_url)
