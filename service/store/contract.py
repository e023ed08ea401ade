"""The store's contract: what every backend does, and answers, the same way.

:class:`JobLogStore` is the part of the store that has a PostgreSQL twin so far — a run's log
created, its lines appended, its status moved along the life cycle, runs left open closed, a
run read back, lines followed by id, pages of runs and searches, the counts, pages of a
run's lines.
:class:`SqliteStore` answers it with the store's own functions;
``service.store.postgres.PostgresStore`` with their PostgreSQL twins. One suite of tests
(tests/integration/test_store_contract.py) runs against both.
"""

from __future__ import annotations

from typing import Protocol

from service.wire import (
    DetailPage,
    EventDetail,
    JobLog,
    JobLogDetail,
    JobLogPage,
    Status,
    StatusCounts,
)

from . import reads, search, writes
from .database import Database
from .models import JobLogQuery


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
