"""The job-log records as the store returns them."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MAX_PER_PAGE = 100
# Pages beyond this are refused rather than overflowing SQLite's 64-bit OFFSET.
MAX_PAGE = 1_000_000_000


class Status(IntEnum):
    """A run's state, stored as the Rails enum's integer."""

    pending = 0
    processing = 1
    error = 2
    success = 3

    @property
    def finished(self) -> bool:
        """True once the run has ended, well or badly."""
        return self in (Status.error, Status.success)


def _as_utc(moment: datetime) -> datetime:
    """No offset means UTC; any offset is converted to UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of the range of dates") from None


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class JobLog(_Record):
    """One execution of the sync job."""

    id: int
    name: str
    status: Status
    created_at: UtcDatetime
    updated_at: UtcDatetime


class JobLogDetail(_Record):
    """One message a run wrote, in the order it was written."""

    id: int
    job_log_id: int
    message: str
    created_at: UtcDatetime
    updated_at: UtcDatetime


class JobLogWithDetails(JobLog):
    """A job log with all its details in chronological order."""

    details: list[JobLogDetail]


class JobLogPage(_Record):
    """One page of job logs, most recent first, and how many match in all."""

    items: list[JobLog]
    page: int
    per_page: int
    total: int


class DetailPage(_Record):
    """Details of one log in id order after a cursor; ``next_after`` resumes, None at the end."""

    items: list[JobLogDetail]
    next_after: int | None


class EventDetail(JobLogDetail):
    """A detail with its log's name, as the event stream sends it."""

    job_log_name: str


class StatusCounts(_Record):
    """How many job logs there are, in all and per status."""

    total: int = 0
    pending: int = 0
    processing: int = 0
    error: int = 0
    success: int = 0


class JobLogQuery(_Record):
    """Which job logs to list: a status, a created_at range [since, until), text in any of
    their details (case-insensitive for ASCII letters), and a page."""

    status: Status | None = None
    q: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    since: UtcDatetime | None = None
    until: UtcDatetime | None = None
    page: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 1
    per_page: Annotated[int, Field(ge=1, le=MAX_PER_PAGE)] = 25

    @model_validator(mode="after")
    def _range_is_ordered(self) -> JobLogQuery:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since must not be later than until")
        return self

    @property
    def offset(self) -> int:
        """Rows to skip before this page."""
        return (self.page - 1) * self.per_page
