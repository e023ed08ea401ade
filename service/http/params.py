"""Validation of what clients send: query parameters and headers, as pydantic models."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from service.store.models import MAX_PAGE, MAX_PER_PAGE, JobLogQuery, Status

MAX_ID = 2**63 - 1
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A '+' in a query string arrives as a space: "…T10:00:00 01:00" means "…T10:00:00+01:00".
_SPACED_OFFSET = re.compile(r"^(.*\d)\s(\d{2}(?::?\d{2})?)$")

M = TypeVar("M", bound=BaseModel)


def _moment(value: object) -> object:
    """ISO 8601 with Z or an offset; a date alone is its midnight UTC; no offset means UTC."""
    if not isinstance(value, str):
        return value
    text = value.strip().upper()  # RFC 3339 allows a lower-case 't' and 'z'
    if _DATE_ONLY.match(text):
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    spaced = _SPACED_OFFSET.match(text)
    if spaced and "T" in text:
        text = f"{spaced.group(1)}+{spaced.group(2)}"
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise ValueError("must be an ISO 8601 date or date-time within years 1-9999") from None


def _digits(value: object) -> object:
    """Ids are plain decimal digits: no sign, spaces, underscores or fractions."""
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,19}", value):
        raise ValueError("must be an integer from 0 to 9223372036854775807")
    return value


Moment = Annotated[datetime, BeforeValidator(_moment)]
Id = Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_digits)]
Text = Annotated[str, Field(min_length=1, max_length=500)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ListParams(_Params):
    """``GET /api/job_logs``."""

    status: Literal["pending", "processing", "error", "success"] | None = None
    since: Moment | None = None
    until: Moment | None = None
    q: Text | None = None
    page: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 1
    per_page: Annotated[int, Field(ge=1, le=MAX_PER_PAGE)] = 25

    @field_validator("until")
    @classmethod
    def _ordered(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None and since > until:
            raise ValueError("must not be earlier than since")
        return until

    def query(self) -> JobLogQuery:
        """The store's query for these parameters."""
        return JobLogQuery(
            status=Status[self.status] if self.status else None,
            since=self.since,
            until=self.until,
            q=self.q,
            page=self.page,
            per_page=self.per_page,
        )


class OneParams(_Params):
    """``GET /api/job_logs/{ref}``: ``details=false`` leaves the details out (for huge logs)."""

    details: bool = True


class DetailParams(_Params):
    """``GET /api/job_logs/{ref}/details``."""

    after: Id = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    q: Text | None = None


class RunParams(_Params):
    """``POST /api/job_logs``: ``force=true`` passes the shrink guard once."""

    force: bool = False


class EventParams(_Params):
    """``GET /api/events``: follow one log, resume after an event id."""

    job_log: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    last_event_id: Id | None = None


def parse(model: type[M], values: Mapping[str, str]) -> M:
    """``values`` validated as ``model``; a ValidationError names the field at fault."""
    return model.model_validate(dict(values))
