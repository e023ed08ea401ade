"""Readiness: a real write on the file DATABASE_PATH names, the scheduler alive, the sync's age."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from service import appkeys
from service.store import job_log_with_details
from service.wire import Status
from tests.support.api import Client, MakeClient, run_to_end
from tests.support.clock import FakeClock
from tests.support.wait import wait_for_async

SECRET = "hunter2-not-for-anyone"


async def ready(client: Client) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_a_fresh_service_is_ready_and_has_never_synced(make_client: MakeClient) -> None:
    client = await make_client()
    status, body = await ready(client)
    assert status == 200
    assert body == {
        "status": "ready",
        "checks": {"database": "ok", "scheduler": "ok"},
        "source": {"kind": "demo", "server": None},
        "last_run": None,
        "last_success_at": None,
        "next_run_at": None,
        "sync": "never",
        "search": "ready",
        "search_progress": None,
    }


async def test_the_probe_commits_a_real_write(make_client: MakeClient, database_path: Path) -> None:
    client = await make_client()
    for _ in range(2):
        assert (await ready(client))[0] == 200
    with closing(sqlite3.connect(database_path)) as conn:
        rows = conn.execute("SELECT id, beat_at FROM service_heartbeat").fetchall()
    assert [row[0] for row in rows] == [1]
    assert rows[0][1] == "2025-12-15 14:30:22.250000"


async def test_the_sync_goes_late_after_three_missed_intervals(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client(sync_interval_seconds=300)
    log = await run_to_end(client)
    status, body = await ready(client)
    assert (status, body["sync"]) == (200, "ok")
    assert body["last_run"]["name"] == log["name"]
    assert body["last_run"]["status"] == "success"
    assert body["last_success_at"] == "2025-12-15T14:30:22.250000Z"
    assert body["next_run_at"] == "2025-12-15T14:35:22.250000Z"
    clock.advance(900)
    assert (await ready(client))[1]["sync"] == "ok"
    clock.advance(0.001)
    status, body = await ready(client)
    assert (status, body["status"], body["sync"]) == (200, "ready", "late")


async def test_a_failing_source_makes_the_sync_late_not_the_service_unready(
    make_client: MakeClient, clock: FakeClock
) -> None:
    odbc = f"Driver={{No Such Driver}};Server=db.plant.example;UID=sync;PWD={SECRET}"
    client = await make_client(source_odbc=SecretStr(odbc), sync_interval_seconds=60)
    log = await run_to_end(client)
    db = client.app[appkeys.DATABASE]
    assert (await job_log_with_details(db, log["id"])).status is Status.error
    response = await client.get("/readyz")
    text = await response.text()
    body = await response.json()
    assert response.status == 200
    assert body["sync"] == "never"
    assert body["last_run"]["status"] == "error"
    assert body["source"] == {"kind": "odbc", "server": "db.plant.example"}
    assert SECRET not in text
    assert "Driver=" not in text


async def test_a_removed_database_file_is_unready_until_it_is_back(
    make_client: MakeClient, database_path: Path
) -> None:
    client = await make_client()
    assert (await ready(client))[0] == 200
    moved = database_path.with_name("moved.sqlite3")
    database_path.rename(moved)
    status, body = await ready(client)
    assert (status, body["status"]) == (503, "unready")
    assert "gone" in body["checks"]["database"]
    assert body["checks"]["scheduler"] == "ok"
    assert not database_path.exists(), "the probe must not create a new, empty file"
    moved.rename(database_path)
    assert (await ready(client))[0] == 200


async def test_a_replaced_database_file_is_unready(
    make_client: MakeClient, database_path: Path
) -> None:
    client = await make_client()
    copy = database_path.with_name("copy.sqlite3")
    shutil.copyfile(database_path, copy)
    os.replace(copy, database_path)
    status, body = await ready(client)
    assert status == 503
    assert "replaced" in body["checks"]["database"]


async def test_a_database_locked_past_the_probe_deadline_is_unready(
    make_client: MakeClient, database_path: Path
) -> None:
    client = await make_client()
    with closing(sqlite3.connect(database_path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        status, body = await ready(client)
        assert status == 503
        assert body["checks"]["database"] != "ok"
        other.execute("ROLLBACK")

    # The timed-out probe ends within its own busy timeout; then writes go through again.
    async def ready_again() -> bool:
        return (await ready(client))[0] == 200

    await wait_for_async(ready_again, "ready again", within=5, every=0.1)
    assert (await ready(client))[0] == 200


async def test_a_dead_scheduler_loop_is_unready(make_client: MakeClient) -> None:
    client = await make_client(sync_interval_seconds=300)
    assert (await ready(client))[0] == 200
    (loop,) = [task for task in asyncio.all_tasks() if task.get_name() == "sync-scheduler"]
    loop.cancel()
    await asyncio.sleep(0)
    status, body = await ready(client)
    assert status == 503
    assert body["checks"] == {"database": "ok", "scheduler": "the scheduler loop has stopped"}


async def test_healthz_touches_no_database(make_client: MakeClient, database_path: Path) -> None:
    client = await make_client()
    database_path.rename(database_path.with_name("elsewhere.sqlite3"))
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
