"""SYNC_SCHEDULE (cron in TIMEZONE, across DST changes) and the sync's freshness: fresh, late,
never, paused — from the last success and the schedule alone; and where they show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service import appkeys
from service.backend import open_backend
from service.components import build_scheduler
from service.schedule import Cron, Grid, freshness
from service.settings import Settings
from service.sources import build_source
from service.store import add_detail, create_job_log, fail_job_log, set_status
from service.wire import Status
from tests.support.api import MakeClient
from tests.support.clock import FakeClock, FakeSleep

BERLIN = ZoneInfo("Europe/Berlin")
SHIFTS = "*/5 6-22 * * 1-6"  # every five minutes, 06:00-22:55, Monday to Saturday


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def test_a_spring_forward_night_skips_the_hour_that_does_not_exist() -> None:
    cron = Cron.parse("*/30 1-3 * * *", BERLIN)
    ticks = cron.upcoming(berlin(2026, 3, 29, 0, 0), 5)
    assert [t.astimezone(BERLIN).strftime("%H:%M %Z") for t in ticks] == [
        "01:00 CET",
        "01:30 CET",
        "03:00 CEST",
        "03:30 CEST",
        "01:00 CEST",
    ]
    # An hour after 01:30 CET is 03:30 CEST: the run at 03:00 is half an hour later.
    assert ticks[2] - ticks[1] == timedelta(minutes=30)


def test_an_autumn_night_runs_the_repeated_hour_once() -> None:
    cron = Cron.parse("30 2 * * *", BERLIN)
    ticks = cron.upcoming(berlin(2026, 10, 25, 0, 0), 2)
    assert [t.astimezone(UTC).isoformat() for t in ticks] == [
        "2026-10-25T00:30:00+00:00",  # 02:30 CEST, the first of the two
        "2026-10-26T01:30:00+00:00",  # 02:30 CET the next day: 25 hours later
    ]


def test_shifts_pause_over_night_and_sunday() -> None:
    cron = Cron.parse(SHIFTS, BERLIN)
    saturday_night = berlin(2026, 12, 5, 22, 57)
    assert [t.astimezone(BERLIN) for t in cron.upcoming(saturday_night, 3)] == [
        berlin(2026, 12, 7, 6, 0),
        berlin(2026, 12, 7, 6, 5),
        berlin(2026, 12, 7, 6, 10),
    ]
    assert cron.cadence(saturday_night) == timedelta(minutes=5)


@pytest.mark.parametrize(
    ("now", "state"),
    [
        (berlin(2026, 12, 5, 23, 30), "paused"),  # Saturday night
        (berlin(2026, 12, 6, 12, 0), "paused"),  # Sunday
        (berlin(2026, 12, 7, 6, 3), "fresh"),  # Monday's first run may be going on
        (berlin(2026, 12, 7, 6, 10), "fresh"),  # two runs missed: not yet
        (berlin(2026, 12, 7, 6, 11), "late"),  # 15 minutes of the shift without a success
    ],
)
def test_the_pause_is_not_late_but_the_shift_without_a_success_is(
    now: datetime, state: str
) -> None:
    last_success = berlin(2026, 12, 5, 22, 55)
    seen = freshness(last_success, now, Cron.parse(SHIFTS, BERLIN), None)
    assert seen.state == state
    if state == "late":
        assert seen.late_since == berlin(2026, 12, 7, 6, 10)


def test_a_sync_late_before_the_pause_stays_late_through_it() -> None:
    cron = Cron.parse(SHIFTS, BERLIN)
    seen = freshness(berlin(2026, 12, 5, 20, 0), berlin(2026, 12, 6, 3, 0), cron, None)
    assert seen.state == "late"
    assert seen.late_since == berlin(2026, 12, 5, 20, 15)


def test_on_the_grid_late_is_no_success_for_three_intervals() -> None:
    grid = Grid(timedelta(minutes=5))
    success = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert freshness(None, success, grid, None).state == "never"
    assert freshness(success, success + timedelta(minutes=15), grid, None).state == "fresh"
    assert freshness(success, success + timedelta(minutes=15, seconds=1), grid, None).state == (
        "late"
    )
    # SYNC_LATE_AFTER_SECONDS instead of three intervals.
    assert freshness(success, success + timedelta(minutes=6), grid, timedelta(minutes=5)).state == (
        "late"
    )
    # No schedule at all: nothing is ever late.
    off = Grid(timedelta(0))
    assert freshness(success, success + timedelta(days=30), off, None).state == "fresh"


async def test_the_scheduler_runs_at_the_schedule_s_times(settings: Settings) -> None:
    # Saturday 22:52 in Berlin, within the shift: a run at start, then at 22:55, then not
    # before Monday 06:00.
    clock = FakeClock(berlin(2026, 12, 5, 22, 52).astimezone(UTC))
    shifts = settings.model_copy(
        update={"sync_schedule": SHIFTS, "timezone": "Europe/Berlin", "sync_on_start": True}
    )
    sleep = FakeSleep(clock, 2)
    source = build_source(shifts)
    async with open_backend(shifts, clock, serving=False) as backend:
        scheduler = build_scheduler(shifts, backend, source=source, sleep=sleep)
        await scheduler.start()
        await sleep.parked.wait()
        await scheduler.stop()
    # 3 minutes to 22:55, then to Monday 06:00 (31 hours and 5 minutes).
    assert sleep.delays[:2] == [180.0, (31 * 60 + 5) * 60.0]


async def test_status_shows_the_state_the_next_runs_and_the_last_error(
    make_client: MakeClient,
) -> None:
    client = await make_client(sync_schedule=SHIFTS, timezone="Europe/Berlin", sync_on_start=False)
    db = client.app[appkeys.DATABASE]
    body = await (await client.get("/api/status")).json()
    assert body["sync"]["state"] == "never"
    assert body["sync"]["schedule"] == SHIFTS
    assert len(body["sync"]["next_runs"]) == 3
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    await add_detail(db, log.id, "Connecting to SQL Server CASQL2.inxintl.com...")
    await fail_job_log(db, log.id, "ERROR: Login failed for user 'sync'\nsecond line")
    body = await (await client.get("/api/status")).json()
    assert body["sync"]["last_error"]["line"] == "ERROR: Login failed for user 'sync'"
    assert body["sync"]["last_error"]["job_log"]["name"] == log.name


async def test_readyz_says_paused_outside_the_schedule(make_client: MakeClient) -> None:
    # Every minute of 03:00 on the 1st of January only: paused nearly all the time.
    client = await make_client(sync_schedule="* 3 1 1 *", sync_on_start=False)
    db = client.app[appkeys.DATABASE]
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    await set_status(db, log.id, Status.success)

    body = await (await client.get("/readyz")).json()
    assert body["sync"] == "paused"
    status = await (await client.get("/api/status")).json()
    assert status["sync"]["state"] == "paused"
    assert status["sync"]["next_runs"][0].endswith("-01-01T03:00:00.000000Z")
