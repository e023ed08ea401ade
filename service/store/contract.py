"""The store's contract: what every backend does, and answers, the same way.

:class:`JobLogStore` is everything the service asks of the job-log tables: runs created, their
lines appended and their status moved along the life cycle, runs read back one by one, in
pages, searched, counted and bucketed, lines followed by id for the event stream, and the
purge's reads and deletes. :class:`SqliteStore` answers it with the store's own functions;
``service.store.postgres.PostgresStore`` with their PostgreSQL twins. One suite of tests
(tests/integration/test_store_contract.py) runs against both.

:class:`SyncTarget` is what the sync job asks of the database that receives ``open_orders``:
a run's staging table, its batches written from the source's thread, the shrink guard's count,
the change summary and the swap. :class:`SqliteTarget` answers it on SQLite;
``service.store.postgres.PgTarget`` on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Protocol

from service.sources.base import Column
from service.wire import (
    DetailPage,
    EventDetail,
    JobLog,
    JobLogDetail,
    JobLogPage,
    Status,
    StatusCounts,
)

from . import open_orders, purge, reads, schema, search, staging, timeline, writes
from .database import Database
from .models import JobLogQuery
from .open_orders import ChangeSummary
from .purge import DetailMark, MonthCount, Purgeable
from .reads import DetailPageJson, LastError
from .staging import Rows
from .timeline import Bucket


class JobLogStore(Protocol):
    """Runs and their lines, on one backend."""

    async def create_job_log(self) -> JobLog:
        """A pending run named after the clock's second, suffixed ``_1``, ``_2`` on collision."""

    async def set_status(self, job_log_id: int, status: Status) -> JobLog:
        """Move a run along its life cycle (InvalidTransition, NotFound)."""

    async def add_detail(self, job_log_id: int, message: str) -> JobLogDetail:
        """Append a line, timestamped now (InvalidMessage, NotFound)."""

    async def fail_job_log(
        self, job_log_id: int, message: str
    ) -> tuple[JobLog, JobLogDetail] | None:
        """The ERROR line and the error status together; None when the run had ended."""

    async def close_unfinished(self, message: str) -> list[JobLog]:
        """End every pending or processing run as error with ``message``."""

    async def job_log(self, ref: str | int) -> JobLog:
        """A run by id or name (NotFound)."""

    async def details_after(
        self, after: int, *, limit: int, job_log_id: int | None = None
    ) -> list[EventDetail]:
        """Lines with id above ``after``, in id order: what every writer committed, none
        missed."""

    async def list_job_logs(self, query: JobLogQuery) -> JobLogPage:
        """A page of runs, most recent first, filtered by status, time and text (ASCII
        letters folded); the total exact, or with text a lower bound past 1,000."""

    async def count_by_status(self) -> StatusCounts:
        """How many runs there are, in all and per status."""

    async def detail_page(
        self, job_log_id: int, *, after: int, limit: int, q: str | None = None
    ) -> DetailPage:
        """A page of a run's lines after a cursor, only those containing ``q`` if given."""

    async def detail_page_json(
        self, job_log_id: int, *, after: int, limit: int, q: str | None = None
    ) -> DetailPageJson:
        """:meth:`detail_page` as JSON, written by the database."""

    async def list_job_logs_json(self, query: JobLogQuery) -> str:
        """:meth:`list_job_logs` as JSON, written by the database."""

    async def job_log_with_details_json(self, ref: str | int) -> str:
        """A run and all its lines as JSON (NotFound)."""

    async def latest_with_details_json(self) -> str | None:
        """The latest run and all its lines as JSON; None before the first run."""

    def iter_details(
        self, job_log_id: int, *, page: int = 1000
    ) -> AsyncIterator[list[JobLogDetail]]:
        """All lines of a run in id order, a page at a time."""

    async def last_details(self, job_log_id: int, count: int) -> list[JobLogDetail]:
        """A run's last ``count`` lines, oldest first."""

    async def last_detail_id(self, job_log_id: int) -> int:
        """The id of a run's last line, 0 without one."""

    async def latest_job_log(self) -> JobLog | None:
        """The run started last (ties by id)."""

    async def first_run_at(self) -> datetime | None:
        """When the first run kept started."""

    async def last_success_at(self) -> datetime | None:
        """When the latest successful run ended."""

    async def last_error(self) -> LastError | None:
        """The latest failed run with its last line."""

    async def previous_finished_status(self, job_log_id: int) -> Status | None:
        """How the finished run before this one ended."""

    async def open_job_logs(self) -> list[JobLog]:
        """The runs pending or processing, by id."""

    async def neighbours(self, ref: str | int) -> tuple[JobLog | None, JobLog | None]:
        """The runs started just before and just after this one (NotFound)."""

    async def buckets(self, since: datetime, width: timedelta, count: int) -> list[Bucket]:
        """The non-empty of ``count`` buckets of ``width`` from ``since``, in order."""

    async def logs_with_details_after(self, after: int) -> list[JobLog]:
        """The runs with a line whose id is above ``after``, by id."""

    async def high_water_marks(self) -> tuple[int, int]:
        """The highest run id and the highest line id committed."""

    async def changes_since(
        self, log_cursor: int, detail_cursor: int, watched: Sequence[int], limit: int
    ) -> tuple[list[JobLog], list[EventDetail]]:
        """The runs created after ``log_cursor`` or among ``watched``, and up to ``limit``
        lines after ``detail_cursor``, read in one snapshot."""

    async def purgeable_after(self, cutoff: datetime, *, after: int, limit: int) -> list[Purgeable]:
        """Up to ``limit`` finished runs created before ``cutoff`` with id above ``after``, by
        id, with the mark of their lines."""

    async def purgeable_by_month(self, cutoff: datetime) -> list[MonthCount]:
        """How many finished runs before ``cutoff`` (and their lines) each month holds."""

    async def delete_details_through(self, job_log_id: int, *, through: int, limit: int) -> int:
        """Delete up to ``limit`` of a run's oldest lines with id <= ``through``; how many."""

    async def delete_logs(self, expected: Mapping[int, DetailMark]) -> tuple[int, int]:
        """Delete the runs still finished whose lines still match ``expected``, with their
        lines, in one transaction; (runs, lines) deleted."""

    async def search_progress(self) -> float | None:
        """None when searches use their index; else how far its build is, 0 to 1 (searches
        are answered meanwhile, slower)."""


