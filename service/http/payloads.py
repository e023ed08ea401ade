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


class BucketOut(_Out):
    """The runs that started in one bucket (only buckets with runs are listed)."""

    start: UtcDatetime
    runs: int
    succeeded: int
    failed: int
    going: int = Field(description="Runs still pending or processing.")
    longest_seconds: float | None = Field(description="The longest finished run's duration.")
    latest_name: str = Field(description="The latest run of the bucket (what a click opens).")
    latest_status: Literal["pending", "processing", "error", "success"]
    latest_records: int | None = Field(
        description="The records the latest run imported, from its last line "
        "('Job completed successfully - Total: N records …'); null unless it succeeded."
    )


class GapOut(_Out):
    """A stretch where the schedule wanted runs and none started (the service down, ticks
    skipped): at least two usual gaps long."""

    start: UtcDatetime
    end: UtcDatetime


class TimelineOut(_Out):
    """Runs per time bucket over a window, and the gaps in the schedule."""

    since: UtcDatetime
    until: UtcDatetime
    bucket_seconds: float
    buckets: list[BucketOut]
    gaps: list[GapOut]


class NeighboursOut(_Out):
    """The runs on either side of one, in the list's order."""

    previous: JobLog | None = Field(description="The run started just before; null if none.")
    next: JobLog | None = Field(description="The run started just after; null if none.")


class LastErrorOut(_Out):
    """The latest failed run and the first line of its ERROR line."""

    job_log: JobLog
    line: str


class SyncOut(_Out):
    """How fresh ``open_orders`` is (see service/schedule.py)."""

    state: Literal["fresh", "late", "never", "paused"] = Field(
        description=(
            "fresh: the last success is recent enough; late: no success for "
            "SYNC_LATE_AFTER_SECONDS of scheduled time (default three usual gaps); never: no "
            "success yet; paused: outside the schedule until next_run_at."
        )
    )
    late_since: UtcDatetime | None = Field(description="When the sync turned late.")
    schedule: str | None = Field(description="SYNC_SCHEDULE, or null for the interval grid.")
    next_runs: list[UtcDatetime] = Field(description="The next three scheduled runs.")
    last_error: LastErrorOut | None = Field(description="The latest failed run, if any.")


class StatusOut(_Out):
    """What the page's header shows."""

    source: SourceDescription
    interval_seconds: float
    next_run_at: UtcDatetime | None
    running: JobLog | None
    last_success_at: UtcDatetime | None
    sync: SyncOut
    node: str = Field(description="The node that answered (NODE_NAME).")
    sync_node: str | None = Field(
        description=(
            "The node running the sync now: with PostgreSQL the run lease's holder; with "
            "SQLite this node while its scheduler runs one (null while another process, such "
            "as run-once, does)."
        )
    )


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
    sync: Literal["ok", "late", "never", "paused"] = Field(
        description=(
            "late: no success for SYNC_LATE_AFTER_SECONDS of scheduled time (default three "
            "usual gaps); never: no success yet; paused: outside SYNC_SCHEDULE."
        )
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
