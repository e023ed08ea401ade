"""What a caller asks the store for: which runs to list, and the bounds of a page.

The records the store returns are :mod:`service.wire`'s.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.wire import Status, UtcDatetime

MAX_PER_PAGE = 100
# Pages beyond this are refused rather than overflowing SQLite's 64-bit OFFSET.
MAX_PAGE = 1_000_000_000


class JobLogQuery(BaseModel):
    """Which job logs to list: a status, a created_at range [since, until), text in any of
    their details (case-insensitive for ASCII letters), and a page."""

    model_config = ConfigDict(frozen=True)

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
