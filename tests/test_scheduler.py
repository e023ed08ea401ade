"""The scheduler's loop: on start, a fixed grid, missed ticks counted, off when interval is 0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service import appkeys
from service.backend import open_backend
from service.components import build_scheduler
from service.scheduler import next_due
from service.settings import Settings
from service.sources import build_source
from service.store import Database, JobLogQuery, list_job_logs
from service.wire import JobLogPage, Status
from tests.support.api import MakeClient
from tests.support.clock import FakeClock, FakeSleep
from tests.support.sync import Harness, sqlite_of, sync_service, wait_ended
from tests.support.wait import wait_for_async

T0 = datetime(2025, 12, 15, 14, 30, 0, tzinfo=UTC)
FIVE_MINUTES = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("now", "expected", "missed"),
    [
        (T0 + timedelta(seconds=40), T0 + FIVE_MINUTES, 0),
        (T0 + FIVE_MINUTES, T0 + 2 * FIVE_MINUTES, 1),
        (T0 + timedelta(minutes=17), T0 + timedelta(minutes=20), 3),
    ],
)
def test_next_due_keeps_the_grid(now: datetime, expected: datetime, missed: int) -> None:
    assert next_due(T0, now, FIVE_MINUTES) == (expected, missed)


async def latest_succeeded(db: Database, query: JobLogQuery) -> JobLogPage:
    """The page of runs ``query`` asks for, once its first (latest) run has succeeded."""

    async def succeeded() -> JobLogPage | None:
        page = await list_job_logs(db, query)
        return page if page.items and page.items[0].status is Status.success else None

    return await wait_for_async(succeeded, "the latest run succeeded", every=0.01)


async def _runs(settings: Settings, clock: FakeClock, ticks: int) -> tuple[list[float], int, int]:
    sleep = FakeSleep(clock, ticks)
    source = build_source(settings)
    async with open_backend(settings, clock, serving=False) as backend:
        db = sqlite_of(backend)
        scheduler = build_scheduler(settings, backend, source=source, sleep=sleep)
        await scheduler.start()
        if settings.sync_interval_seconds > 0:
            await sleep.parked.wait()
        page = await latest_succeeded(db, JobLogQuery(per_page=100))
        assert scheduler.alive
        await scheduler.stop()
    assert {log.status for log in page.items} <= {Status.success}
    return sleep.delays, page.total, scheduler.skipped_ticks


async def test_runs_on_start_then_every_interval(settings: Settings, clock: FakeClock) -> None:
    every = settings.model_copy(update={"sync_interval_seconds": 300, "sync_on_start": True})
    delays, runs, skipped = await _runs(every, clock, ticks=3)
    assert delays[:4] == [0.0, 300.0, 300.0, 300.0]
    assert runs == 3
    assert skipped == 0


async def test_without_run_on_start_the_first_run_waits(
    settings: Settings, clock: FakeClock
) -> None:
    every = settings.model_copy(update={"sync_interval_seconds": 60, "sync_on_start": False})
    delays, runs, _ = await _runs(every, clock, ticks=2)
    assert delays[:2] == [60.0, 60.0]
    assert runs == 2


async def test_interval_zero_runs_once_on_start_only(settings: Settings, clock: FakeClock) -> None:
    once = settings.model_copy(update={"sync_interval_seconds": 0, "sync_on_start": True})
    delays, runs, _ = await _runs(once, clock, ticks=0)
    assert delays == []
    assert runs == 1


async def test_the_app_runs_the_sync_at_startup(make_client: MakeClient) -> None:
    client = await make_client(sync_on_start=True)
    scheduler = client.app[appkeys.SCHEDULER]
    assert client.app[appkeys.SOURCE].description.kind == "demo"
    page = await latest_succeeded(client.app[appkeys.DATABASE], JobLogQuery())
    assert scheduler.alive
    assert page.total == 1


async def test_a_run_may_start_as_soon_as_the_last_one_is_recorded_as_ended(
    settings: Settings,
) -> None:
    """Once a run's end is committed, a request seeing it must not be refused with a 409."""
    async with sync_service(settings) as service:
        for _ in range(5):
            first = await service.scheduler.trigger()
            # Polled as tightly as the loop allows, to land right after the commit.
            await wait_ended(service.db, first.id, every=0)
            second = await service.scheduler.trigger()
            assert second.id != first.id
            await ended(service, second.id)


async def ended(service: Harness, job_log_id: int) -> None:
    """Return once the scheduler has let go of the run ``job_log_id``."""

    def let_go() -> bool:
        running = service.scheduler.running
        return running is None or running.id != job_log_id

    await wait_for_async(let_go, f"the scheduler let go of run {job_log_id}", every=0.01)
