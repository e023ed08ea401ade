"""The job-log schema: applied at every start, and how a database with history is adopted.

schema.sql is idempotent: a database the Rails app created keeps its tables and indexes and
gains ours. What ours derive from the rows already there is filled without ever holding the
write lock for long, because the Rails app writes to the same file with a 5 s busy timeout:

* the per-status counts are filled in the transaction that creates them: one ``GROUP BY`` over
  an index (about 50 ms at a million runs, its pages read beforehand outside the lock);
* the runs in (status, created_at) order (``job_logs_by_status``, what the seed's composite
  index would hold) and then the trigram search index are built afterwards by
  :class:`BackgroundBuild`, in batches, each one short transaction, while the service serves.
  How far each has come is a row of its ``…_build`` table (see schema.sql), moved in the same
  transaction as each batch: a restart resumes there, and nothing is added twice or left out.
  Until each is complete, ``Database.by_status_ready`` / ``Database.search_ready`` is False
  and the reads that would use it read the runs or lines themselves instead.

The composite index itself is created only where that takes a few milliseconds (a database
with few runs): CREATE INDEX cannot be split, and at a million runs it would hold the lock
for about a second. The service's reads do not need it; it is there for the Rails app's.
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
REQUIRED_COLUMNS = {
    "job_logs": {"id", "name", "status", "created_at", "updated_at"},
    "job_log_details": {"id", "job_log_id", "message", "created_at", "updated_at"},
}
_SEARCH = "job_log_details_search"
_BY_STATUS = "job_logs_by_status"
_TRIGGERS = {
    table: tuple(f"{table}_after_{what}" for what in ("insert", "delete", "update"))
    for table in (_SEARCH, _BY_STATUS)
}
_COMPOSITE_INDEX = (
    "CREATE INDEX IF NOT EXISTS index_job_logs_on_status_and_created_at "
    "ON job_logs(status, created_at)"
)
# The most runs the composite index is created over in the schema's transaction: a few ms.
COMPOSITE_INDEX_MAX_RUNS = 10_000
_COUNTS_FILL = (
    "INSERT INTO job_log_counts (status, n) SELECT status, count(*) FROM job_logs GROUP BY status"
)


@dataclass(frozen=True)
class Pending:
    """What the background build has still to add to the database just opened."""

    by_status: bool
    search: bool


async def apply_schema(conn: aiosqlite.Connection, path: Path) -> Pending:
    """Check the tables the file may already hold, then apply schema.sql in one transaction.

    A database without the per-status counts (one the Rails app created, or an older version
    of this service) has them filled in that transaction. One without the runs by status or
    the search index gets them empty, and a pending build of every run or line already there.
    """
    await _check_columns(conn, path)
    existing = await _tables(conn)
    if "job_log_counts" not in existing and "job_logs" in existing:
        # Read the index the fill scans before taking the lock: cold, the fill takes 4 times
        # as long, and every other writer waits for it.
        await conn.execute_fetchall("SELECT status, count(*) FROM job_logs GROUP BY status")
    await conn.execute_fetchall("BEGIN IMMEDIATE")
    try:
        existing = await _tables(conn)
        for table, triggers in _TRIGGERS.items():
            if table not in existing:
                # A new table gets the triggers that go with it (a table dropped by hand may
                # have left older ones behind).
                for trigger in triggers:
                    await conn.execute_fetchall(f"DROP TRIGGER IF EXISTS {trigger}")
        for statement in _statements(schema_sql()):
            await conn.execute_fetchall(statement)
        few = list(
            await conn.execute_fetchall(
                "SELECT count(*) <= ? AS few FROM (SELECT 1 FROM job_logs LIMIT ?)",
                (COMPOSITE_INDEX_MAX_RUNS, COMPOSITE_INDEX_MAX_RUNS + 1),
            )
        )
        if few[0]["few"]:
            await conn.execute_fetchall(_COMPOSITE_INDEX)
        if "job_log_counts" not in existing:
            started = time.monotonic()
            await conn.execute_fetchall(_COUNTS_FILL)
            logger.info("filled job_log_counts in %.3f s", time.monotonic() - started)
        pending = await _pending_builds(conn, existing)
        await conn.commit()
    except BaseException:
        with suppress(sqlite3.Error):
            await asyncio.shield(conn.rollback())
        raise
    return pending


async def _check_columns(conn: aiosqlite.Connection, path: Path) -> None:
    for table, required in REQUIRED_COLUMNS.items():
        present = {
            row["name"] for row in await conn.execute_fetchall(f"PRAGMA table_info({table})")
        }
        missing = required - present
        if present and missing:
            raise IncompatibleSchema(
                f"{path}: table {table} lacks column(s) {', '.join(sorted(missing))}"
            )


async def _pending_builds(conn: aiosqlite.Connection, existing: set[str]) -> Pending:
    """In the schema's transaction: a build of every run or line already there for each
    table just created (any added from here on is taken by its trigger, as its id is above
    upto); and what is pending, from this start or an earlier one."""
    pending = {}
    for table, build, source in (
        (_BY_STATUS, _BY_STATUS_BUILD, "job_logs"),
        (_SEARCH, _SEARCH_BUILD, "job_log_details"),
    ):
        if table not in existing:
            # max(id) as a scalar subquery: SQLite reads it from the end of the table's
            # b-tree. As the aggregate of the INSERT's own SELECT (with HAVING, or in a
            # FROM subquery) it scanned an index to the end: 1.1 s at 21 million lines,
            # holding the lock all along.
            await conn.execute_fetchall(
                f"INSERT INTO {build} (id, done, upto) "
                f"SELECT 1, 0, (SELECT max(id) FROM {source}) AS last WHERE last IS NOT NULL"
            )
        rows = list(await conn.execute_fetchall(f"SELECT done, upto FROM {build}"))
        if rows:
            logger.info("%s: ids %d to %d of %s to add", table, *rows[0], source)
        pending[table] = bool(rows)
    return Pending(by_status=pending[_BY_STATUS], search=pending[_SEARCH])


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


# One batch of a build: the rows of the next ``ids`` ids above the watermark (ids are dense,
# bar the rows deleted since), and the watermark moved past them; no row left once it reaches
# upto. ``{{ids}}`` is the batch's size. Then the batch's pages are copied into the database
# at once (a passive checkpoint takes no lock): left in the WAL, they made the next writer to
# commit past 1,000 pages -- the Rails app -- run the checkpoint itself (855 ms at a decade).
def _batch(build: str, insert: str, select: str, source: str) -> str:
    return f"""
