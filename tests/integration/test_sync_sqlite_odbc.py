"""The sync job through unixODBC and the SQLite3 ODBC driver (libsqliteodbc)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from service.settings import Settings
from service.wire import Status
from tests.support.odbc import VIEW, order_rows, sqlite_odbc, write_orders
from tests.support.sync import run_lines, sync_service, table_rows, tables, with_source

pytestmark = pytest.mark.integration


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.sqlite3"
    write_orders(path, order_rows(1523))
    return path


@pytest.fixture
def odbc_settings(settings: Settings, source: Path) -> Settings:
    return with_source(settings, sqlite_odbc(source))


async def test_a_full_run_and_its_exact_details(
    odbc_settings: Settings, source: Path, database_path: Path
) -> None:
    async with sync_service(odbc_settings) as service:
        log = await service.scheduler.run_once()
        assert log is not None
        assert log.status is Status.success
        messages = await service.messages(log.id)
    assert messages[:-1] == run_lines(str(source))
    assert messages[-1].startswith("Job completed successfully - Total: 1,523 records in ")
    assert table_rows(database_path) == table_rows(source, VIEW)
    with closing(sqlite3.connect(database_path)) as conn:
        declared = [(row[1], row[2]) for row in conn.execute("PRAGMA table_info(open_orders)")]
    assert [name for name, _ in declared] == [
        "OrderNumber",
        "Customer",
        "Quantity",
        "Price",
        "OrderDate",
        "Note",
    ]
    assert dict(declared)["OrderNumber"] == "INTEGER"


async def test_change_summary_by_key(
    odbc_settings: Settings, source: Path, database_path: Path
) -> None:
    keyed = odbc_settings.model_copy(update={"sync_key": "OrderNumber"})
    async with sync_service(keyed) as service:
        await service.scheduler.run_once()
        rows = order_rows(1600, version=3)[30:]  # 30 gone, 77 new, every 7th changed
        write_orders(source, rows)
        log = await service.scheduler.run_once()
        assert log is not None
        last = (await service.messages(log.id))[-1]
    changed = sum(1 for n in range(30, 1523) if n % 7 == 0)
    assert last.endswith(f" seconds (77 new, 30 gone, {changed:,} changed)")
    assert len(table_rows(database_path)) == 1570


async def test_a_query_that_cannot_be_counted_numbers_batches_alone(
    settings: Settings, source: Path
) -> None:
    query = f"SELECT * FROM {VIEW} ORDER BY OrderNumber LIMIT 1200;"
    custom = with_source(settings, sqlite_odbc(source), source_query=query)
    async with sync_service(custom) as service:
        log = await service.scheduler.run_once()
        assert log is not None
        assert log.status is Status.success
        messages = await service.messages(log.id)
    assert "Fetching records from custom query..." in messages
    assert [m for m in messages if m.startswith("Batch")] == [
        "Batch 1 imported (500 records)",
        "Batch 2 imported (500 records)",
        "Batch 3 imported (200 records)",
    ]


async def test_a_query_error_ends_the_run_and_keeps_the_old_set(
    odbc_settings: Settings, source: Path, database_path: Path
) -> None:
    async with sync_service(odbc_settings) as service:
        await service.scheduler.run_once()
        with closing(sqlite3.connect(source)) as conn:
            conn.execute(f"DROP VIEW {VIEW}")
        log = await service.scheduler.run_once()
        assert log is not None
        assert log.status is Status.error
        messages = await service.messages(log.id)
    assert messages[-1] == f"ERROR: Fetch failed - [HY000] no such table: {VIEW}"
    assert len(table_rows(database_path)) == 1523
    assert "open_orders_staging" not in tables(database_path)


async def test_views_and_indexes_on_open_orders_survive_swaps(
    odbc_settings: Settings, source: Path, database_path: Path
) -> None:
    async with sync_service(odbc_settings) as service:
        await service.scheduler.run_once()
        with closing(sqlite3.connect(database_path)) as conn:
            conn.executescript(
                """
                CREATE VIEW big_orders AS SELECT OrderNumber FROM open_orders WHERE Quantity > 40;
                CREATE INDEX open_orders_by_customer ON open_orders (Customer);
                """
            )
        for size in (1000, 1400):
            write_orders(source, order_rows(size))
            log = await service.scheduler.run_once()
            assert log is not None
            assert log.status is Status.success
    with closing(sqlite3.connect(database_path)) as conn:
        big = conn.execute("SELECT count(*) FROM big_orders").fetchone()[0]
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert big == sum(1 for n in range(1400) if n % 50 > 40)
    assert {"big_orders", "open_orders_by_customer"} <= names


async def test_a_reader_only_ever_sees_complete_sets(
    odbc_settings: Settings, source: Path, database_path: Path
) -> None:
    sizes = [1523, 600, 2100, 900, 1800]
    seen: set[int] = set()
    errors: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        with closing(sqlite3.connect(database_path, timeout=30)) as conn:
            while not stop.is_set():
                try:
                    seen.add(conn.execute("SELECT count(*) FROM open_orders").fetchone()[0])
                except sqlite3.Error as exc:
                    errors.append(str(exc))

    unguarded = odbc_settings.model_copy(update={"sync_min_ratio": 0.0, "sync_batch_size": 100})
    async with sync_service(unguarded) as service:
        await service.scheduler.run_once()
        reader = threading.Thread(target=poll)
        reader.start()
        try:
            for size in sizes[1:]:
                write_orders(source, order_rows(size))
                log = await service.scheduler.run_once()
                assert log is not None
                assert log.status is Status.success
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            reader.join()
    assert errors == []
    assert seen <= set(sizes)
    assert len(seen) >= 3


async def test_open_orders_in_a_database_of_its_own(
    odbc_settings: Settings, source: Path, database_path: Path, tmp_path: Path
) -> None:
    target = tmp_path / "business" / "app.sqlite3"
    target.parent.mkdir()
    apart = odbc_settings.model_copy(update={"target_database_path": target})
    async with sync_service(apart) as service:
        log = await service.scheduler.run_once()
        assert log is not None
        assert log.status is Status.success
    assert len(table_rows(target)) == 1523
    assert "open_orders" not in tables(database_path)
    assert "job_logs" not in tables(target)
