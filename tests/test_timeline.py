"""``GET /api/job_logs/timeline``: runs per time bucket, and the gaps where the schedule
wanted runs and none started."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

from service import appkeys
from service.store import to_db
from tests.support.api import MakeClient
from tests.support.clock import FakeClock

HOUR = timedelta(hours=1)


def write_run(
    path: Path, started: datetime, status: int, seconds: float, name: str, *lines: str
) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        log = conn.execute(
            "INSERT INTO job_logs (name, status, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (name, status, to_db(started), to_db(started + timedelta(seconds=seconds))),
        ).lastrowid
        for line in lines:
            conn.execute(
                "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
                "VALUES (?, ?, ?, ?)",
                (log, line, to_db(started), to_db(started)),
            )


async def test_buckets_count_runs_their_endings_and_the_longest(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client(sync_interval_seconds=600)
    path = client.app[appkeys.SETTINGS].database_path
    now = clock()
    since = now - 6 * HOUR
    # Three runs in the first hour (one failed, the longest 40 s), one in the third.
    write_run(path, since + timedelta(minutes=5), 3, 10, "a")
    write_run(path, since + timedelta(minutes=15), 2, 0.5, "b")
    write_run(
        path,
        since + timedelta(minutes=25),
        3,
        40,
        "c",
        "Job started - SyncOpenOrdersJob",
        "Job completed successfully - Total: 1,523 records in 40.0 seconds (12 new)",
    )
    write_run(
        path,
        since + timedelta(hours=2, minutes=1),
        2,
        3,
        "d",
        "ERROR: Fetch failed - Total: 5 records in 1 s",
    )
    query = f"since={since.isoformat()}&until={now.isoformat()}&buckets=6"
    response = await client.get(f"/api/job_logs/timeline?{query}".replace("+", "%2B"))
    assert response.status == 200
    body = await response.json()
    assert body["bucket_seconds"] == 3600
    first, third = body["buckets"]
    assert (first["runs"], first["succeeded"], first["failed"], first["going"]) == (3, 2, 1, 0)
    assert first["longest_seconds"] == 40
    assert (first["latest_name"], first["latest_status"]) == ("c", "success")
    # What the latest run imported, from its last line; none for a failed run.
    assert first["latest_records"] == 1523
    assert third["latest_records"] is None
    assert third["start"].startswith((since + 2 * HOUR).strftime("%Y-%m-%dT%H:%M"))
    assert (third["runs"], third["failed"], third["latest_name"]) == (1, 1, "d")
    # Runs every 10 minutes were due: the second hour and the last three are gaps (the
    # first run's hour and before it are not).
    gaps = [(g["start"][11:16], g["end"][11:16]) for g in body["gaps"]]
    assert gaps == [
        ((since + HOUR).strftime("%H:%M"), (since + 2 * HOUR).strftime("%H:%M")),
        ((since + 3 * HOUR).strftime("%H:%M"), now.strftime("%H:%M")),
    ]


async def test_a_paused_schedule_has_no_gaps(make_client: MakeClient, clock: FakeClock) -> None:
    # Only at 03:00 on the 1st of January: a quiet day wanted no run.
    client = await make_client(sync_schedule="0 3 1 1 *")
    path = client.app[appkeys.SETTINGS].database_path
    write_run(path, clock() - timedelta(days=2), 3, 5, "old")
    body = await (await client.get("/api/job_logs/timeline?buckets=24")).json()
    assert body["gaps"] == []
    assert body["buckets"] == []


async def test_bad_windows_are_400_naming_the_field(make_client: MakeClient) -> None:
    client = await make_client()
    for query, field in [
        ("since=2026-01-02&until=2026-01-01", "until"),
        ("since=2026-01-02T00:00:01Z&until=2026-01-02", "until"),
        ("since=2025-01-01&until=2026-06-01", "until"),
        ("buckets=0", "buckets"),
        ("buckets=5000", "buckets"),
    ]:
        response = await client.get(f"/api/job_logs/timeline?{query}")
        assert response.status == 400, query
        assert (await response.json())["field"] == field


async def test_thirty_days_of_runs_are_a_few_hundred_rows(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client(sync_interval_seconds=300)
    path = client.app[appkeys.SETTINGS].database_path
    start = clock() - timedelta(days=30)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO job_logs (name, status, created_at, updated_at) VALUES (?, 3, ?, ?)",
            [
                (
                    f"r{k}",
                    to_db(start + k * timedelta(minutes=5)),
                    to_db(start + k * timedelta(minutes=5, seconds=1)),
                )
                for k in range(30 * 288)
            ],
        )
    since = (clock() - timedelta(days=30)).isoformat().replace("+", "%2B")
    body = await (await client.get(f"/api/job_logs/timeline?since={since}&buckets=300")).json()
    assert len(body["buckets"]) == 300
    assert sum(b["runs"] for b in body["buckets"]) == 30 * 288
    assert body["gaps"] == []


async def test_an_empty_window_holds_nothing(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.get("/api/job_logs/timeline?since=2026-01-02&until=2026-01-02")
    assert response.status == 200
    body = await response.json()
    assert (body["bucket_seconds"], body["buckets"], body["gaps"]) == (0, [], [])
