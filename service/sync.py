"""The sync job: source → staging → swap, and the messages it writes on the way.

A successful run writes exactly:
    Job started - SyncOpenOrdersJob
    Connecting to SQL Server <server>...
    Connected successfully
    Fetching records from vwZSDOrder_Advanced...
    Importing records in batches of 500...
    Batch 1/4 imported (500 records)   … one per batch, as it is staged
    Fetched 1,523 records
    Replacing open_orders table...
    Job completed successfully - Total: 1,523 records in 2.3 seconds
and a failed one ends with ``ERROR: <stage> failed - <reason>``. What the source warns of (a
driver's SQL_SUCCESS_WITH_INFO diagnostics, a refused query timeout) comes as ``WARNING: …``
lines after ``Connected successfully`` and after ``Fetching records from …``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from service.runlog import DetailListener, RunLog
from service.sources.base import Row, Source, SourceError, SourceSession
from service.store import JobLogStore, StagingAppender, StoreError, SyncTarget, until_written
from service.wire import JobLog

logger = logging.getLogger(__name__)

T = TypeVar("T")

JOB_NAME = "SyncOpenOrdersJob"
# A successful run's last line, as written in run(): what it says of the records imported.
_COMPLETED = re.compile(r"Job completed successfully - Total: ([0-9,]+) records in ")
# The source's warnings written into one run's lines at most; past it, how many more there were.
MAX_WARNING_LINES = 20
SHUTTING_DOWN = "Interrupted - service shutting down"


@dataclass(frozen=True)
class SyncOptions:
    """How the job imports: batch size, shrink guard ratio, key for the change summary."""

    batch_size: int = 500
    min_ratio: float = 0.5
    key: str | None = None


class RunControl:
    """What the scheduler tells a run it is about to cancel: why."""

    def __init__(self) -> None:
        self.reason: str | None = None


class Refused(Exception):
    """The run stops on purpose (the shrink guard); the message is the whole reason."""


# The longest a batch waits for a line's transaction before trying the lock all the same.
_LINE_WAIT_SECONDS = 0.5


class _Stager:
    """What the source's thread does with each batch it fetches: stage it, then tell the loop.

    The loop is told through ``staged`` (each batch's row count, in order), and writes the
    batch's line while the thread goes on with the next one.
    """

    def __init__(self, staging: StagingAppender, staged: asyncio.Queue[int | None]) -> None:
        self._staging = staging
        self._staged = staged
        self._loop = asyncio.get_running_loop()
        # Set by the loop when the run stops early: the thread stages nothing more.
        self.stop = threading.Event()
        # A batch the database was too busy to take; the loop waits for it, then stages it.
        self.unstaged: list[Row] | None = None
        # Clear while the loop writes a line. The line's transaction holds the file's write
        # lock across several hops to the writer's thread; a staging BEGIN meanwhile would
        # sleep in SQLite's busy handler (1, 2, 5, 10 ms…) rather than go on the moment the
        # line is committed. Bounded: a line waiting for another process is not waited for.
        self.no_line = threading.Event()
        self.no_line.set()

    def __call__(self, rows: list[Row]) -> bool:
        if not rows or self.stop.is_set():
            return False
        self.no_line.wait(_LINE_WAIT_SECONDS)
        if not self._staging.try_append(rows):
            self.unstaged = rows
            return False
        self._loop.call_soon_threadsafe(self._staged.put_nowait, len(rows))
        return True


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def records_imported(line: str | None) -> int | None:
    """The records a successful run imported, from its last line; None for any other line."""
    found = _COMPLETED.match(line) if line is not None else None
    return int(found.group(1).replace(",", "")) if found else None


def batch_line(batch: int, planned: int | None, rows: int) -> str:
    """``Batch n/N imported (r records)``; N rises with n when the source brings more rows
    than it counted; without a count, ``Batch n imported (r records)``."""
    of = "" if planned is None else f"/{max(planned, batch):,}"
    return f"Batch {batch:,}{of} imported ({rows:,} records)"


class SyncJob:
    """Runs one sync for a job log, writing its details to ``store`` as it goes and the rows
    into ``target``; ``epoch`` (PostgreSQL: the run lease's, taken for this run) fences the
    swap."""

    def __init__(
        self,
        store: JobLogStore,
        target: SyncTarget,
        source: Source,
        options: SyncOptions,
        *,
        on_detail: DetailListener | None = None,
        epoch: int | None = None,
    ) -> None:
        self._store = store
        self._target = target
        self._source = source
        self._options = options
        self._on_detail = on_detail
        self._epoch = epoch
        # What the run is doing, named in its ERROR line: Connection, Fetch, Import, Replace.
        self._stage = "Job"
        # Rows fetched from the source by the current (or last) run.
        self.rows = 0
        # The job log id of the current (or last) run: its staging table's.
        self._run_id = 0

    async def run(self, log: JobLog, *, force: bool, control: RunControl) -> JobLog:
        """Take ``log`` from pending to success or error; a cancel ends it as error too."""
        self._stage = "Job"
        self.rows = 0
        self._run_id = run_id = log.id
        started = time.monotonic()
        run = RunLog(self._store, log, self._on_detail)
        try:
            await run.start()
            await run.say(f"Job started - {JOB_NAME}")
            await self._write(self._target.drop_staging, run_id)
            self._stage = "Connection"
            await run.say(self._source.connecting_message)
            async with self._source.connect() as session:
                await run.say("Connected successfully")
                warned = await self._say_warnings(run, session, 0)
                self._stage = "Fetch"
                await run.say(f"Fetching records from {self._source.fetching_from}...")
                expected = await session.count()
                columns = await session.execute()
                await self._say_warnings(run, session, warned)
                self._stage = "Import"
                await self._write(self._target.create_staging, run_id, columns)
                fetched = await self._import(run, session, len(columns), expected)
            self._stage = "Replace"
            await run.say(f"Fetched {fetched:,} records")
            summary = await self._check_and_summarise(fetched, force)
            await run.say("Replacing open_orders table...")
            await self._write(self._target.swap_open_orders, run_id, self._epoch)
            seconds = time.monotonic() - started
            total = f"Total: {fetched:,} records in {seconds:.1f} seconds"
            # The new set is in: this line and the status wait for the disk, whatever it takes.
            await run.say(
                f"Job completed successfully - {total}" + (f" ({summary})" if summary else ""),
                wait_when_full=True,
            )
            return await run.succeed()
        except asyncio.CancelledError:
            await self._fail(run, control.reason or SHUTTING_DOWN)
            raise
        except Refused as exc:
            return await self._fail(run, str(exc))
        except (SourceError, StoreError, sqlite3.Error) as exc:
            return await self._fail(run, f"{self._stage} failed - {exc}")
        except Exception as exc:
            logger.exception("sync run %s failed unexpectedly", log.name)
            reason = f"{self._stage} failed - {type(exc).__name__}: {exc}"
            return await self._fail(run, reason)
        finally:
            await self._drop_staging()

    @staticmethod
    async def _say_warnings(run: RunLog, session: SourceSession, written: int) -> int:
        """The source's new warnings as ``WARNING:`` lines, up to MAX_WARNING_LINES in the run
        (``written`` so far), then one line counting the rest; returns the new ``written``."""
        warnings = session.warnings()
        room = max(0, MAX_WARNING_LINES - written)
        for warning in warnings[:room]:
            await run.say(f"WARNING: {warning}")
        if len(warnings) > room:
            more = len(warnings) - room
            await run.say(f"WARNING: {more:,} more from the source, not shown")
        return written + len(warnings)

    async def recover(self) -> None:
        """Remove what killed runs left behind (their staging tables); with the run lock held."""
        try:
            await asyncio.shield(self._target.recover())
        except (StoreError, sqlite3.Error) as exc:
            logger.error("could not drop the staging table: %s", exc)

    async def _import(
        self, run: RunLog, session: SourceSession, width: int, expected: int | None
    ) -> int:
        """Stage the rows batch by batch, saying ``Batch n/N imported`` after each.

        The source's own thread fetches each batch and stages it through the run's own
        connection to the target, then goes straight on to the next, as the plain
        fetch-and-insert loop does: no hand-over of the GIL between threads row by row, and no
        wait for the event loop between batches. The loop writes each staged batch's line
        meanwhile, in order, through the job-log store. A fetch's error is raised once the
        lines of the batches staged before it are written, so the lines keep their order.
        """
        size = self._options.batch_size
        await run.say(f"Importing records in batches of {size:,}...")
        planned = math.ceil(expected / size) if expected is not None else None
        fetched = batch = 0
        async with self._target.open_staging(self._run_id, width) as staging:
            staged: asyncio.Queue[int | None] = asyncio.Queue()
            stager = _Stager(staging, staged)
            try:
                while True:
                    fetching = asyncio.ensure_future(session.fetch_each(size, stager))
                    fetching.add_done_callback(_retrieve)
                    fetching.add_done_callback(lambda _: staged.put_nowait(None))
                    while (rows := await staged.get()) is not None:
                        batch += 1
                        fetched += rows
                        self.rows = fetched
                        stager.no_line.clear()
                        try:
                            await run.say(batch_line(batch, planned, rows))
                        finally:
                            stager.no_line.set()
                    try:
                        await fetching
                    except SourceError:
                        self._stage = "Fetch"
                        raise
                    if stager.unstaged is None:
                        break
                    # Another process holds the database: wait for it, then carry on.
                    await self._write(asyncio.to_thread, staging.append, stager.unstaged)
                    staged.put_nowait(len(stager.unstaged))
                    stager.unstaged = None
            finally:
                # Stopped early (an error, a cancel): the thread stops after the batch under
                # way (the session cancels a fetch blocked in the driver), and a batch being
                # staged ends, committed or rolled back, before the staging connection closes.
                stager.stop.set()
                stager.no_line.set()
        return fetched

    async def _check_and_summarise(self, fetched: int, force: bool) -> str | None:
        """The shrink guard, then the change summary when a key is set."""
        current = await self._target.count_open_orders()
        ratio = self._options.min_ratio
        if ratio > 0 and not force and current > 0 and fetched < max(1, ratio * current):
            raise Refused(
                f"Shrink guard - the source returned {fetched:,} records, open_orders holds "
                f"{current:,} (below {ratio:g} of it); open_orders was left as it was. "
                f"Run with force to replace it anyway"
            )
        if self._options.key is None:
            return None
        summary = await self._target.change_summary(self._run_id, self._options.key)
        return str(summary) if summary is not None else None

    async def _write(self, write: Callable[..., Awaitable[T]], *args: object) -> T:
        """A write to the target that waits while another process holds the database. A full
        disk or a lost server fails the run: its staging session and (PostgreSQL) its lease do
        not outlive a restart, and the next run starts afresh."""
        return await until_written(
            partial(write, *args),
            what="the import into open_orders",
            wait_when_full=False,
            wait_when_gone=False,
        )

    async def _fail(self, run: RunLog, reason: str) -> JobLog:
        """Drop the staging table (room on a full disk), then end the run as error."""
        await self._drop_staging()
        return await run.fail(reason)

    async def _drop_staging(self) -> None:
        try:
            await asyncio.shield(self._target.drop_staging(self._run_id))
        except (StoreError, sqlite3.Error) as exc:
            logger.error("could not drop the staging table: %s", exc)
