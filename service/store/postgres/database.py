"""The job-log database on PostgreSQL: a pool of sessions, the clock and the naming zone.

The twin of :class:`service.store.Database`: ``transaction()`` for writes (each its own
transaction, any number at once — PostgreSQL orders them; the id triggers keep ids in commit
order), ``read()`` for one statement. Timestamps are ``timestamp(6)`` in UTC: written and read
as naive UTC datetimes, handed out aware.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, LiteralString
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import Composed
from psycopg_pool import AsyncConnectionPool

from service.clock import Clock, utc_now

from ..database import DatabaseUnavailable
from .failures import scrubbed as scrubbed
from .failures import translating
from .lease import one_line
from .schema import apply_schema

logger = logging.getLogger(__name__)

Row = dict[str, Any]
Connection = psycopg.AsyncConnection[Row]


class PgDatabase:
    """A pool of sessions to one PostgreSQL database holding the job-log schema."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        clock: Clock,
        zone: ZoneInfo,
        *,
        url: str,
        connect_seconds: float = 5.0,
    ) -> None:
        self._pool = pool
        # The pool's conninfo, for the sessions of a run's own (connect_blocking).
        self._url = url
        self._connect_seconds = connect_seconds
        self.clock = clock
        self.zone = zone
        # Called after each write transaction commits (the hub's wake-up on this node).
        self.on_commit: list[Callable[[], None]] = []

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Clock = utc_now,
        zone: ZoneInfo | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_seconds: float = 5.0,
        name: str = "joblog",
        idle_in_transaction_seconds: float | None = None,
    ) -> PgDatabase:
        """Connect the pool and apply the schema (store/postgres/schema.sql). Its sessions are
        called ``name`` in pg_stat_activity; with ``idle_in_transaction_seconds`` the server
        ends a session whose transaction stays idle that long — a hung node's, whose locks
        (a run's row, the commit-order lock) would otherwise hold every other node up."""

        async def configure(conn: Connection) -> None:
            # A statement, not a startup option: PgBouncer passes it on.
            if idle_in_transaction_seconds is not None:
                timeout = f"{max(1, round(idle_in_transaction_seconds * 1000))}ms"
                await conn.execute(
                    "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                    (timeout,),
                )

        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True, "row_factory": dict_row, "application_name": name[:63]},
            configure=configure,
            connection_class=psycopg.AsyncConnection[Row],
            timeout=connect_seconds,
            open=False,
            name="joblog",
        )
        try:
            # The schema on a session of its own (rows as tuples), then the pool.
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=max(1, round(connect_seconds))
            ) as conn:
                await apply_schema(conn)
            await pool.open(wait=True, timeout=connect_seconds)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await pool.close()
            reason = scrubbed(one_line(exc), url)
            raise DatabaseUnavailable(f"cannot open the PostgreSQL database: {reason}") from None
        return cls(pool, clock, zone or ZoneInfo("UTC"), url=url, connect_seconds=connect_seconds)

    async def close(self) -> None:
        """Close every session, after the transactions under way have ended."""
        await self._pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """One write transaction on a session of the pool: COMMIT, or ROLLBACK on any error.

        A failure of the database leaves as the store's (DatabaseBusy, DatabaseFull,
        DatabaseGone, DatabaseFailure: service/store/postgres/failures.py), never psycopg's.
        """
        with translating(self._url):
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
        for listener in self.on_commit:
            listener()

    async def read(
        self, sql: LiteralString | Composed, params: Sequence[object] | Mapping[str, object] = ()
    ) -> list[Row]:
        """The rows of one read-only statement (failures as in :meth:`transaction`)."""
        with translating(self._url):
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, params)
                return list(await cursor.fetchall())

    def store_errors(self) -> AbstractContextManager[None]:
        """A block whose psycopg errors leave as the store's (failures.py), without this
        database's URL or password: for the sessions of :meth:`connect_blocking`."""
        return translating(self._url)

    def connect_blocking(self, name: str) -> psycopg.Connection[tuple[Any, ...]]:
        """A blocking session of its own on the pool's database, for a thread's work (a run's
        staging): autocommit, rows as tuples, named ``name`` in pg_stat_activity, with TCP
        keepalives that notice a dead server within about 11 s. It blocks: call it from a
        thread. DatabaseGone (or another DatabaseFailure) when none can be had."""
        with translating(self._url):
            return psycopg.Connection.connect(
                self._url,
                autocommit=True,
                connect_timeout=max(1, round(self._connect_seconds)),
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                application_name=name[:63],
            )
