"""A run's staging batches on PostgreSQL, written by a blocking session of the run's own.

The twin of service/store/staging.py. The floor of a sync is fetching and writing one after
the other on one thread: the source's thread writes each batch right after fetching it, with
no hand-over between threads row by row and no wait for the event loop between batches. So a
run opens a plain psycopg session (the pool's conninfo) and each batch is one ``COPY`` into
the run's own staging table, in a transaction of its own. The run's job-log lines, written
meanwhile through the pool, never wait behind it: another session, another table.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql

from ..errors import DatabaseBusy
from ..staging import Rows, StagingClosed
from .database import PgDatabase
from .open_orders import staging_table

# What PostgreSQL's text cannot hold: NUL, and lone surrogates (UTF-8 cannot encode them).
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def storable(value: object) -> object:
    """``value`` as PostgreSQL can store it: in text, NUL and lone surrogates become U+FFFD;
    anything else is kept as it is."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    return value


class PgStagingWriter:
    """Appends batches to run ``run_id``'s staging table; one call at a time, from any thread."""

    def __init__(self, db: PgDatabase, conn: psycopg.Connection[Any], run_id: int) -> None:
        self._db = db
        self._conn = conn
        self._copy = sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(staging_table(run_id)))
        # Held for a whole batch: close() waits for a batch under way, never cuts it.
        self._lock = threading.Lock()
        self._closed = False

    def append(self, rows: Rows) -> None:
        """One batch in its own transaction; rolled back (never left open) on any error.

        Text PostgreSQL cannot hold (NUL, a lone surrogate) does not fail the run: the batch
        is stored again with each such character replaced visibly. The database's failures
        are the store's (DatabaseBusy, DatabaseGone, …), never psycopg's.
        """
        with self._lock:
            if self._closed:
                raise StagingClosed("the import was stopped")
            with self._db.store_errors():
                try:
                    self._insert(rows)
                except (UnicodeEncodeError, psycopg.DataError):
                    self._insert([[storable(value) for value in row] for row in rows])

    def try_append(self, rows: Rows) -> bool:
        """:meth:`append`, or False when another session held a lock too long (nothing was
        written; the caller waits and tries again)."""
        try:
            self.append(rows)
        except DatabaseBusy:
            return False
        return True

    def close(self) -> None:
        """Close the session, after the batch under way (if any) has ended."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def _insert(self, rows: Rows) -> None:
        conn = self._conn
        with conn.transaction(), conn.cursor() as cursor, cursor.copy(self._copy) as copy:
            for row in rows:
                copy.write_row(row)


@asynccontextmanager
async def open_staging(db: PgDatabase, run_id: int) -> AsyncIterator[PgStagingWriter]:
    """A staging writer for run ``run_id`` on a session of its own, closed at exit (after the
    batch under way, wherever it runs)."""
    conn = await asyncio.to_thread(db.connect_blocking, f"joblog staging (run {run_id})")
    writer = PgStagingWriter(db, conn, run_id)
    try:
        yield writer
    finally:
        # Shielded: a second cancel must not leave the close half done.
        closing = asyncio.ensure_future(asyncio.to_thread(writer.close))
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            await closing
            raise
