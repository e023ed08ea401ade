"""A clock that tests move by hand, and a sleep that moves it instead of waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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


class FakeSleep:
    """A loop's sleep that moves the clock instead of waiting (calling ``before`` first); after
    ``ticks`` sleeps it parks the loop for good and sets :attr:`parked`."""

    def __init__(
        self, clock: FakeClock, ticks: int, before: Callable[[], None] = lambda: None
    ) -> None:
        self.clock = clock
        self.ticks = ticks
        self.before = before
        self.delays: list[float] = []
        """Every delay asked for, in order."""
        self.parked = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.before()
        if len(self.delays) > self.ticks:
            self.parked.set()
            await asyncio.Event().wait()
        self.clock.advance(seconds)
