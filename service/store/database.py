"""The SQLite database: its connections, pragmas and transactions (the schema: schema.py).

One writer connection behind an asyncio lock carries every write, so a multi-statement write is
one ``BEGIN IMMEDIATE … COMMIT`` that no other task's statement can slip into. A separate
read-only connection serves reads: in WAL mode a reader never waits for a writer, whether the
writer is this process or another one (the Rails app, a ``run-once``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import aiosqlite

from service.clock import Clock, utc_now

from . import schema
from .errors import StoreError

logger = logging.getLogger(__name__)


class DatabaseUnavailable(StoreError):
    """The database file cannot be opened or created."""


class Database:
    """Owns the connections to one SQLite file; open with :meth:`open`, end with :meth:`close`."""

    def __init__(
        self,
        path: Path,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        clock: Clock,
        zone: ZoneInfo,
        file_id: tuple[int, int],
    ) -> None:
        self.path = path
        # The file the connections hold open (device, inode): a replaced file is another one.
        self.file_id = file_id
        self.clock = clock
        self.zone = zone
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        # Called after every commit of this process, so followers need not wait for a poll.
        self.on_commit: list[Callable[[], None]] = []
        # False while the runs by status or the search index of an adopted database are still
        # being built in the background (store/schema.py): the reads that would use them read
        # the runs or scan the lines instead.
        self.by_status_ready = True
        self.search_ready = True
        # A reader for small indexed reads on the event loop's own thread (see read_bounded).
        self._on_loop: sqlite3.Connection | None = None

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        busy_timeout_seconds: float = 5.0,
        clock: Clock = utc_now,
        zone: ZoneInfo | None = None,
        apply_schema: bool = True,
    ) -> Database:
        """Open (creating if needed) the database at ``path`` and apply the job-log schema.

        ``apply_schema=False`` opens a file that only receives open_orders (the business
        app's own database).
        """
        busy_ms = max(1, round(busy_timeout_seconds * 1000))
        writer = reader = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = await _connect(path, busy_ms)
            await _execute(writer, "PRAGMA journal_mode=WAL")
            pending = (
                await schema.apply_schema(writer, path)
                if apply_schema
                else schema.Pending(by_status=False, search=False)
            )
            reader = await _connect(path, busy_ms)
            await _execute(reader, "PRAGMA query_only=ON")
            stat = os.stat(path)
        except BaseException as exc:
            for conn in (reader, writer):
                if conn is not None:
                    await conn.close()
            if isinstance(exc, OSError | sqlite3.Error):
                raise DatabaseUnavailable(f"cannot open database {path}: {exc}") from exc
            raise
        logger.info("database open at %s", path)
        file_id = (stat.st_dev, stat.st_ino)
        db = cls(path, writer, reader, clock, zone or ZoneInfo("UTC"), file_id)
        db.by_status_ready = not pending.by_status
        db.search_ready = not pending.search
        db._on_loop = _loop_reader(path)
        return db

    async def close(self) -> None:
        """Close both connections, after any write under way has finished."""
        if self._on_loop is not None:
            self._on_loop.close()
            self._on_loop = None
        async with self._write_lock:
            await self._writer.close()
        async with self._read_lock:
            await self._reader.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE``, then COMMIT, or ROLLBACK on any error."""
        async with self._write_lock:
            conn = self._writer
            try:
                await conn.execute_fetchall("BEGIN IMMEDIATE")
                yield conn
                await conn.commit()
            except BaseException:
                await _roll_back(conn)
                raise
        for listener in self.on_commit:
            listener()

    async def write_script(self, script: str) -> None:
        """Run ``script``, a whole ``BEGIN IMMEDIATE … COMMIT`` without parameters, in one trip
        to the writer's thread: the file's lock is then never held across a trip through the
        event loop, which a busy machine can stretch to tens of milliseconds each."""
        async with self._write_lock:
            try:
                await self._writer.executescript(script)
            except BaseException:
                await _roll_back(self._writer)
                raise
        for listener in self.on_commit:
            listener()

    async def read(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """The rows of one read-only statement, on the reader connection.

        One statement is its own consistent read (SQLite gives it one snapshot), so it needs
        no BEGIN and ROLLBACK around it: one trip to the connection's thread instead of three.
        """
        async with self._read_lock:
            return list(await self._reader.execute_fetchall(sql, params))

    async def read_bounded(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """:meth:`read` for a statement that reads a few index entries and rows (a page, a run,
        the counts; never a search or a count over a range), run on the event loop's thread.

        A trip to the reader's thread and back costs more than such a statement (~0.2 ms of
        handoffs against ~0.05 ms of SQL), and every read waits its turn on that one thread.
        In WAL mode a reader does not wait for writers; should SQLite still answer busy (a
        checkpoint truncating the WAL, a file not in WAL mode) or fail in any way, the loop
        never waits (busy_timeout 0): the statement goes to the reader's thread, which waits
        as every read does and raises what it raises.
        """
        conn = self._on_loop
        if conn is not None:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                logger.debug("read on the loop failed (%s); reading on the reader's thread", exc)
        return await self.read(sql, params)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """A read transaction: every statement inside sees the same committed state."""
        async with self._read_lock:
            conn = self._reader
            try:
                await conn.execute_fetchall("BEGIN")
                yield conn
            finally:
                await _roll_back(conn)


async def _roll_back(conn: aiosqlite.Connection) -> None:
    """End whatever transaction the connection may be in, before its lock is released.

    A cancelled await does not stop the statement: it still runs on the connection's thread
    (a BEGIN, a COMMIT). The rollback is queued behind it, so once it returns the connection is
    out of any transaction; it is awaited to the end even through further cancels. A rollback
    with no transaction open does nothing.
    """
    rollback = asyncio.ensure_future(conn.rollback())
    cancelled = False
    while not rollback.done():
        try:
            await asyncio.shield(rollback)
        except asyncio.CancelledError:
            cancelled = True
        except sqlite3.Error as exc:
            logger.error("rolling back failed: %s", exc)
    if cancelled:
        raise asyncio.CancelledError


def _loop_reader(path: Path) -> sqlite3.Connection | None:
    """A read-only connection for :meth:`Database.read_bounded`, never waiting for a lock;
    None if it cannot be opened (reads then all go to the reader's thread)."""
    conn = None
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=0")
        conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        logger.warning("no reader on the event loop (%s): every read takes the thread", exc)
        if conn is not None:
            conn.close()
        return None
    return conn


async def _connect(path: Path, busy_ms: int) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        await _execute(conn, "PRAGMA foreign_keys=ON")
        await _execute(conn, f"PRAGMA busy_timeout={int(busy_ms)}")
    except BaseException:
        await conn.close()
        raise
    return conn


async def _execute(conn: aiosqlite.Connection, sql: str) -> None:
    await conn.execute_fetchall(sql)
