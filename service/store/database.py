"""The SQLite database: its connections, pragmas, schema and transactions.

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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import aiosqlite

from service.clock import Clock, utc_now
from service.resources import schema_sql

from .errors import IncompatibleSchema, StoreError

logger = logging.getLogger(__name__)

# The columns this service reads and writes; a database may have more (Rails adds none today).
_REQUIRED_COLUMNS = {
    "job_logs": {"id", "name", "status", "created_at", "updated_at"},
    "job_log_details": {"id", "job_log_id", "message", "created_at", "updated_at"},
}


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
            if apply_schema:
                await _apply_schema(writer, path)
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
        return cls(path, writer, reader, clock, zone or ZoneInfo("UTC"), file_id)

    async def close(self) -> None:
        """Close both connections, after any write under way has finished."""
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


async def _apply_schema(conn: aiosqlite.Connection, path: Path) -> None:
    """Check the tables the file may already hold, then apply schema.sql in one transaction."""
    for table, required in _REQUIRED_COLUMNS.items():
        present = {
            row["name"] for row in await conn.execute_fetchall(f"PRAGMA table_info({table})")
        }
        missing = required - present
        if present and missing:
            raise IncompatibleSchema(
                f"{path}: table {table} lacks column(s) {', '.join(sorted(missing))}"
            )
    await conn.executescript(f"BEGIN IMMEDIATE;\n{schema_sql()}\nCOMMIT;")
