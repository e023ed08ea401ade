"""The Rails app and this service share one database file, in both directions.

The seed's own migrations and models run on Debian's ActiveRecord against the file.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.store import (
    Database,
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
from tests.support.rails import rails

pytestmark = pytest.mark.integration


def schema_objects(database: Path) -> dict[str, str]:
    with closing(sqlite3.connect(database)) as conn:
        return {name: sql for name, sql in conn.execute("SELECT name, sql FROM sqlite_master")}


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def test_a_rails_database_is_accepted_as_it_is(database_path: Path, clock: FakeClock) -> None:
    database_path.parent.mkdir(parents=True)
    rails(database_path, "migrate")
    rails(database_path, "seed")
    before = schema_objects(database_path)

    db = await Database.open(database_path, clock=clock)
    try:
        counts = await count_by_status(db)
        log = await job_log_with_details(db, "20251215143022")
    finally:
        await db.close()

    after = schema_objects(database_path)
    # Only the composite index (a young database), the runs by status, the readiness probe's
    # one-row table, the per-status counts and the trigram search index (with the triggers
    # that keep them, and the tables that say how far the runs and lines already there are
    # built) are added.
    assert set(after) - set(before) == {
        "search_index_build",
        "job_logs_by_status",
        "job_logs_by_status_build",
        "job_logs_by_status_after_insert",
        "job_logs_by_status_after_update",
        "job_logs_by_status_after_delete",
        "index_job_logs_on_status_and_created_at",
        "service_heartbeat",
        "job_log_counts",
        "job_log_counts_after_insert",
        "job_log_counts_after_update",
        "job_log_counts_after_delete",
        "job_log_details_search",
        "job_log_details_search_config",
        "job_log_details_search_data",
        "job_log_details_search_docsize",
        "job_log_details_search_idx",
        "job_log_details_search_after_insert",
        "job_log_details_search_after_update",
        "job_log_details_search_after_delete",
    }
    assert {name: after[name] for name in before} == before
    assert (counts.total, counts.success, counts.error, counts.processing) == (4, 2, 1, 1)
    assert log.status is Status.success
    assert log.created_at == datetime(2025, 12, 15, 14, 30, 22, tzinfo=UTC)
    assert [d.message for d in log.details] == [
        "Job started - SyncOpenOrdersJob",
        "Connecting to SQL Server CASQL2.inxintl.com...",
        "Connected successfully",
    ]
    assert log.details[2].created_at == datetime(2025, 12, 15, 14, 30, 24, 500000, tzinfo=UTC)


async def test_rails_reads_what_the_service_writes(database_path: Path, clock: FakeClock) -> None:
    database_path.parent.mkdir(parents=True)
    rails(database_path, "migrate")
    rails(database_path, "seed")
    clock.now = datetime(2025, 12, 15, 14, 30, 22, 123456, tzinfo=UTC)

    db = await Database.open(database_path, clock=clock)
    try:
        ours = await create_job_log(db)
        await set_status(db, ours.id, Status.processing)
        for message in ("Job started - SyncOpenOrdersJob", "x" * 9000, "Line one\nline two 🙂"):
            clock.advance(0.5)
            await add_detail(db, ours.id, message)
        clock.advance(1)
        ours = await set_status(db, ours.id, Status.success)
        failed = await create_job_log(db)
        await set_status(db, failed.id, Status.error)
    finally:
        await db.close()

    dumped: list[dict[str, Any]] = json.loads(rails(database_path, "dump"))
    by_name = {log["name"]: log for log in dumped}
    assert ours.name == "20251215143022_2"  # the seed already holds the base name and _1
    seen = by_name[ours.name]
    assert seen["status"] == "success"
    assert parse(seen["created_at"]) == ours.created_at
    assert parse(seen["updated_at"]) == ours.updated_at
    assert seen["valid"] is True
    assert [d["message"][:20] for d in seen["details"]] == [
        "Job started - SyncOp",
        "x" * 20,
        "Line one\nline two 🙂",
    ]
    assert len(seen["details"][1]["message"]) == 5000
    assert all(d["valid"] for d in seen["details"])
    assert by_name[failed.name]["status"] == "error"


async def test_the_service_reads_what_rails_appends(database_path: Path, clock: FakeClock) -> None:
    database_path.parent.mkdir(parents=True)
    rails(database_path, "migrate")
    db = await Database.open(database_path, clock=clock)
    try:
        log = await create_job_log(db)
        await set_status(db, log.id, Status.processing)
        await add_detail(db, log.id, "Job started - SyncOpenOrdersJob")
        rails(database_path, "append", log.name, "Finished by Rails")
        read = await job_log_with_details(db, log.name)
        # The counts and the search index follow Rails' writes through the triggers.
        counts = await count_by_status(db)
        found = await list_job_logs(db, JobLogQuery(q="finished BY rails"))
    finally:
        await db.close()
    assert read.status is Status.success
    assert [d.message for d in read.details] == [
        "Job started - SyncOpenOrdersJob",
        "Finished by Rails",
    ]
    assert read.details[1].created_at > read.details[0].created_at
    assert (counts.total, counts.success, counts.processing) == (1, 1, 0)
    assert ([item.name for item in found.items], found.total) == ([log.name], 1)
