"""The sync job on the embedded demo source: the exact details, the table, the guard, timeouts."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from service.settings import Settings
from service.sources.demo import ROWS, demo_rows
from service.store import create_job_log, set_status
from service.wire import Status
from tests.support.clock import FakeClock
from tests.support.sync import DEMO_DETAILS, sync_service, table_rows, tables


async def test_a_demo_run_writes_exactly_the_seeds_lines(settings: Settings) -> None:
    async with sync_service(settings) as service:
        log = await service.scheduler.run_once()
        assert log is not None
        assert log.status is Status.success
        messages = await service.messages(log.id)
    assert messages[:-1] == DEMO_DETAILS
    assert messages[-1].startswith("Job completed successfully - Total: 1,523 records in ")
    assert messages[-1].endswith(" seconds")
    assert [d.message for d in service.seen] == messages


async def test_open_orders_holds_the_demo_set(settings: Settings, database_path: Path) -> None:
    async with sync_service(settings) as service:
        await service.scheduler.run_once()
    rows = table_rows(database_path)
    source = table_rows(database_path.parent / "demo-source.sqlite3", "vwZSDOrder_Advanced")
    assert len(rows) == ROWS
    assert rows == source
    assert [row[0] for row in rows] == [row[0] for row in demo_rows()]
    assert "open_orders_staging" not in tables(database_path)


async def test_batch_size_and_a_change_summary(settings: Settings) -> None:
    settings = settings.model_copy(update={"sync_batch_size": 1000, "sync_key": "SalesOrder"})
    async with sync_service(settings) as service:
        first = await service.scheduler.run_once()
        second = await service.scheduler.run_once()
        assert first is not None
        assert second is not None
        first_lines = await service.messages(first.id)
        second_lines = await service.messages(second.id)
    assert "Importing records in batches of 1,000..." in first_lines
    assert "Batch 2/2 imported (523 records)" in first_lines
    assert first_lines[-1].endswith(" seconds")  # nothing to compare with on the first run
    assert second_lines[-1].endswith(" seconds (0 new, 0 gone, 0 changed)")


async def test_two_runs_in_one_second_get_suffixed_names(
    settings: Settings, clock: FakeClock
) -> None:
    async with sync_service(settings, clock) as service:
        first = await service.scheduler.run_once()
        second = await service.scheduler.run_once()
    assert first is not None
    assert second is not None
    assert (first.name, second.name) == ("20251215143022", "20251215143022_1")


async def test_a_tick_during_a_run_is_skipped_and_counted(settings: Settings) -> None:
    settings = settings.model_copy(update={"demo_delay_seconds": 0.2})
    async with sync_service(settings) as service:
        running = await service.scheduler.trigger()
        assert await service.scheduler.run_once() is None
        assert service.scheduler.skipped_ticks == 1
        assert service.scheduler.running == running
        await service.scheduler.cancel("Cancelled by request", wait=5)
        assert service.scheduler.running is None


async def test_a_run_over_its_time_ends_as_error(settings: Settings, database_path: Path) -> None:
    async with sync_service(settings) as service:
        await service.scheduler.run_once()  # a complete set to keep
    slow = settings.model_copy(update={"demo_delay_seconds": 30, "sync_timeout_seconds": 0.3})
    async with sync_service(slow) as service:
        log = await asyncio.wait_for(service.scheduler.run_once(), 10)
        assert log is not None
        assert log.status is Status.error
        messages = await service.messages(log.id)
    assert messages[-1] == "ERROR: Timed out after 0.3 seconds"
    assert "Batch 1/4 imported (500 records)" in messages
    assert len(table_rows(database_path)) == ROWS
    assert "open_orders_staging" not in tables(database_path)


async def test_stopping_the_scheduler_ends_the_run_as_interrupted(
    settings: Settings, database_path: Path
) -> None:
    slow = settings.model_copy(update={"demo_delay_seconds": 30})
    async with sync_service(slow) as service:
        log = await service.scheduler.trigger()
        await service.until("Batch 1/4 imported")
        await service.scheduler.stop()
        messages = await service.messages(log.id)
    assert messages[-1] == "ERROR: Interrupted - service shutting down"
    assert messages[-2] == "Batch 1/4 imported (500 records)"
    assert "open_orders_staging" not in tables(database_path)
    assert "open_orders" not in tables(database_path)


async def test_shrink_guard_keeps_the_old_set_unless_forced(
    settings: Settings, database_path: Path
) -> None:
    async with sync_service(settings) as service:
        await service.scheduler.run_once()
    with closing(sqlite3.connect(database_path.parent / "demo-source.sqlite3")) as source:
        source.execute("DELETE FROM open_order_lines WHERE rowid > 700")
        source.commit()
    async with sync_service(settings) as service:
        refused = await service.scheduler.run_once()
        assert refused is not None
        assert refused.status is Status.error
        refused_lines = await service.messages(refused.id)
        assert len(table_rows(database_path)) == ROWS
        forced = await service.scheduler.run_once(force=True)
        assert forced is not None
        assert forced.status is Status.success
    assert refused_lines[-2] == "Fetched 700 records"
    assert refused_lines[-1] == (
        "ERROR: Shrink guard - the source returned 700 records, open_orders holds 1,523 "
        "(below 0.5 of it); open_orders was left as it was. Run with force to replace it anyway"
    )
    assert len(table_rows(database_path)) == 700


async def test_the_guard_off_and_a_source_gone_empty(
    settings: Settings, database_path: Path
) -> None:
    async with sync_service(settings) as service:
        await service.scheduler.run_once()
    with closing(sqlite3.connect(database_path.parent / "demo-source.sqlite3")) as source:
        source.execute("DELETE FROM open_order_lines")
        source.commit()
    async with sync_service(settings) as service:
        refused = await service.scheduler.run_once()
        assert refused is not None
        assert refused.status is Status.error
        assert "the source returned 0 records" in (await service.messages(refused.id))[-1]
    off = settings.model_copy(update={"sync_min_ratio": 0.0})
    async with sync_service(off) as service:
        emptied = await service.scheduler.run_once()
        assert emptied is not None
        assert emptied.status is Status.success
        lines = await service.messages(emptied.id)
    assert "Fetched 0 records" in lines
    assert not any(line.startswith("Batch") for line in lines)
    assert table_rows(database_path) == []


async def test_runs_left_open_by_a_dead_process_are_closed_at_start(settings: Settings) -> None:
    async with sync_service(settings) as service:
        stale = await create_job_log(service.db)
        await set_status(service.db, stale.id, Status.processing)
        pending = await create_job_log(service.db)
        await service.scheduler.start()
        assert await service.messages(stale.id) == ["ERROR: Interrupted - service restarted"]
        assert await service.messages(pending.id) == ["ERROR: Interrupted - service restarted"]


@pytest.mark.parametrize("view", ["dbo.vwZSDOrder_Advanced", "vwZSDOrder_Advanced"])
def test_view_names_are_accepted(view: str, database_path: Path) -> None:
    settings = Settings(database_path=database_path, source_odbc="DSN=x", source_view=view)
    assert settings.source_view == view


async def test_a_run_cancelled_before_it_starts_is_closed_with_the_reason(
    settings: Settings,
) -> None:
    async with sync_service(settings) as service:
        log = await service.scheduler.trigger()
        assert await service.scheduler.cancel("Cancelled by request", wait=5)
        assert await service.messages(log.id) == ["ERROR: Cancelled by request"]
        assert service.scheduler.running is None
        again = await service.scheduler.run_once()
        assert again is not None
        assert again.status is Status.success