BEGIN IMMEDIATE;
INSERT INTO {insert}
  SELECT {select} FROM {build} AS b
  JOIN {source} AS r ON r.id > b.done AND r.id <= min(b.upto, b.done + {{ids}});
UPDATE {build} SET done = min(upto, done + {{ids}});
DELETE FROM {build} WHERE done >= upto;
COMMIT;
PRAGMA wal_checkpoint(PASSIVE);
"""


@dataclass(frozen=True)
class _Stage:
    """One thing the background build adds to an adopted database, batch by batch."""

    what: str
    build_table: str
    batch: str

    def ready(self, db: Database) -> bool:
        return db.by_status_ready if self.build_table == _BY_STATUS_BUILD else db.search_ready

    def set_ready(self, db: Database) -> None:
        if self.build_table == _BY_STATUS_BUILD:
            db.by_status_ready = True
        else:
            db.search_ready = True


_BY_STATUS_BUILD = "job_logs_by_status_build"
_SEARCH_BUILD = "search_index_build"
# The runs first: a tenth as many rows, and the reads of every status filter wait for them.
_STAGES = (
    _Stage(
        "the runs by status",
        _BY_STATUS_BUILD,
        _batch(
            _BY_STATUS_BUILD,
            f"{_BY_STATUS} (status, created_at, id)",
            "r.status, r.created_at, r.id",
            "job_logs",
        ),
    ),
    _Stage(
        "the search index",
        _SEARCH_BUILD,
        _batch(_SEARCH_BUILD, f"{_SEARCH} (rowid, message)", "r.id, r.message", "job_log_details"),
    ),
)


@dataclass(frozen=True)
class BuildProgress:
    """How far a build is: rows up to ``done`` of ``upto`` are in."""

    done: int
    upto: int

    @property
    def fraction(self) -> float:
        """The share of the pending id range done so far, 0 to 1."""
        return 1.0 if self.upto <= 0 else min(1.0, self.done / self.upto)


class BackgroundBuild:
    """Builds what an adopted database lacks — the runs by status, then the search index — in
    short batches, in the background.

    Each batch is one write transaction of at most ``max_rows`` rows, sized to take about
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
        self._first_rows = first_rows
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
        """Whether every stage is complete (``db.by_status_ready`` and ``db.search_ready``)."""
        return all(stage.ready(self._db) for stage in _STAGES)

    def _stage(self) -> _Stage | None:
        return next((stage for stage in _STAGES if not stage.ready(self._db)), None)

    async def step(self) -> bool:
        """Add one batch of pending rows; True once every stage is complete."""
        stage = self._stage()
        if stage is None:
            return True
        if self.progress is None:
            self.progress = await _progress(self._db, stage.build_table)
        if self.progress is not None:
            started = time.monotonic()
            # One trip to the writer's thread, BEGIN to COMMIT (see Database.write_script);
            # the batch and the watermark move together.
            await self._db.write_script(stage.batch.format(ids=int(self._ids)))
            self.held = time.monotonic() - started
            self.longest = max(self.longest, self.held)
            if self.held > 0.1:
                logger.debug("a batch of %d ids took %.0f ms", self._ids, self.held * 1000)
            self._resize(self.held)
            self.batches += 1
            self.progress = await _progress(self._db, stage.build_table)
        if self.progress is None:
            stage.set_ready(self._db)
            logger.info("%s is complete", stage.what)
            # The next stage's rows cost another time each: start it small again.
            self._ids = max(1, min(self._first_rows, self._max_rows))
        return self.complete

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
                    "building %s failed (trying again in %.0f s): %s",
                    self._what(),
                    self._retry,
                    exc,
                )
                await asyncio.sleep(self._retry)
                continue
            if self.progress is not None and time.monotonic() - logged >= self._log_every:
                logged = time.monotonic()
                logger.info(
                    "building %s: %.0f %% (id %d of %d)",
                    self._what(),
                    self.progress.fraction * 100,
                    self.progress.done,
                    self.progress.upto,
                )
            await asyncio.sleep(self._pause_after(self.held))
        logger.info(
            "the background build is complete (%d batches, the longest %.0f ms; %.1f s)",
            self.batches,
            self.longest * 1000,
            time.monotonic() - started,
        )

    def _what(self) -> str:
        stage = self._stage()
        return "nothing" if stage is None else stage.what

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
        """Run :meth:`run` in a task of its own, unless there is nothing to build."""
        if not self.complete and self._task is None:
            self._task = asyncio.create_task(self.run(), name="background-build")

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
    return await _progress(db, _SEARCH_BUILD)


async def _progress(db: Database, build_table: str) -> BuildProgress | None:
    rows = await db.read(f"SELECT done, upto FROM {build_table}")
    return BuildProgress(rows[0]["done"], rows[0]["upto"]) if rows else None
