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
import time
from collections.abc import AsyncIterator, Callable, Sequence
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

    async def read(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """The rows of one read-only statement, on the reader connection.

        One statement is its own consistent read (SQLite gives it one snapshot), so it needs
        no BEGIN and ROLLBACK around it: one trip to the connection's thread instead of three.
        """
        async with self._read_lock:
            return list(await self._reader.execute_fetchall(sql, params))

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
    """Check the tables the file may already hold, then apply schema.sql in one transaction.

    A database that lacks the per-status counts or the search index (one the Rails app
    created, or an older version of this service) has them filled in the same transaction
    that creates them, so they are right from the first read, and never filled twice.
    """
    for table, required in _REQUIRED_COLUMNS.items():
        present = {
            row["name"] for row in await conn.execute_fetchall(f"PRAGMA table_info({table})")
        }
        missing = required - present
        if present and missing:
            raise IncompatibleSchema(
                f"{path}: table {table} lacks column(s) {', '.join(sorted(missing))}"
            )
    await conn.execute_fetchall("BEGIN IMMEDIATE")
    try:
        existing = {
            row["name"]
            for row in await conn.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        for statement in _statements(schema_sql()):
            await conn.execute_fetchall(statement)
        for table, fill in _FILLS.items():
            if table not in existing:
                started = time.monotonic()
                await conn.execute_fetchall(fill)
                logger.info("filled %s in %.1f s", table, time.monotonic() - started)
        await conn.commit()
    except BaseException:
        await _roll_back(conn)
        raise


# What fills a derived table the first time it is created in a database that already has rows.
_FILLS = {
    "job_log_counts": (
        "INSERT INTO job_log_counts (status, n) "
        "SELECT status, count(*) FROM job_logs GROUP BY status"
    ),
    "job_log_details_search": (
        "INSERT INTO job_log_details_search (job_log_details_search) VALUES ('rebuild')"
    ),
}


def _statements(script: str) -> list[str]:
    """The complete statements of ``script``, one by one (a trigger body stays whole)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statement = pending.strip()
            if statement.strip(";").strip() and not _only_comments(statement):
                statements.append(statement)
            pending = ""
    return statements


def _only_comments(statement: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in statement.splitlines())
