"""The REST history API through the real app factory."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from service import appkeys
from service.settings import Settings
from service.store import Database, add_detail, create_job_log, set_status
from service.wire import JobLog, Status
from tests.support.clock import FakeClock

Client = TestClient[web.Request, web.Application]


async def run(db: Database, clock: FakeClock, final: Status, *lines: str) -> JobLog:
    """A log taken to ``final`` (or left processing), with ``lines`` as details."""
    log = await create_job_log(db)
    if final is not Status.pending:
        log = await set_status(db, log.id, Status.processing)
    for line in lines:
        clock.advance(0.5)
        await add_detail(db, log.id, line)
    if final.finished:
        clock.advance(1)
        log = await set_status(db, log.id, final)
    clock.advance(300)
    return log


@pytest.fixture
async def history(client: Client, clock: FakeClock) -> list[JobLog]:
    """Four runs five minutes apart: success, error, success, processing."""
    db = client.app[appkeys.DATABASE]
    return [
        await run(
            db, clock, Status.success, "Job started - SyncOpenOrdersJob", "Fetched 1,523 records"
        ),
        await run(
            db,
            clock,
            Status.error,
            "Job started - SyncOpenOrdersJob",
            "ERROR: Connection failed - [28000] Login failed",
        ),
        await run(
            db, clock, Status.success, "Job started - SyncOpenOrdersJob", "Fetched 12 records"
        ),
        await run(db, clock, Status.processing, "Job started - SyncOpenOrdersJob"),
    ]


async def get(client: Client, path: str, status: int = 200) -> Any:
    response = await client.get(path)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def test_list_is_most_recent_first_with_the_joblog_shape(
    client: Client, history: list[JobLog]
) -> None:
    body = await get(client, "/api/job_logs")
    assert [item["id"] for item in body["items"]] == [log.id for log in reversed(history)]
    assert (body["page"], body["per_page"], body["total"]) == (1, 25, 4)
    first = body["items"][-1]
    assert first == {
        "id": history[0].id,
        "name": "20251215143022",
        "status": "success",
        "created_at": "2025-12-15T14:30:22.250000Z",
        "updated_at": "2025-12-15T14:30:24.250000Z",
        "duration_seconds": 2.0,
    }
    assert body["items"][0]["status"] == "processing"
    assert body["items"][0]["duration_seconds"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=error", [1]),
        ("status=success", [2, 0]),
        ("since=2025-12-15T14:35:22.250000Z", [3, 2, 1]),
        ("since=2025-12-15T15:35:22.25%2B01:00", [3, 2, 1]),
        ("since=2025-12-15T15:35:22.25+01:00", [3, 2, 1]),
        ("since=2025-12-15T14:35:22.25", [3, 2, 1]),
        ("since=2025-12-15t14:35:22.25z", [3, 2, 1]),
        ("until=2025-12-15T14:35:22.250000Z", [0]),
        ("since=2025-12-15&until=2025-12-16", [3, 2, 1, 0]),
        ("since=2025-12-16", []),
        ("q=login%20FAILED", [1]),
        ("q=records", [2, 0]),
        ("q=records&status=success&since=2025-12-15T14:40:00Z", [2]),
        ("per_page=2&page=2", [1, 0]),
        ("per_page=2&page=3", []),
    ],
)
async def test_filters(
    client: Client, history: list[JobLog], query: str, expected: list[int]
) -> None:
    body = await get(client, f"/api/job_logs?{query}")
    assert [item["id"] for item in body["items"]] == [history[i].id for i in expected]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=finished", "status"),
        ("since=yesterday", "since"),
        ("until=2025-13-01", "until"),
        ("since=2025-12-16&until=2025-12-15", "until"),
        ("page=0", "page"),
        ("page=x", "page"),
        ("per_page=0", "per_page"),
        ("per_page=1000", "per_page"),
        ("q=", "q"),
        ("since=0001-01-01T00:00:00%2B15:00", "since"),
        ("until=9999-12-31T23:59:59-15:00", "until"),
    ],
)
async def test_invalid_parameters_are_400_naming_the_field(
    client: Client, query: str, field: str
) -> None:
    body = await get(client, f"/api/job_logs?{query}", status=400)
    assert body["field"] == field
    assert body["error"].startswith(f"{field}: ")


async def test_stats_and_latest(client: Client, history: list[JobLog]) -> None:
    assert await get(client, "/api/job_logs/stats") == {
        "total": 4,
        "pending": 0,
        "processing": 1,
        "error": 1,
        "success": 2,
    }
    latest = await get(client, "/api/job_logs/latest")
    assert latest["id"] == history[3].id
    assert [d["message"] for d in latest["details"]] == ["Job started - SyncOpenOrdersJob"]


async def test_latest_without_logs_is_404(client: Client) -> None:
    body = await get(client, "/api/job_logs/latest", status=404)
    assert "error" in body


async def test_one_log_by_name_or_id(
    client: Client, history: list[JobLog], clock: FakeClock
) -> None:
    by_name = await get(client, f"/api/job_logs/{history[1].name}")
    by_id = await get(client, f"/api/job_logs/{history[1].id}")
    assert by_name == by_id
    assert [d["message"] for d in by_name["details"]] == [
        "Job started - SyncOpenOrdersJob",
        "ERROR: Connection failed - [28000] Login failed",
    ]
    assert set(by_name["details"][0]) == {"id", "job_log_id", "message", "created_at"}
    clock.now = history[0].created_at
    twin = await create_job_log(client.app[appkeys.DATABASE])
    assert twin.name == "20251215143022_1"
    assert (await get(client, "/api/job_logs/20251215143022_1"))["id"] == twin.id


@pytest.mark.parametrize(
    "ref", ["999", "20991231235959", "abc", "0", "99999999999999999999999", "2025121514302_"]
)
async def test_unknown_refs_are_404(client: Client, history: list[JobLog], ref: str) -> None:
    for path in (
        f"/api/job_logs/{ref}",
        f"/api/job_logs/{ref}/details",
        f"/api/job_logs/{ref}.txt",
    ):
        body = await get(client, path, status=404)
        assert "error" in body


async def test_details_pages(client: Client, clock: FakeClock) -> None:
    db = client.app[appkeys.DATABASE]
    log = await run(db, clock, Status.success, *(f"line {n}" for n in range(7)))
    first = await get(client, f"/api/job_logs/{log.name}/details?limit=3")
    assert [d["message"] for d in first["items"]] == ["line 0", "line 1", "line 2"]
    second = await get(
        client, f"/api/job_logs/{log.name}/details?limit=3&after={first['next_after']}"
    )
    assert [d["message"] for d in second["items"]] == ["line 3", "line 4", "line 5"]
    last = await get(
        client, f"/api/job_logs/{log.name}/details?limit=3&after={second['next_after']}"
    )
    assert [d["message"] for d in last["items"]] == ["line 6"]
    assert last["next_after"] is None
    found = await get(client, f"/api/job_logs/{log.id}/details?q=LINE%205")
    assert [d["message"] for d in found["items"]] == ["line 5"]


async def test_details_pages_read_every_stored_time_form(
    client: Client, clock: FakeClock, settings: Settings
) -> None:
    db = client.app[appkeys.DATABASE]
    log = await run(db, clock, Status.success, "plain", 'quoted "ü ☃"\n\x01', "third", "fourth")
    stored = ["2025-12-15 14:30:22", "2025-12-15 14:30:22.5+01:00", "2025-12-15T14:30:23.000250"]
    with closing(sqlite3.connect(settings.database_path)) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM job_log_details ORDER BY id")]
        conn.executemany(
            "UPDATE job_log_details SET created_at = ? WHERE id = ?", zip(stored, ids, strict=False)
        )
        conn.commit()
    whole = await get(client, f"/api/job_logs/{log.name}")
    details = sorted(whole["details"], key=lambda detail: detail["id"])
    page = await get(client, f"/api/job_logs/{log.name}/details?limit=1000")
    assert page == {"items": details, "next_after": None}
    assert [d["created_at"] for d in page["items"]] == [
        "2025-12-15T14:30:22.000000Z",
        "2025-12-15T13:30:22.500000Z",
        "2025-12-15T14:30:23.000250Z",
        "2025-12-15T14:30:24.250000Z",
    ]
    assert page["items"][1]["message"] == 'quoted "ü ☃"\n\x01'
    last = await get(client, f"/api/job_logs/{log.name}/details?limit=1&after={ids[2]}")
    assert last == {"items": details[3:], "next_after": None}
    first = await get(client, f"/api/job_logs/{log.name}/details?limit=1")
    assert first == {"items": details[:1], "next_after": ids[0]}


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=1001", "limit"), ("after=x", "after"), ("after=-1", "after")],
)
async def test_details_parameters_are_checked(
    client: Client, history: list[JobLog], query: str, field: str
) -> None:
    body = await get(client, f"/api/job_logs/{history[0].id}/details?{query}", status=400)
    assert body["field"] == field


async def test_text_download(client: Client, clock: FakeClock) -> None:
    db = client.app[appkeys.DATABASE]
    log = await run(db, clock, Status.success, "Job started", "two\nlines\r\nand\rmore")
    response = await client.get(f"/api/job_logs/{log.name}.txt")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{log.name}.txt"'
    assert await response.text() == (
        "2025-12-15T14:30:22.750000Z  Job started\n"
        "2025-12-15T14:30:23.250000Z  two\\nlines\\nand\\nmore\n"
    )


async def test_text_of_a_long_log_is_complete(client: Client, clock: FakeClock) -> None:
    db = client.app[appkeys.DATABASE]
    log = await create_job_log(db)
    for n in range(2500):
        await add_detail(db, log.id, f"line {n}")
    body = await (await client.get(f"/api/job_logs/{log.id}.txt")).text()
    lines = body.splitlines()
    assert len(lines) == 2500
    assert lines[-1].endswith("  line 2499")


async def test_streamed_answers_carry_the_security_headers(
    client: Client, history: list[JobLog]
) -> None:
    for path in (f"/api/job_logs/{history[0].name}.txt", "/api/job_logs"):
        response = await client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


async def test_neighbours_are_the_runs_just_before_and_after_in_list_order(
    client: Client, clock: FakeClock
) -> None:
    db = client.app[appkeys.DATABASE]
    made = []
    for _ in range(3):
        made.append(await create_job_log(db))
        clock.advance(60)
    first, middle, last = (log.name for log in made)
    body = await (await client.get(f"/api/job_logs/{middle}/neighbours")).json()
    assert (body["previous"]["name"], body["next"]["name"]) == (first, last)
    body = await (await client.get(f"/api/job_logs/{first}/neighbours")).json()
    assert (body["previous"], body["next"]["name"]) == (None, middle)
    body = await (await client.get(f"/api/job_logs/{last}/neighbours")).json()
    assert (body["previous"]["name"], body["next"]) == (middle, None)
    missing = await client.get("/api/job_logs/20000101000000/neighbours")
    assert missing.status == 404
