"""What the API sends: pydantic models of every answer, and the converters from the store's.

Timestamps are ISO 8601 in UTC with ``Z``; a status is its name.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.sources import SourceDescription
from service.store import JobLog, JobLogDetail, JobLogWithDetails, StatusCounts
from service.store.detail_pages import DetailPageJson
from service.store.models import DetailPage, EventDetail, JobLogPage

StatusName = Literal["pending", "processing", "error", "success"]


def iso_z(moment: datetime) -> str:
    """``2025-12-15T14:30:22.250000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class JobLogOut(_Out):
    """One run of the sync job."""

    id: int
    name: str = Field(examples=["20251215143022", "20251215143022_1"])
    status: StatusName
    created_at: str = Field(description="When the run was created (UTC, ISO 8601).")
    updated_at: str = Field(description="When its status last changed (UTC, ISO 8601).")
    duration_seconds: float | None = Field(
        description="updated_at - created_at once finished; null while pending or processing."
    )


class DetailOut(_Out):
    """One line a run wrote."""

    id: int
    job_log_id: int
    message: str
    created_at: str


class EventDetailOut(DetailOut):
    """A detail as the event stream sends it, with its log's name."""

    job_log_name: str


class JobLogWithDetailsOut(JobLogOut):
    """A run with every line it wrote, in order."""

    details: list[DetailOut]


class JobLogPageOut(_Out):
    """A page of runs, most recent first."""

    items: list[JobLogOut]
    page: int
    per_page: int
    total: int


class DetailPageOut(_Out):
    """A page of a run's lines; pass ``next_after`` as ``after`` for the next, null at the end."""

    items: list[DetailOut]
    next_after: int | None


class StatsOut(_Out):
    """How many runs there are, in all and per status."""

    total: int
    pending: int
    processing: int
    error: int
    success: int


class SourceOut(_Out):
    """Where the rows come from."""

    kind: Literal["odbc", "demo"]
    server: str | None


class StatusOut(_Out):
    """What the page's header shows."""

    source: SourceOut
    interval_seconds: float
    next_run_at: str | None
    running: JobLogOut | None
    last_success_at: str | None


class ReadyChecksOut(_Out):
    """Each readiness check: ``ok`` or why not."""

    database: str
    scheduler: str


class ReadyOut(_Out):
    """Readiness: can the service write its log and run the sync; how is the sync doing."""

    status: Literal["ready", "unready"]
    checks: ReadyChecksOut
    source: SourceOut
    last_run: JobLogOut | None
    last_success_at: str | None
    next_run_at: str | None
    sync: Literal["ok", "late", "never"] = Field(
        description="late: the last success is older than 3 intervals; never: no success yet."
    )


class SessionOut(_Out):
    """Who the caller is: ``role`` null when nobody; ``via`` how it was proven."""

    role: Literal["viewer", "admin"] | None
    via: Literal["token", "session", "proxy", "anonymous"] | None
    user: str | None = Field(description="The user name a trusted proxy passed, else null.")
    expires_at: str | None = Field(description="When a browser session ends (UTC, ISO 8601).")


class ErrorOut(_Out):
    """What went wrong; ``field`` names the parameter at fault."""

    error: str
    field: str | None = None


class ConflictOut(_Out):
    """A run is already in progress."""

    error: str
    job_log: JobLogOut | None


def job_log_out(log: JobLog) -> JobLogOut:
    """The API form of a log."""
    finished = log.status.finished
    return JobLogOut(
        id=log.id,
        name=log.name,
        status=log.status.name,
        created_at=iso_z(log.created_at),
        updated_at=iso_z(log.updated_at),
        duration_seconds=(
            round((log.updated_at - log.created_at).total_seconds(), 6) if finished else None
        ),
    )


def detail_out(detail: JobLogDetail) -> DetailOut:
    """The API form of a detail."""
    return DetailOut(
        id=detail.id,
        job_log_id=detail.job_log_id,
        message=detail.message,
        created_at=iso_z(detail.created_at),
    )


def event_detail_out(detail: EventDetail) -> EventDetailOut:
    """The event-stream form of a detail."""
    return EventDetailOut(**detail_out(detail).model_dump(), job_log_name=detail.job_log_name)


def with_details_out(log: JobLogWithDetails) -> JobLogWithDetailsOut:
    """The API form of a log with its details."""
    return JobLogWithDetailsOut(
        **job_log_out(log).model_dump(), details=[detail_out(d) for d in log.details]
    )


def page_out(page: JobLogPage) -> JobLogPageOut:
    """The API form of a page of logs."""
    return JobLogPageOut(
        items=[job_log_out(log) for log in page.items],
        page=page.page,
        per_page=page.per_page,
        total=page.total,
    )


def detail_page_out(page: DetailPage) -> DetailPageOut:
    """The API form of a page of details."""
    return DetailPageOut(items=[detail_out(d) for d in page.items], next_after=page.next_after)


def stats_out(counts: StatusCounts) -> StatsOut:
    """The API form of the counts."""
    return StatsOut(**counts.model_dump())


def source_out(description: SourceDescription) -> SourceOut:
    """The API form of the source."""
    return SourceOut(kind=description.kind, server=description.server)


def detail_page_json(page: DetailPageJson) -> str:
    """A :class:`DetailPageOut` from a page SQLite wrote as JSON (no model per detail)."""
    return f'{{"items":{page.items},"next_after":{json.dumps(page.next_after)}}}'
