"""The store's contract (service/store/contract.py) on PostgreSQL."""

from __future__ import annotations

from service.wire import (
    DetailPage,
    EventDetail,
    JobLog,
    JobLogDetail,
    JobLogPage,
    Status,
    StatusCounts,
)

from ..models import JobLogQuery
from . import reads, writes
from .database import PgDatabase


class PostgresStore:
    """The contract on PostgreSQL: the twins of the store's functions over a PgDatabase."""

    def __init__(self, db: PgDatabase) -> None:
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
        return await reads.list_job_logs(self.db, query)

    async def count_by_status(self) -> StatusCounts:
        return await reads.count_by_status(self.db)

    async def detail_page(
        self, job_log_id: int, *, after: int, limit: int, q: str | None = None
    ) -> DetailPage:
        return await reads.detail_page(self.db, job_log_id, after=after, limit=limit, q=q)
