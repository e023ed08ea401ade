"""The staging table's batches, written by a plain sqlite3 connection of the run's own.

The floor of a sync is ``fetchmany`` and ``executemany`` one after the other on one thread.
A batch staged on another thread than the one that fetched it makes the two threads hand the
GIL over row by row (the ODBC driver and SQLite both give it up around every row); so a run
opens this connection to the target file and the source's thread writes each batch right
after fetching it. The staging table is private to the run, so it needs neither the
``Database`` writer nor its lock: each batch is its own short ``BEGIN IMMEDIATE … COMMIT``, and
the run's job-log lines, written meanwhile by the ``Database`` writer, slip in between.

The connection commits with ``synchronous=NORMAL``: in WAL mode that skips the sync of each
batch's commit, never the order of the log; the swap's commit, with the writer's full sync, makes
every frame before it durable at once, and until then the staging table is worth nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from .database import Database
from .errors import StoreError, is_busy
from .open_orders import OPEN_ORDERS_STAGING, storable

Rows = Sequence[Sequence[object]]


class StagingClosed(StoreError):
    """A batch came after the run had closed its staging connection (it was stopping)."""


class StagingWriter:
    """Appends batches to ``open_orders_staging``; one call at a time, from any thread."""

    def __init__(self, conn: sqlite3.Connection, width: int) -> None:
        self._conn = conn
        self._sql = f"INSERT INTO {OPEN_ORDERS_STAGING} VALUES ({', '.join('?' * width)})"
        # Held for a whole batch: close() waits for a batch under way, never cuts it.
        self._lock = threading.Lock()
        self._closed = False

    def append(self, rows: Rows) -> None:
        """One batch in its own transaction; rolled back (never left open) on any error.

        A value SQLite cannot hold (text with a lone surrogate, an integer beyond 64 bits) does
        not fail the run: the batch is stored again with each such value replaced visibly.
        """
        with self._lock:
            if self._closed:
                raise StagingClosed("the import was stopped")
            try:
                self._insert(rows)
            except (UnicodeEncodeError, OverflowError):
                self._insert([[storable(value) for value in row] for row in rows])

    def try_append(self, rows: Rows) -> bool:
        """:meth:`append`, or False when another connection held the database past the busy
        timeout (nothing was written; the caller waits and tries again)."""
        try:
            self.append(rows)
        except sqlite3.Error as exc:
            if is_busy(exc):
                return False
            raise
        return True

    def close(self) -> None:
        """Close the connection, after the batch under way (if any) has ended."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def _insert(self, rows: Rows) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(self._sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise


def _connect(path: Path, width: int, busy_ms: int) -> StagingWriter:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return StagingWriter(conn, width)


@asynccontextmanager
async def open_staging(target: Database, width: int) -> AsyncIterator[StagingWriter]:
    """A staging writer on ``target``'s file with its busy timeout, closed at exit (after the
    batch under way, wherever it runs)."""
    row = (await target.read("PRAGMA busy_timeout"))[0]
    busy_ms = int(row[0])
    writer = await asyncio.to_thread(_connect, target.path, width, busy_ms)
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
