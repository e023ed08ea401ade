"""Job logs and their lines: one model per record, as the store returns them and as they go out
as JSON everywhere — the API, the event stream, webhook notices and the purge's archive.

In JSON a status is its name, a moment is ISO 8601 in UTC with microseconds and ``Z``, a run
carries its ``duration_seconds`` once it has ended, and a line leaves out ``updated_at`` (a Rails
column that says nothing a line's ``created_at`` does not). In Python they are an
:class:`Status` and aware datetimes. :func:`iso_z` and :func:`sql_iso_z` are the one definition
of a moment's JSON form, for Python and for SQLite.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import IntEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    computed_field,
)

StatusName = Literal["pending", "processing", "error", "success"]
# A run's name: the second it started (YYYYMMDDhhmmss), then _1, _2, … for a same-second run.
NAME_PATTERN = re.compile(r"[0-9]{14}(?:_[0-9]+)?")


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


def iso_z(moment: datetime) -> str:
    """``2025-12-15T14:30:22.250000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_D = "[0-9]"
_SECONDS = f"{_D * 4}-{_D * 2}-{_D * 2} {_D * 2}:{_D * 2}:{_D * 2}"


def sql_iso_z(column: str) -> str:
    """SQLite's expression for :func:`iso_z` of a stored timestamp ``column``: Rails writes UTC
    text with microseconds or, when they are zero, without; any other form gives NULL (the
    caller then falls back to Python)."""
    return (
        f"CASE WHEN {column} GLOB '{_SECONDS}.{_D * 6}' "
        f"THEN substr({column}, 1, 10) || 'T' || substr({column}, 12) || 'Z' "
        f"WHEN {column} GLOB '{_SECONDS}' "
        f"THEN substr({column}, 1, 10) || 'T' || substr({column}, 12) || '.000000Z' END"
    )


def _as_utc(moment: datetime) -> datetime:
    """No offset means UTC; any offset is converted to UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of the range of dates") from None


UtcDatetime = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(iso_z, return_type=str, when_used="json"),
]
StatusField = Annotated[
    Status, PlainSerializer(lambda status: status.name, return_type=StatusName, when_used="json")
]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class JobLog(_Record):
    """One run of the sync job."""

    id: int
    name: str = Field(examples=["20251215143022", "20251215143022_1"])
    status: StatusField
    created_at: UtcDatetime = Field(description="When the run was created (UTC, ISO 8601).")
    updated_at: UtcDatetime = Field(description="When its status last changed (UTC, ISO 8601).")

    @computed_field(  # type: ignore[prop-decorator]
        description="updated_at - created_at once finished; null while pending or processing."
    )
    @property
    def duration_seconds(self) -> float | None:
        """How long the run took, once it has ended."""
        if not self.status.finished:
            return None
        return round((self.updated_at - self.created_at).total_seconds(), 6)


class JobLogDetail(_Record):
    """One line a run wrote, in the order it was written."""

    id: int
    job_log_id: int
    message: str
    created_at: UtcDatetime
    updated_at: UtcDatetime = Field(exclude=True)


class EventDetail(JobLogDetail):
    """A line with its run's name, as the event stream sends it."""

    job_log_name: str


class JobLogWithDetails(JobLog):
    """A run with every line it wrote, in order."""

    details: list[JobLogDetail]


class JobLogPage(_Record):
    """A page of runs, most recent first, and how many match in all."""

    items: list[JobLog]
    page: int
    per_page: int
    total: int = Field(
        description="How many runs match; with text (q), counted up to 1,000 only: past "
        "that it is 1,000 and total_is_lower_bound is true."
    )
    total_is_lower_bound: bool = Field(
        default=False,
        description="True when more runs match than total says (a search that found more "
        "than 1,000 runs): the last page is not known, keep paging while a page is full.",
    )


class DetailPage(_Record):
    """A page of a run's lines; pass ``next_after`` as ``after`` for the next, null at the end."""

    items: list[JobLogDetail]
    next_after: int | None


class StatusCounts(_Record):
    """How many runs there are, in all and per status."""

    total: int = 0
    pending: int = 0
    processing: int = 0
    error: int = 0
    success: int = 0
