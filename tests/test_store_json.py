"""Runs written as JSON by SQLite say exactly what their models serialize to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.store import (
    Database,
    JobLogQuery,
    NotFound,
    job_log_with_details,
    job_log_with_details_json,
    latest_job_log,
    latest_with_details_json,
    list_job_logs,
    list_job_logs_json,
)
from tests.support.rails import raw

# (name, status, created_at, updated_at) as the Rails app and odder writers leave them.
RUNS = [
    ("20251215143022", 3, "2025-12-15 14:30:22.250000", "2025-12-15 14:30:41.045123"),
    ("20251215143522", 2, "2025-12-15 14:35:22", "2025-12-15 14:35:24"),
    ("20251215144022", 1, "2025-12-15 14:40:22.000001", "2025-12-15 14:40:22.000001"),
    ("20251215144522", 0, "2025-12-15 14:45:22", "2025-12-15 14:45:22.999999"),
    ("20251215145022", 3, "2025-12-15 14:50:22.5", "2025-12-15 14:50:23+01:00"),
    ("20251215145522", 3, "2025-12-15T14:55:22Z", "2025-12-15 14:55:59.000010"),
    ("20251215150022", 3, "2025-12-15 15:00:22.999999", "2025-12-14 15:00:22.000001"),
    ("20251215150522", 2, "2025-12-15 15:05:22", "2035-12-15 15:05:22.123456"),
]


async def test_a_page_as_json_is_the_json_of_its_models(db: Database, database_path: Path) -> None:
    with raw(database_path) as conn:
        conn.executemany(
            "INSERT INTO job_logs (name, status, created_at, updated_at) VALUES (?, ?, ?, ?)",
            RUNS,
        )
        conn.executemany(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "SELECT id, 'Login failed', created_at, created_at FROM job_logs WHERE name = ?",
            [(name,) for name, *_ in RUNS],
        )
    for query in [
        JobLogQuery(),
        JobLogQuery(per_page=3, page=2),
        JobLogQuery(q="login"),
        JobLogQuery(q="in"),
    ]:
        text = await list_job_logs_json(db, query)
        assert text == (await list_job_logs(db, query)).model_dump_json()
        assert len(json.loads(text)["items"]) == min(query.per_page, len(RUNS) - query.offset)


async def test_a_run_with_its_lines_as_json_is_the_json_of_its_model(
    db: Database, database_path: Path
) -> None:
    with raw(database_path) as conn:
        conn.executemany(
            "INSERT INTO job_logs (name, status, created_at, updated_at) VALUES (?, ?, ?, ?)",
            RUNS,
        )
        conn.executemany(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "SELECT id, ?, ?, updated_at FROM job_logs WHERE name = ?",
            [
                ('Fetched "1,523" records\\n\tdone ü', "2025-12-15 14:30:23.5", RUNS[0][0]),
                ("Connected", "2025-12-15 14:30:23", RUNS[0][0]),
                ("odd time", "2025-12-15T14:30:24+00:00", RUNS[0][0]),
                ("one line", "2025-12-15 14:35:23.000001", RUNS[1][0]),
            ],
        )
    for name, *_ in RUNS:
        text = await job_log_with_details_json(db, name)
        assert text == (await job_log_with_details(db, name)).model_dump_json()
    assert len(json.loads(await job_log_with_details_json(db, RUNS[0][0]))["details"]) == 3
    latest = await latest_job_log(db)
    assert latest is not None
    assert await latest_with_details_json(db) == (
        (await job_log_with_details(db, latest.id)).model_dump_json()
    )


async def test_no_run_is_none_or_not_found(db: Database) -> None:
    assert await latest_with_details_json(db) is None
    with pytest.raises(NotFound):
        await job_log_with_details_json(db, "20251215143022")
