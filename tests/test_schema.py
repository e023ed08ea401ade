"""schema.sql: the seed's tables and indexes plus the composite one, applied idempotently,
accepting a database the seed's SQL (or Rails) created, storing what Rails reads."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.store import (
    Database,
    DatabaseUnavailable,
    IncompatibleSchema,
    JobLogQuery,
    add_detail,
    count_by_status,
    create_job_log,
    job_log_with_details,
    list_job_logs,
    set_status,
)
from service.wire import Status
from tests.support.clock import FakeClock
from tests.support.rails import SEED_SCHEMA, raw, seed_database

RAILS_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")


def structure(path: Path) -> dict[str, object]:
    """Every table's columns and every index's columns, uniqueness and name."""
    with raw(path) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        shape: dict[str, object] = {}
        for table in tables:
            columns = [tuple(row[1:]) for row in conn.execute(f"PRAGMA table_info({table})")]
            indexes = {
                (row[1], row[2]): [r[2] for r in conn.execute(f"PRAGMA index_info('{row[1]}')")]
                for row in conn.execute(f"PRAGMA index_list({table})")
            }
            keys = [tuple(row[2:5]) for row in conn.execute(f"PRAGMA foreign_key_list({table})")]
            shape[table] = {"columns": columns, "indexes": indexes, "foreign_keys": keys}
        return shape


def test_fresh_schema_is_the_seeds_plus_the_composite_index_counts_search_and_heartbeat(
    tmp_path: Path, database_path: Path
) -> None:
    asyncio.run(_open_and_close(database_path))
    seed_path = tmp_path / "seed.sqlite3"
    with raw(seed_path) as conn:
        conn.executescript(SEED_SCHEMA)
        conn.execute(
            "CREATE INDEX index_job_logs_on_status_and_created_at ON job_logs(status, created_at)"
        )
    shape = structure(database_path)
    # The readiness probe's one-row table; the Rails app neither knows nor minds it.
    assert shape.pop("service_heartbeat") == {
        "columns": [("id", "INTEGER", 0, None, 1), ("beat_at", "DATETIME", 1, None, 0)],
        "indexes": {},
        "foreign_keys": [],
    }
    assert shape.pop("job_log_counts") == {
        "columns": [("status", "INTEGER", 0, None, 1), ("n", "INTEGER", 1, None, 0)],
        "indexes": {},
        "foreign_keys": [],
    }
    # The runs in (status, created_at) order: the composite index, kept as a table.
    assert shape.pop("job_logs_by_status") == {
        "columns": [
            ("status", "INTEGER", 1, None, 1),
            ("created_at", "DATETIME", 1, None, 2),
            ("id", "INTEGER", 1, None, 3),
        ],
        "indexes": {("sqlite_autoindex_job_logs_by_status_1", 1): ["status", "created_at", "id"]},
        "foreign_keys": [],
    }
    # How far the runs by status and the trigram index of an adopted database are built: no
    # row, complete.
    for build in ("job_logs_by_status_build", "search_index_build"):
        assert shape.pop(build) == {
            "columns": [
                ("id", "INTEGER", 0, None, 1),
                ("done", "INTEGER", 1, None, 0),
                ("upto", "INTEGER", 1, None, 0),
            ],
            "indexes": {},
            "foreign_keys": [],
        }
    # The trigram index and the tables FTS5 keeps it in.
    search = {name for name in shape if name.startswith("job_log_details_search")}
    assert "job_log_details_search" in search
    for name in search:
        shape.pop(name)
    assert shape == structure(seed_path)
    with raw(database_path) as conn:
        triggers = {
            row[0]: row[1]
            for row in conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type='trigger'")
        }
    assert triggers == {
        "job_log_counts_after_insert": "job_logs",
        "job_log_counts_after_delete": "job_logs",
        "job_log_counts_after_update": "job_logs",
        "job_logs_by_status_after_insert": "job_logs",
        "job_logs_by_status_after_delete": "job_logs",
        "job_logs_by_status_after_update": "job_logs",
        "job_log_details_search_after_insert": "job_log_details",
        "job_log_details_search_after_delete": "job_log_details",
        "job_log_details_search_after_update": "job_log_details",
    }
    ours = structure(database_path)["job_logs"]
    assert isinstance(ours, dict)
    assert ours["indexes"][("index_job_logs_on_status_and_created_at", 0)] == [
        "status",
        "created_at",
    ]


async def _open_and_close(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


async def test_schema_is_applied_idempotently(database_path: Path, clock: FakeClock) -> None:
    first = await Database.open(database_path, clock=clock)
    log = await create_job_log(first)
    await first.close()
    before = structure(database_path)
    second = await Database.open(database_path, clock=clock)
    try:
        assert (await job_log_with_details(second, log.name)).id == log.id
    finally:
        await second.close()
    assert structure(database_path) == before


async def test_the_connection_settings(db: Database, database_path: Path) -> None:
    with raw(database_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    async with db.snapshot() as conn:
        async with conn.execute("PRAGMA foreign_keys") as cursor:
            foreign_keys = await cursor.fetchone()
            assert foreign_keys is not None
            assert foreign_keys[0] == 1
        async with conn.execute("PRAGMA busy_timeout") as cursor:
            busy_timeout = await cursor.fetchone()
            assert busy_timeout is not None
            assert busy_timeout[0] == 5000


async def test_a_database_made_from_the_seeds_sql_is_accepted(
    database_path: Path, clock: FakeClock
) -> None:
    seed_database(database_path)
    db = await Database.open(database_path, clock=clock)
    try:
        counts = await count_by_status(db)
        assert (counts.total, counts.success, counts.error, counts.processing) == (4, 2, 1, 1)
        log = await job_log_with_details(db, "20251215143022")
        assert log.status is Status.success
        assert log.created_at == datetime(2025, 12, 15, 14, 30, 22, tzinfo=UTC)
        assert log.updated_at == datetime(2025, 12, 15, 14, 30, 45, tzinfo=UTC)
        assert [d.message for d in log.details] == [
            "Job started - SyncOpenOrdersJob",
            "Connecting to SQL Server CASQL2.inxintl.com...",
            "Connected successfully",
        ]
        assert log.details[2].created_at == datetime(2025, 12, 15, 14, 30, 24, 500000, tzinfo=UTC)
        # The seed's own collision example: our next name in that second takes _2.
        clock.now = datetime(2025, 12, 15, 14, 30, 22, 900000, tzinfo=UTC)
        assert (await create_job_log(db)).name == "20251215143022_2"
    finally:
        await db.close()


async def test_range_filters_match_rails_rows_without_a_fraction(
    database_path: Path, clock: FakeClock
) -> None:
    seed_database(database_path)
    db = await Database.open(database_path, clock=clock)
    try:
        at = datetime(2025, 12, 15, 14, 30, 22, tzinfo=UTC)
        since = await list_job_logs(db, JobLogQuery(since=at))
        assert since.total == 4
        until = await list_job_logs(db, JobLogQuery(until=at))
        assert until.total == 0
        just_after = await list_job_logs(db, JobLogQuery(until=at.replace(microsecond=1)))
        assert {log.name for log in just_after.items} == {"20251215143022", "20251215143022_1"}
    finally:
        await db.close()


async def test_rows_are_written_the_way_rails_stores_them(
    db: Database, database_path: Path, clock: FakeClock
) -> None:
    clock.now = datetime(2025, 12, 15, 14, 30, 22, tzinfo=UTC)
    log = await create_job_log(db)
    await add_detail(db, log.id, "Job started - SyncOpenOrdersJob")
    clock.advance(1.25)
    await set_status(db, log.id, Status.processing)
    with raw(database_path) as conn:
        row = conn.execute(
            "SELECT status, typeof(status), created_at, updated_at FROM job_logs"
        ).fetchone()
        detail = conn.execute("SELECT created_at, updated_at FROM job_log_details").fetchone()
    assert row[:2] == (1, "integer")
    assert row[2] == "2025-12-15 14:30:22.000000"
    assert row[3] == "2025-12-15 14:30:23.250000"
    assert all(RAILS_TIMESTAMP.fullmatch(value) for value in (*row[2:], *detail))


async def test_a_table_missing_columns_is_refused(database_path: Path) -> None:
    database_path.parent.mkdir(parents=True)
    with raw(database_path) as conn:
        conn.execute("CREATE TABLE job_logs (id INTEGER PRIMARY KEY, title TEXT)")
    with pytest.raises(IncompatibleSchema, match="job_logs lacks column"):
        await Database.open(database_path)


async def test_a_file_that_is_not_a_database_is_refused(database_path: Path) -> None:
    database_path.parent.mkdir(parents=True)
    database_path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseUnavailable, match="cannot open database"):
        await Database.open(database_path)


async def test_reads_do_not_wait_behind_another_writer(
    database_path: Path, clock: FakeClock
) -> None:
    db = await Database.open(database_path, busy_timeout_seconds=30, clock=clock)
    try:
        log = await create_job_log(db)
        with raw(database_path) as other:
            other.execute("BEGIN IMMEDIATE")
            other.execute(
                "INSERT INTO job_logs (name, status, created_at, updated_at) "
                "VALUES ('20991231235959', 0, '2099-12-31 23:59:59', '2099-12-31 23:59:59')"
            )
            # The write lock is held for longer than the test allows; a read that waited for
            # it would time out here.
            page = await asyncio.wait_for(list_job_logs(db, JobLogQuery()), timeout=5)
            found = await asyncio.wait_for(job_log_with_details(db, log.name), timeout=5)
            other.execute("ROLLBACK")
        assert [item.id for item in page.items] == [log.id]
        assert found.id == log.id
    finally:
        await db.close()
