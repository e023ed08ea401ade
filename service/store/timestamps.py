"""Timestamps as Rails stores them in SQLite: UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'."""

from __future__ import annotations

from datetime import UTC, datetime

_SECONDS = "%Y-%m-%d %H:%M:%S"


def to_db(moment: datetime) -> str:
    """The stored form of an aware datetime, always with microseconds (as we write rows)."""
    return _utc(moment).strftime(_SECONDS + ".%f")


def to_db_bound(moment: datetime) -> str:
    """The form of a range bound that compares correctly with both Rails forms.

    Rails omits the fraction when it is zero; text comparison puts '…:22' before '…:22.000000',
    so a bound on a whole second is written without a fraction as well.
    """
    moment = _utc(moment)
    return moment.strftime(_SECONDS if moment.microsecond == 0 else _SECONDS + ".%f")


def from_db(text: str) -> datetime:
    """Read a stored timestamp; text without an offset is UTC (Rails' default_timezone)."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC)
