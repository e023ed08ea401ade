"""The job-log schema: applied at every start, and how a database with history is adopted.

schema.sql is idempotent: a database the Rails app created keeps its tables and indexes and
gains ours. What ours derive from the rows already there is filled without ever holding the
write lock for long, because the Rails app writes to the same file with a 5 s busy timeout:

* the per-status counts are filled in the transaction that creates them: one ``GROUP BY`` over
  an index (about 50 ms at a million runs, its pages read beforehand outside the lock);
* the trigram search index is built afterwards by :class:`SearchIndexBuild`, in batches of a
  few thousand lines, each one short transaction, while the service serves. How far it has come
  is a row of ``search_index_build`` (see schema.sql), moved in the same transaction as each
  batch: a restart resumes there, and nothing is indexed twice or left out. Until it is
  complete, ``Database.search_ready`` is False and searches scan instead.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite

from service.resources import schema_sql

from .errors import IncompatibleSchema

if TYPE_CHECKING:
    from .database import Database

logger = logging.getLogger(__name__)

# The columns this service reads and writes; a database may have more (Rails adds none today).
_REQUIRED_COLUMNS = {
    "job_logs": {"id", "name", "status", "created_at", "updated_at"},
    "job_log_details": {"id", "job_log_id", "message", "created_at", "updated_at"},
}
_SEARCH = "job_log_details_search"
_SEARCH_TRIGGERS = tuple(f"{_SEARCH}_after_{what}" for what in ("insert", "delete", "update"))
_COUNTS_FILL = (
    "INSERT INTO job_log_counts (status, n) SELECT status, count(*) FROM job_logs GROUP BY status"
)


async def apply_schema(conn: aiosqlite.Connection, path: Path) -> bool:
    """Check the tables the file may already hold, then apply schema.sql in one transaction.

    A database without the per-status counts (one the Rails app created, or an older version
    of this service) has them filled in that transaction. One without the search index gets
    an empty index and a pending build of every line already there. True when the search
    index is complete.
    """
    existing = await _tables(conn)
    for table, required in _REQUIRED_COLUMNS.items():
        present = {
            row["name"] for row in await conn.execute_fetchall(f"PRAGMA table_info({table})")
        }
        missing = required - present
        if present and missing:
            raise IncompatibleSchema(
                f"{path}: table {table} lacks column(s) {', '.join(sorted(missing))}"
            )
    if "job_log_counts" not in existing and "job_logs" in existing:
        # Read the index the fill scans before taking the lock: cold, the fill takes 4 times
        # as long, and every other writer waits for it.
        await conn.execute_fetchall("SELECT status, count(*) FROM job_logs GROUP BY status")
    await conn.execute_fetchall("BEGIN IMMEDIATE")
    try:
        existing = await _tables(conn)
        if _SEARCH not in existing:
            # A new index gets the triggers that go with it (an index dropped by hand may have
            # left older ones behind).
            for trigger in _SEARCH_TRIGGERS:
                await conn.execute_fetchall(f"DROP TRIGGER IF EXISTS {trigger}")
        for statement in _statements(schema_sql()):
            await conn.execute_fetchall(statement)
        if "job_log_counts" not in existing:
            started = time.monotonic()
            await conn.execute_fetchall(_COUNTS_FILL)
            logger.info("filled job_log_counts in %.3f s", time.monotonic() - started)
        if _SEARCH not in existing:
            # Every line there is now is pending; any line added from here on is indexed by
            # its trigger, as its id is above upto.
            await conn.execute_fetchall(
                "INSERT INTO search_index_build (id, done, upto) "
                "SELECT 1, 0, max(id) FROM job_log_details HAVING max(id) IS NOT NULL"
            )
        pending = await conn.execute_fetchall("SELECT done, upto FROM search_index_build")
        await conn.commit()
    except BaseException:
        with suppress(sqlite3.Error):
            await asyncio.shield(conn.rollback())
        raise
    if pending:
        (row,) = pending
        logger.info("the search index is incomplete: lines %d to %d to index", *row)
    return not pending


async def _tables(conn: aiosqlite.Connection) -> set[str]:
    rows = await conn.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row["name"] for row in rows}


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


# One batch: the lines of the next ``ids`` ids above the watermark (ids are dense, bar the
# lines deleted since), and the watermark moved past them; no row left once it reaches upto.
_BATCH = f"""
BEGIN IMMEDIATE;
INSERT INTO {_SEARCH} (rowid, message)
  SELECT d.id, d.message FROM search_index_build AS b
  JOIN job_log_details AS d ON d.id > b.done AND d.id <= min(b.upto, b.done + {{ids}});
