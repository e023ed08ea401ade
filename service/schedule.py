"""When the sync runs, and how fresh that leaves ``open_orders``.

Two plans: SYNC_SCHEDULE, a cron expression evaluated in TIMEZONE (cronsim: a time that a
spring-forward change skips is skipped, one that an autumn change repeats runs once), or,
unset, the SYNC_INTERVAL_SECONDS grid (0: no schedule at all).

Freshness is one of four states, from the last success and the plan alone:

* ``never``: no run has succeeded yet;
* ``late``: the first scheduled run after the last success was due more than
  ``late_after - cadence`` ago and no success came since — on the grid, simply "no success for
  ``late_after``"; with a schedule that pauses (nights, Sundays), the pause does not count;
* ``paused``: not late, and the next run is further away than two of the schedule's usual
  gaps (outside the shift): nothing is expected until then;
* ``fresh``: otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

State = Literal["fresh", "late", "never", "paused"]
# Ticks counted at most when a long run or a stopped clock makes the loop skip several.
_MAX_COUNTED = 10_000


class InvalidSchedule(ValueError):
    """SYNC_SCHEDULE is not a cron expression cronsim accepts."""


class Plan(Protocol):
    """When runs are due."""

    def next_after(self, moment: datetime) -> datetime | None:
        """The first run due strictly after ``moment``; None without a schedule."""

    def cadence(self, moment: datetime) -> timedelta | None:
        """The usual gap between runs from the next one on; None without a schedule."""


@dataclass(frozen=True)
class Grid:
    """Every ``interval`` from the service's start (its phase is the scheduler's): late and
    paused only need the gap, so a run is taken to be due one interval after any moment."""

    interval: timedelta

    def next_after(self, moment: datetime) -> datetime | None:
        return moment + self.interval if self.interval > timedelta(0) else None

    def cadence(self, moment: datetime) -> timedelta | None:
        return self.interval if self.interval > timedelta(0) else None


@dataclass(frozen=True)
class Cron:
    """A cron expression (minute hour day month weekday) evaluated in ``zone``."""

    expression: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, zone: ZoneInfo) -> Cron:
        """Raise InvalidSchedule with cronsim's reason unless ``expression`` is valid."""
        try:
            CronSim(expression, datetime.now(zone))
        except (CronSimError, ValueError) as exc:
            raise InvalidSchedule(f"not a cron expression ({exc})") from None
        return cls(expression, zone)

    def next_after(self, moment: datetime) -> datetime | None:
        return self.upcoming(moment, 1)[0]

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """The next ``count`` runs after ``moment``, in UTC: two times in one zone subtract
        as wall-clock times, which is wrong across a DST change."""
        ticks = CronSim(self.expression, moment.astimezone(self.zone))
        return [next(ticks).astimezone(UTC) for _ in range(count)]

    def cadence(self, moment: datetime) -> timedelta | None:
        first, second, third = self.upcoming(moment, 3)
        return min(second - first, third - second)

    def due_between(self, start: datetime, end: datetime) -> int:
        """How many runs fall in (start, end] (at most a large bound)."""
        ticks = CronSim(self.expression, start.astimezone(self.zone))
        count = 0
        while count < _MAX_COUNTED and next(ticks).astimezone(UTC) <= end:
            count += 1
        return count


@dataclass(frozen=True)
class Freshness:
    """How fresh ``open_orders`` is: the state, since when it is late, and the next run."""

    state: State
    late_since: datetime | None
    next_run_at: datetime | None


def freshness(
    last_success: datetime | None,
    now: datetime,
    plan: Plan,
    late_after: timedelta | None,
) -> Freshness:
    """The state for a last success at ``last_success`` (None: never) seen at ``now``;
    ``late_after`` None: three of the plan's usual gaps."""
    upcoming = plan.next_after(now)
    cadence = plan.cadence(now)
    if last_success is None:
        return Freshness("never", None, upcoming)
    if upcoming is None or cadence is None:  # no schedule: nothing is ever late
        return Freshness("fresh", None, None)
    allowed = late_after if late_after is not None else 3 * cadence
    first_due = plan.next_after(last_success)
    if first_due is not None:
        late_since = first_due + max(allowed - cadence, timedelta(0))
        if now > late_since:
            return Freshness("late", late_since, upcoming)
    if paused(plan, now):
        return Freshness("paused", None, upcoming)
    return Freshness("fresh", None, upcoming)


def paused(plan: Plan, now: datetime) -> bool:
    """Whether the schedule is in a pause: its next run is further away than two of its usual
    gaps (a grid never pauses)."""
    upcoming, cadence = plan.next_after(now), plan.cadence(now)
    return upcoming is not None and cadence is not None and upcoming - now > 2 * cadence


def gaps(
    plan: Plan,
    since: datetime,
    width: timedelta,
    count: int,
    filled: set[int],
    until: datetime,
) -> list[tuple[datetime, datetime]]:
    """The stretches of the window where the schedule wanted runs and none started: runs of
    empty buckets (``filled`` holds the others' indexes) up to ``until`` (now, or the first
    run's start for the time before it) at least two usual gaps long, holding a scheduled run
    (a pause of the schedule is not a gap)."""
    out: list[tuple[datetime, datetime]] = []
    start: int | None = None
    for index in range(count + 1):
        empty = index < count and index not in filled and since + width * (index + 1) <= until
        if empty and start is None:
            start = index
        elif not empty and start is not None:
            begin, end = since + width * start, since + width * index
            cadence = plan.cadence(begin)
            if cadence is not None and end - begin >= 2 * cadence and _due_in(plan, begin, end):
                out.append((begin, end))
            start = None
    return out


def _due_in(plan: Plan, begin: datetime, end: datetime) -> bool:
    due = plan.next_after(begin - timedelta(microseconds=1))
    return due is not None and due < end
