"""What the API answers besides the records themselves (those are :mod:`service.wire`'s): the
status, readiness, who is signed in, errors and conflicts.

Moments are ISO 8601 in UTC with ``Z`` and a status is its name, as in every record.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.sources import SourceDescription
from service.wire import JobLog, UtcDatetime


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class StatusOut(_Out):
    """What the page's header shows."""

    source: SourceDescription
    interval_seconds: float
    next_run_at: UtcDatetime | None
    running: JobLog | None
    last_success_at: UtcDatetime | None


class ReadyChecksOut(_Out):
    """Each readiness check: ``ok`` or why not."""

    database: str
    scheduler: str


class ReadyOut(_Out):
    """Readiness: can the service write its log and run the sync; how is the sync doing."""

    status: Literal["ready", "unready"]
    checks: ReadyChecksOut
    source: SourceDescription
    last_run: JobLog | None
    last_success_at: UtcDatetime | None
    next_run_at: UtcDatetime | None
    sync: Literal["ok", "late", "never"] = Field(
        description="late: the last success is older than 3 intervals; never: no success yet."
    )
    search: Literal["ready", "building"] = Field(
        default="ready",
        description=(
            "building: the search index of an adopted database is being built in the "
            "background; searches scan the lines meanwhile (same results, slower)."
        ),
    )
    search_progress: float | None = Field(
        default=None, description="While building: the share of the lines indexed, 0 to 1."
    )


class SessionOut(_Out):
    """Who the caller is: ``role`` null when nobody; ``via`` how it was proven."""

    role: Literal["viewer", "admin"] | None
    via: Literal["token", "session", "proxy", "anonymous"] | None
    user: str | None = Field(description="The user name a trusted proxy passed, else null.")
    expires_at: UtcDatetime | None = Field(
        description="When a browser session ends (UTC, ISO 8601)."
    )


class ErrorOut(_Out):
    """What went wrong; ``field`` names the parameter at fault."""

    error: str
    field: str | None = None


class ConflictOut(_Out):
    """A run is already in progress."""

    error: str
    job_log: JobLog | None