UPDATE search_index_build SET done = min(upto, done + {{ids}});
DELETE FROM search_index_build WHERE done >= upto;
COMMIT;
"""


@dataclass(frozen=True)
class BuildProgress:
    """How far the search index build is: lines up to ``done`` of ``upto`` are indexed."""

    done: int
    upto: int

    @property
    def fraction(self) -> float:
        """The share of the pending id range indexed so far, 0 to 1."""
        return 1.0 if self.upto <= 0 else min(1.0, self.done / self.upto)


class SearchIndexBuild:
    """Builds the search index of an adopted database in short batches, in the background.

    Each batch is one write transaction of at most ``max_rows`` lines, sized to take about
    ``target_seconds``; between batches the lock is left free for ``pause_seconds``. Another
    writer that finds the lock taken sleeps and retries (SQLite's busy handler, at most 25 ms
    apart in its first 128 ms of waiting): the pause is longer than that gap, so such a
    writer gets in after one batch at most instead of racing the next one.
    """

    def __init__(
        self,
        db: Database,
        *,
        max_rows: int = 20_000,
        first_rows: int = 1_000,
        target_seconds: float = 0.01,
        pause_seconds: float = 0.03,
        retry_seconds: float = 5.0,
        log_every_seconds: float = 30.0,
    ) -> None:
        self._db = db
        self._ids = max(1, min(first_rows, max_rows))
        self._max_rows = max_rows
        self._target = target_seconds
        self._pause = pause_seconds
        self._retry = retry_seconds
        self._log_every = log_every_seconds
        self.progress: BuildProgress | None = None
        self.batches = 0
        # How long the last batch and the longest one held the write lock, in seconds.
        self.held = 0.0
        self.longest = 0.0
        # Batches that failed (a locked database, a full disk) and were tried again later.
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def complete(self) -> bool:
        """Whether the index holds every line (then ``db.search_ready`` is True)."""
        return self._db.search_ready

    async def step(self) -> bool:
        """Index one batch of pending lines; True once the index is complete."""
        if self.progress is None:
            self.progress = await read_progress(self._db)
        if self.progress is not None:
            started = time.monotonic()
            # One trip to the writer's thread, BEGIN to COMMIT (see Database.write_script);
            # the batch and the watermark move together.
            await self._db.write_script(_BATCH.format(ids=int(self._ids)))
            self.held = time.monotonic() - started
            self.longest = max(self.longest, self.held)
            if self.held > 0.1:
                logger.debug("a batch of %d ids took %.0f ms", self._ids, self.held * 1000)
            self._resize(self.held)
            self.batches += 1
            self.progress = await read_progress(self._db)
        if self.progress is None:
            self._db.search_ready = True
            return True
        return False

    def _resize(self, took: float) -> None:
        """Aim the next batch at the target time, changing by at most half or double."""
        factor = min(2.0, max(0.5, self._target / max(took, 1e-6)))
        self._ids = max(1, min(self._max_rows, round(self._ids * factor)))

    async def run(self) -> None:
        """Build until complete, pausing between batches; a failed batch is tried again later."""
        logged = time.monotonic()
        started = logged
        while not self.complete:
            try:
                if await self.step():
                    break
            except Exception as exc:  # a locked database, a full disk: try again later
                self.failures += 1
                logger.warning(
                    "building the search index failed (trying again in %.0f s): %s",
                    self._retry,
                    exc,
                )
                await asyncio.sleep(self._retry)
                continue
            if self.progress is not None and time.monotonic() - logged >= self._log_every:
                logged = time.monotonic()
                logger.info(
                    "building the search index: %.0f %% (line %d of %d)",
                    self.progress.fraction * 100,
                    self.progress.done,
                    self.progress.upto,
                )
            await asyncio.sleep(self._pause_after(self.held))
        logger.info(
            "the search index is complete (%d batches, the longest %.0f ms; %.1f s)",
            self.batches,
            self.longest * 1000,
            time.monotonic() - started,
        )

    def _pause_after(self, held: float) -> float:
        """How long to leave the lock free after a batch that held it ``held`` seconds.

        A writer kept waiting sleeps between tries, longer the longer it has waited (SQLite's
        busy handler: at most 25 ms in its first 103 ms, 50 ms up to 228 ms, then 100 ms). A
        pause longer than its next sleep lets it in before the next batch, so no batch after
        the first can add to its wait.
        """
        sleep = 0.025 if held < 0.103 else 0.05 if held < 0.228 else 0.1
        return max(self._pause, sleep + 0.01)

    def start(self) -> None:
        """Run :meth:`run` in a task of its own, unless the index is already complete."""
        if not self.complete and self._task is None:
            self._task = asyncio.create_task(self.run(), name="search-index-build")

    async def close(self) -> None:
        """Stop the build (a batch under way is rolled back; it is done again next time)."""
        if self._task is None:
            return
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task
        self._task = None


async def read_progress(db: Database) -> BuildProgress | None:
    """How far the search index build is, as committed; None when it is complete."""
    rows = await db.read("SELECT done, upto FROM search_index_build")
    return BuildProgress(rows[0]["done"], rows[0]["upto"]) if rows else None