class SqliteStore:
    """The contract on SQLite: the store's own functions over a :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_job_log(self) -> JobLog:
        return await writes.create_job_log(self.db)

    async def set_status(self, job_log_id: int, status: Status) -> JobLog:
        return await writes.set_status(self.db, job_log_id, status)

    async def add_detail(self, job_log_id: int, message: str) -> JobLogDetail:
        return await writes.add_detail(self.db, job_log_id, message)

    async def fail_job_log(
        self, job_log_id: int, message: str
    ) -> tuple[JobLog, JobLogDetail] | None:
        return await writes.fail_job_log(self.db, job_log_id, message)

    async def close_unfinished(self, message: str) -> list[JobLog]:
        return await writes.close_unfinished(self.db, message)

    async def job_log(self, ref: str | int) -> JobLog:
        return await reads.job_log(self.db, ref)

    async def details_after(
        self, after: int, *, limit: int, job_log_id: int | None = None
    ) -> list[EventDetail]:
        return await reads.details_after(self.db, after, limit=limit, job_log_id=job_log_id)

    async def list_job_logs(self, query: JobLogQuery) -> JobLogPage:
        return await search.list_job_logs(self.db, query)

    async def count_by_status(self) -> StatusCounts:
        return await reads.count_by_status(self.db)

    async def detail_page(
        self, job_log_id: int, *, after: int, limit: int, q: str | None = None
    ) -> DetailPage:
        return await reads.detail_page(self.db, job_log_id, after=after, limit=limit, q=q)

    async def detail_page_json(
        self, job_log_id: int, *, after: int, limit: int, q: str | None = None
    ) -> DetailPageJson:
        return await reads.detail_page_json(self.db, job_log_id, after=after, limit=limit, q=q)

    async def list_job_logs_json(self, query: JobLogQuery) -> str:
        return await search.list_job_logs_json(self.db, query)

    async def job_log_with_details_json(self, ref: str | int) -> str:
        return await reads.job_log_with_details_json(self.db, ref)

    async def latest_with_details_json(self) -> str | None:
        return await reads.latest_with_details_json(self.db)

    def iter_details(
        self, job_log_id: int, *, page: int = 1000
    ) -> AsyncIterator[list[JobLogDetail]]:
        return reads.iter_details(self.db, job_log_id, page=page)

    async def last_details(self, job_log_id: int, count: int) -> list[JobLogDetail]:
        return await reads.last_details(self.db, job_log_id, count)

    async def last_detail_id(self, job_log_id: int) -> int:
        return await reads.last_detail_id(self.db, job_log_id)

    async def latest_job_log(self) -> JobLog | None:
        return await reads.latest_job_log(self.db)

    async def first_run_at(self) -> datetime | None:
        return await reads.first_run_at(self.db)

    async def last_success_at(self) -> datetime | None:
        return await reads.last_success_at(self.db)

    async def last_error(self) -> LastError | None:
        return await reads.last_error(self.db)

    async def previous_finished_status(self, job_log_id: int) -> Status | None:
        return await reads.previous_finished_status(self.db, job_log_id)

    async def open_job_logs(self) -> list[JobLog]:
        return await reads.open_job_logs(self.db)

    async def neighbours(self, ref: str | int) -> tuple[JobLog | None, JobLog | None]:
        return await reads.neighbours(self.db, ref)

    async def buckets(self, since: datetime, width: timedelta, count: int) -> list[Bucket]:
        return await timeline.buckets(self.db, since, width, count)

    async def logs_with_details_after(self, after: int) -> list[JobLog]:
        return await reads.logs_with_details_after(self.db, after)

    async def high_water_marks(self) -> tuple[int, int]:
        return await reads.high_water_marks(self.db)

    async def changes_since(
        self, log_cursor: int, detail_cursor: int, watched: Sequence[int], limit: int
    ) -> tuple[list[JobLog], list[EventDetail]]:
        return await reads.changes_since(self.db, log_cursor, detail_cursor, watched, limit)

    async def purgeable_after(self, cutoff: datetime, *, after: int, limit: int) -> list[Purgeable]:
        return await purge.purgeable_after(self.db, cutoff, after=after, limit=limit)

    async def purgeable_by_month(self, cutoff: datetime) -> list[MonthCount]:
        return await purge.purgeable_by_month(self.db, cutoff)

    async def delete_details_through(self, job_log_id: int, *, through: int, limit: int) -> int:
        return await purge.delete_details_through(self.db, job_log_id, through=through, limit=limit)

    async def delete_logs(self, expected: Mapping[int, DetailMark]) -> tuple[int, int]:
        return await purge.delete_logs(self.db, expected)

    async def search_progress(self) -> float | None:
        if self.db.search_ready:
            return None
        progress = await schema.read_progress(self.db)
        return 1.0 if progress is None else round(progress.fraction, 4)


class StagingAppender(Protocol):
    """A run's staging writer, called from the source's thread, one batch at a time."""

    def append(self, rows: Rows) -> None:
        """One batch in a transaction of its own, rolled back whole on any error."""

    def try_append(self, rows: Rows) -> bool:
        """:meth:`append`, or False when another session held the database too long (nothing
        was written; the caller waits, then calls :meth:`append`)."""


class SyncTarget(Protocol):
    """The database receiving ``open_orders``, on one backend: each run stages the source's
    rows, then swaps them in at once. ``run_id`` is the run's job log id; on SQLite, where
    the run lock keeps runs one at a time, there is one staging table and it is ignored."""

    async def recover(self) -> None:
        """Drop every staging table that runs left behind (with the run lock held)."""

    async def drop_staging(self, run_id: int) -> None:
        """Drop the run's staging table, if there is one."""

    async def create_staging(self, run_id: int, columns: Sequence[Column]) -> None:
        """An empty staging table for the run with the source's columns (InvalidColumns)."""

    def open_staging(self, run_id: int, width: int) -> AbstractAsyncContextManager[StagingAppender]:
        """The run's staging writer, on a session of the run's own, closed at exit after the
        batch under way (wherever it runs)."""

    async def count_open_orders(self) -> int:
        """Rows in open_orders; 0 before the first swap."""

    async def change_summary(self, run_id: int, key: str) -> ChangeSummary | None:
        """New, gone and changed ``key`` values of the run's staging against open_orders;
        None when they cannot be compared."""

    async def swap_open_orders(self, run_id: int, epoch: int | None) -> None:
        """Replace open_orders by the run's staging in one transaction; on PostgreSQL fenced
        by the run lease's ``epoch`` (LeaseLost: nothing changed)."""


class SqliteTarget:
    """The sync's target on SQLite: open_orders.py and staging.py over a :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def recover(self) -> None:
        await open_orders.drop_staging(self.db)

    async def drop_staging(self, run_id: int) -> None:
        await open_orders.drop_staging(self.db)

    async def create_staging(self, run_id: int, columns: Sequence[Column]) -> None:
        await open_orders.create_staging(self.db, columns)

    def open_staging(self, run_id: int, width: int) -> AbstractAsyncContextManager[StagingAppender]:
        return staging.open_staging(self.db, width)

    async def count_open_orders(self) -> int:
        return await open_orders.count_open_orders(self.db)

    async def change_summary(self, run_id: int, key: str) -> ChangeSummary | None:
        return await open_orders.change_summary(self.db, key)

    async def swap_open_orders(self, run_id: int, epoch: int | None) -> None:
        await open_orders.swap_open_orders(self.db)
