"""The open_orders swap on a real PostgreSQL 15: per-run staging, one fenced transaction, and
readers that only ever see a whole set."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from service.sources.base import Column
from service.store import DatabaseFailure
from service.store.postgres import (
    LeaseLost,
    PgDatabase,
    RunLease,
    change_summary,
    count_open_orders,
    create_staging,
    drop_staging,
    stage,
    swap_open_orders,
)
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.integration

_names = itertools.count(1)
COLUMNS = [
    Column("OrderNumber", "INTEGER"),
    Column("Customer", "TEXT"),
    Column("Quantity", "NUMERIC"),
    Column("OrderDate", "DATE"),
]


def orders(count: int, shift: int = 0) -> list[tuple[object, ...]]:
    return [
        (n, f"Customer {n % 7}", Decimal(n + shift) / 4, date(2025, 12, 1 + n % 28))
        for n in range(1, count + 1)
    ]


@pytest.fixture
async def url(postgres: PostgresServer) -> str:
    return postgres.store_database(f"orders_{next(_names)}")


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[tuple[PgDatabase, RunLease]]:
    db = await PgDatabase.open(url)
    lease = RunLease(url, "node-a")
    try:
        assert await lease.acquire()
        yield db, lease
    finally:
        await lease.release()
        await db.close()


async def import_run(db: PgDatabase, lease: RunLease, run_id: int, rows: list[Any]) -> None:
    await create_staging(db, run_id, COLUMNS)
    for start in range(0, len(rows), 500):
        await stage(db, run_id, rows[start : start + 500])
    assert lease.epoch is not None
    await swap_open_orders(db, run_id, lease.epoch)


async def rows_of(url: str, query: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(query.encode())
        return list(await cursor.fetchall()) if cursor.description is not None else []


async def test_readers_only_ever_see_a_whole_set_and_what_depends_on_it_stays(url: str) -> None:
    sizes = [3_000, 1_200, 5_000, 10, 2_500]
    async with opened(url) as (db, lease):
        await import_run(db, lease, 1, orders(2_000))
        await rows_of(
            url,
            'CREATE VIEW big_orders AS SELECT "OrderNumber" FROM open_orders '
            'WHERE "Quantity" > 100; '
            'CREATE INDEX open_orders_by_customer ON open_orders ("Customer")',
        )
        (before,) = await rows_of(url, "SELECT to_regclass('open_orders_by_customer')::oid")
        seen: set[int] = set()
        done = asyncio.Event()

        async def read() -> None:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                while not done.is_set():
                    cursor = await conn.execute("SELECT count(*) FROM open_orders")
                    row = await cursor.fetchone()
                    assert row is not None
                    seen.add(int(row[0]))

        readers = [asyncio.create_task(read()) for _ in range(3)]
        for run_id, size in enumerate(sizes, start=2):
            await import_run(db, lease, run_id, orders(size, shift=run_id))
            await asyncio.sleep(0.01)
        done.set()
        await asyncio.gather(*readers)
        assert seen <= {2_000, *sizes}, seen
        assert len(seen) >= 2
        assert await count_open_orders(db) == 2_500
        # Columns unchanged: the same table, its index and its view, with the last set.
        assert await rows_of(url, "SELECT to_regclass('open_orders_by_customer')::oid") == [before]
        big = sum(
            1 for row in orders(2_500, shift=6) if isinstance(row[2], Decimal) and row[2] > 100
        )
        assert await rows_of(url, "SELECT count(*) FROM big_orders") == [(big,)]
        # Every run's staging table is gone.
        assert await rows_of(
            url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'open_orders_staging%'"
        ) == [(0,)]


async def test_changed_columns_replace_the_table_and_recreate_its_views_and_indexes(
    url: str,
) -> None:
    async with opened(url) as (db, lease):
        await import_run(db, lease, 1, orders(100))
        await rows_of(
            url,
            'CREATE VIEW customers AS SELECT DISTINCT "Customer" FROM open_orders; '
            'CREATE INDEX open_orders_by_number ON open_orders ("OrderNumber")',
        )
        wider = [*COLUMNS, Column("Note", "TEXT")]
        await create_staging(db, 2, wider)
        await stage(db, 2, [(*row, "new") for row in orders(50)])
        assert lease.epoch is not None
        await swap_open_orders(db, 2, lease.epoch)
        assert await rows_of(url, 'SELECT count(*), min("Note") FROM open_orders') == [(50, "new")]
        assert await rows_of(url, "SELECT count(*) FROM customers") == [(7,)]
        assert await rows_of(
            url, "SELECT indexname FROM pg_indexes WHERE tablename = 'open_orders'"
        ) == [("open_orders_by_number",)]
        persistence = await rows_of(
            url, "SELECT relpersistence FROM pg_class WHERE relname = 'open_orders'"
        )
        assert persistence == [("p",)]
        # A view that needs a column the new set lacks fails the swap: the old set stays.
        await rows_of(url, 'CREATE VIEW notes AS SELECT "Note" FROM open_orders')
        await create_staging(db, 3, COLUMNS)
        await stage(db, 3, orders(10))
        with pytest.raises(DatabaseFailure, match=r"column open_orders\.Note does not exist") as no:
            await swap_open_orders(db, 3, lease.epoch)
        assert no.value.sqlstate == "42703"  # undefined_column, as the store's failure
        assert await count_open_orders(db) == 50
        await drop_staging(db)
        assert await count_open_orders(db, 3) == 0


async def test_a_run_whose_lease_moved_on_cannot_swap(url: str) -> None:
    async with opened(url) as (db, lease):
        await import_run(db, lease, 1, orders(100))
        stale = lease.epoch
        assert stale is not None
        await create_staging(db, 2, COLUMNS)
        await stage(db, 2, orders(10))
        # Another node took the lease meanwhile (this one lost it without noticing).
        await lease.release()
        other = RunLease(url, "node-b")
        assert await other.acquire()
        try:
            with pytest.raises(LeaseLost):
                await swap_open_orders(db, 2, stale)
            assert await count_open_orders(db) == 100
        finally:
            await other.release()


async def test_the_change_summary_counts_new_gone_and_changed_keys(url: str) -> None:
    async with opened(url) as (db, lease):
        await create_staging(db, 1, COLUMNS)
        # Before any open_orders: nothing to compare with.
        assert await change_summary(db, 1, "OrderNumber") is None
        await stage(db, 1, orders(100))
        assert lease.epoch is not None
        await swap_open_orders(db, 1, lease.epoch)
        # Keys 51 to 150, of which 51 to 60 with another customer.
        later = [
            (
                n,
                f"Customer {n % 7}" if n > 60 else "Someone else",
                Decimal(n) / 4,
                date(2025, 12, 1 + n % 28),
            )
            for n in range(51, 151)
        ]
        await create_staging(db, 2, COLUMNS)
        await stage(db, 2, later)
        summary = await change_summary(db, 2, "ordernumber")
        assert summary is not None
        assert (summary.new, summary.gone, summary.changed) == (50, 50, 10)
        assert str(summary) == "50 new, 50 gone, 10 changed"
        assert await change_summary(db, 2, "NoSuchColumn") is None
        await drop_staging(db, 2)
