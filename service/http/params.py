"""Validation of what clients send: query parameters and headers, as pydantic models."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, TypeVar
from urllib.parse import unquote_to_bytes

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from service.store import MAX_PAGE, MAX_PER_PAGE, JobLogQuery
from service.wire import Status

MAX_ID = 2**63 - 1
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A '+' in a query string arrives as a space: "…T10:00:00 01:00" means "…T10:00:00+01:00".
_SPACED_OFFSET = re.compile(r"^(.*\d)\s(\d{2}(?::?\d{2})?)$")

# A '%' that does not start an escape of two hex digits: "%zz", "50%", a lone "%".
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")

M = TypeVar("M", bound=BaseModel)


class InvalidParameter(ValueError):
    """A query parameter that cannot be read at all (badly encoded, or given twice)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


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


def _whole(low: int, high: int) -> Callable[[object], object]:
    """Plain decimal digits from ``low`` to ``high``: no sign, spaces, underscores, fractions
    (pydantic alone would read "1_0" as 10 and " 5" as 5)."""
    message = f"must be an integer from {low} to {high}"

    def check(value: object) -> object:
        if isinstance(value, str) and not (
            re.fullmatch(r"[0-9]{1,19}", value) and low <= int(value) <= high
        ):
            raise ValueError(message)
        return value

    return check


def _no_nul(value: str) -> str:
    """Text a person can type: a NUL is never part of it, and C code (loggers, terminals, some
    of SQLite's functions) would end the text there."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Moment = Annotated[datetime, BeforeValidator(_moment)]
Id = Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_whole(0, MAX_ID))]
# What _no_nul accepts, for the OpenAPI document (a pydantic pattern would word its own error).
_NO_NUL = {"pattern": "^[^\\x00]*$"}
Text = Annotated[
    str, Field(min_length=1, max_length=500, json_schema_extra=_NO_NUL), AfterValidator(_no_nul)
]


class _Params(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ListParams(_Params):
    """``GET /api/job_logs``."""

    status: Literal["pending", "processing", "error", "success"] | None = None
    since: Moment | None = None
    until: Moment | None = None
    q: Text | None = None
    page: Annotated[int, Field(ge=1, le=MAX_PAGE), BeforeValidator(_whole(1, MAX_PAGE))] = 1
    per_page: Annotated[
        int, Field(ge=1, le=MAX_PER_PAGE), BeforeValidator(_whole(1, MAX_PER_PAGE))
    ] = 25

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


class TimelineParams(_Params):
    """``GET /api/job_logs/timeline``: ``buckets`` equal buckets from ``since`` (default: a
    day before ``until``) to ``until`` (default: now), at most 366 days."""

    since: Moment | None = None
    until: Moment | None = None
    buckets: Annotated[int, Field(ge=1, le=2000), BeforeValidator(_whole(1, 2000))] = 288

    @field_validator("until")
    @classmethod
    def _ordered(cls, until: datetime | None, info: ValidationInfo) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None:
            if since > until:
                raise ValueError("must not be earlier than since")
            if until - since > timedelta(days=366):
                raise ValueError("must be at most 366 days after since")
        return until

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """The window asked for: ``since`` and ``until``, defaults filled in."""
        until = self.until or now
        if self.until is None and self.since is not None and self.since >= until:
            until = self.since + timedelta(days=1)
        since = self.since or until - timedelta(days=1)
        return since, until


class TextParams(_Params):
    """``GET /api/job_logs/{ref}.txt``: ``follow=true`` streams the lines as they are written
    until the run ends."""

    follow: bool = False


class DetailParams(_Params):
    """``GET /api/job_logs/{ref}/details``."""

    after: Id = 0
    limit: Annotated[int, Field(ge=1, le=1000), BeforeValidator(_whole(1, 1000))] = 100
    q: Text | None = None


class RunParams(_Params):
    """``POST /api/job_logs``: ``force=true`` passes the shrink guard once."""

    force: bool = False


class EventParams(_Params):
    """``GET /api/events``: follow one log, resume after an event id."""

    job_log: (
        Annotated[
            str,
            Field(min_length=1, max_length=100, json_schema_extra=_NO_NUL),
            AfterValidator(_no_nul),
        ]
        | None
    ) = None
    last_event_id: Id | None = None


def parse(model: type[M], values: Mapping[str, str]) -> M:
    """``values`` validated as ``model``; a ValidationError names the field at fault."""
    return model.model_validate(dict(values))


def check_query_string(raw: str) -> None:
    """Raise InvalidParameter unless every name and value of the raw query string is
    well-formed percent-encoded UTF-8 and no name comes twice.

    The URL library is lenient: it turns ``%ff`` into U+FFFD, keeps ``%zz`` as it is and
    lets the first of ``?page=1&page=2`` win, so a client would get an answer to a question
    it did not ask.
    """
    seen: set[str] = set()
    for pair in raw.split("&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition("=")
        name = _decoded(raw_name)
        if name is None:
            raise InvalidParameter(raw_name, "a parameter name must be percent-encoded UTF-8")
        if _decoded(raw_value) is None:
            raise InvalidParameter(name, "must be percent-encoded UTF-8")
        if name in seen:
            raise InvalidParameter(name, "must be given at most once")
        seen.add(name)


def _decoded(text: str) -> str | None:
    """``text`` percent-decoded (``+`` is a space), or None when it is not valid."""
    if _BAD_ESCAPE.search(text):
        return None
    try:
        return unquote_to_bytes(text.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        return None


@web.middleware
async def strict_query(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a malformed query string (see check_query_string) before any handler reads it."""
    check_query_string(request.rel_url.raw_query_string)
    return await handler(request)
