"""Job-log names: YYYYMMDDhhmmss from the clock, _1, _2, … on collision, race-free."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from service.store import Database, create_job_log
from service.wire import Status
from tests.support.clock import FakeClock


async def test_name_is_the_clock_second_in_utc(db: Database, clock: FakeClock) -> None:
    log = await create_job_log(db)
    assert log.name == "20251215143022"
    assert log.status is Status.pending
    assert log.created_at == clock.now
    assert log.updated_at == clock.now


async def test_same_second_gets_suffixes_in_order(db: Database, clock: FakeClock) -> None:
    names = [(await create_job_log(db)).name for _ in range(3)]
    assert names == ["20251215143022", "20251215143022_1", "20251215143022_2"]
    clock.advance(1)
    assert (await create_job_log(db)).name == "20251215143023"


async def test_concurrent_creates_in_one_second_get_distinct_names(db: Database) -> None:
    logs = await asyncio.gather(*(create_job_log(db) for _ in range(20)))
    names = {log.name for log in logs}
    assert len(names) == 20
    assert names == {"20251215143022"} | {f"20251215143022_{n}" for n in range(1, 20)}


async def test_creates_from_two_connections_never_collide(
    db: Database, database_path: Path, clock: FakeClock
) -> None:
    """A second opener of the same file stands for another process (run-once, Rails)."""
    other = await Database.open(database_path, clock=clock)
    try:
        logs = await asyncio.gather(*(create_job_log(db if n % 2 else other) for n in range(16)))
    finally:
        await other.close()
    assert len({log.name for log in logs}) == 16


async def test_existing_suffixes_are_skipped(db: Database) -> None:
    async with db.transaction() as conn:
        for name in ("20251215143022", "20251215143022_1", "20251215143022_2"):
            await conn.execute(
                "INSERT INTO job_logs (name, status, created_at, updated_at) "
                "VALUES (?, 3, '2025-12-15 14:30:22', '2025-12-15 14:30:22')",
                (name,),
            )
    assert (await create_job_log(db)).name == "20251215143022_3"


async def test_a_free_base_name_is_used_even_when_suffixes_exist(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO job_logs (name, status, created_at, updated_at) "
            "VALUES ('20251215143022_1', 3, '2025-12-15 14:30:22', '2025-12-15 14:30:22')"
        )
    assert (await create_job_log(db)).name == "20251215143022"


async def test_name_follows_the_configured_time_zone(database_path: Path) -> None:
    clock = FakeClock(datetime(2025, 12, 31, 23, 30, 5, tzinfo=UTC))
    db = await Database.open(database_path, clock=clock, zone=ZoneInfo("Europe/Berlin"))
    try:
        log = await create_job_log(db)
    finally:
        await db.close()
    assert log.name == "20260101003005"
    assert log.created_at == datetime(2025, 12, 31, 23, 30, 5, tzinfo=UTC)


async def test_names_match_the_seed_format(db: Database) -> None:
    logs = [await create_job_log(db) for _ in range(12)]
    assert all(re.fullmatch(r"\d{14}(_\d+)?", log.name) for log in logs)
