"""The run's own staging connection: each batch one short transaction, never left open, a busy
database reported (not raised) so the run can wait, and a close that waits for a batch under way."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from service.backend import open_database
from service.clock import utc_now
from service.settings import Settings
from service.sources.base import Column
from service.store import (
    OPEN_ORDERS_STAGING,
    Database,
    StagingClosed,
    count_open_orders,
    create_staging,
    open_staging,
)

COLUMNS = [Column("order", "INTEGER"), Column("customer", "TEXT")]


@pytest.fixture
async def quick_db(settings: Settings) -> AsyncIterator[Database]:
    """The database with a busy timeout of 0.2 s, and an empty staging table."""
    settings = settings.model_copy(update={"database_busy_timeout_seconds": 0.2})
    async with open_database(settings, utc_now) as database:
        await create_staging(database, COLUMNS)
        yield database


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Another connection holding the database's write lock for the block."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")


def takes_write_lock_at_once(path: Path) -> bool:
    """Whether a writer gets the lock without waiting (nobody holds a transaction open)."""
    with closing(sqlite3.connect(path, isolation_level=None, timeout=0)) as conn:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        conn.execute("ROLLBACK")
        return True


async def test_each_batch_commits_and_a_failed_one_leaves_no_transaction(
    quick_db: Database,
) -> None:
    async with open_staging(quick_db, len(COLUMNS)) as staging:
        await asyncio.to_thread(staging.append, [(1, "a"), (2, "b")])
        assert await count_open_orders(quick_db, OPEN_ORDERS_STAGING) == 2
        assert takes_write_lock_at_once(quick_db.path)
        with pytest.raises(sqlite3.ProgrammingError):  # a row of the wrong width, mid-batch
            await asyncio.to_thread(staging.append, [(3, "c"), (4,)])
        assert takes_write_lock_at_once(quick_db.path)
        assert await count_open_orders(quick_db, OPEN_ORDERS_STAGING) == 2  # (3, "c") undone


async def test_a_busy_database_is_reported_and_nothing_is_written(quick_db: Database) -> None:
    async with open_staging(quick_db, len(COLUMNS)) as staging:
        with write_lock(quick_db.path):
            assert not await asyncio.to_thread(staging.try_append, [(1, "a")])
        assert await count_open_orders(quick_db, OPEN_ORDERS_STAGING) == 0
        assert await asyncio.to_thread(staging.try_append, [(1, "a")])
        assert await count_open_orders(quick_db, OPEN_ORDERS_STAGING) == 1


async def test_closing_waits_for_the_batch_under_way_then_refuses_more(
    quick_db: Database,
) -> None:
    ended: list[str] = []
    started = threading.Event()
    async with open_staging(quick_db, len(COLUMNS)) as staging:
        with write_lock(quick_db.path):

            def batch() -> None:
                started.set()
                staging.try_append([(1, "a")])  # waits its busy timeout for the lock
                ended.append("batch")

            under_way = asyncio.ensure_future(asyncio.to_thread(batch))
            await asyncio.to_thread(started.wait)
            await asyncio.sleep(0.05)
            await asyncio.to_thread(staging.close)
            ended.append("close")
            await under_way
    assert ended == ["batch", "close"]
    with pytest.raises(StagingClosed):
        staging.append([(2, "b")])
    assert takes_write_lock_at_once(quick_db.path)
