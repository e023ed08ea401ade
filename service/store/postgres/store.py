"""The store's contract (service/store/contract.py) on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta

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
from ..purge import DetailMark, MonthCount, Purgeable
from ..reads import DetailPageJson, LastError
from ..timeline import Bucket
from . import purge, reads, search, timeline, writes
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
        return await reads.search_progress(self.db)
