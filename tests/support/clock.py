"""A clock that tests move by hand."""

from __future__ import annotations

from datetime import datetime, timedelta


class FakeClock:
    """Returns the same instant until advanced; callable like the service's clock."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        """Move forward and return the new instant."""
        self.now += timedelta(seconds=seconds)
        return self.now
