"""Running the sync over the API: status, run now, cancel, and who may do it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import SecretStr

from service import appkeys
from service.store import job_log_with_details
from service.wire import Status
from tests.support.api import ADMIN, Client, MakeClient
from tests.support.sync import wait_ended

TOKEN = "correct-horse-battery-staple"


async def finished(client: Client, job_log_id: int) -> Status:
    """Wait until the run has ended; its final status."""
    return (await wait_ended(client.app[appkeys.DATABASE], job_log_id)).status


async def test_status_before_any_run(make_client: MakeClient) -> None:
    client = await make_client(sync_interval_seconds=300)
    body = await (await client.get("/api/status")).json()
    assert body["source"] == {"kind": "demo", "server": None}
    assert body["interval_seconds"] == 300
    assert body["running"] is None
    assert body["last_success_at"] is None
    assert body["next_run_at"] is not None
    assert body["next_run_at"].endswith("Z")


async def test_run_now_then_status_shows_it(make_client: MakeClient) -> None:
    client = await make_client(demo_delay_seconds=0.2)
    response = await client.post("/api/job_logs", headers=ADMIN)
    assert response.status == 202
    log = await response.json()
    assert log["status"] == "pending"
    assert response.headers["Location"] == f"job_logs/{log['name']}"
    status = await (await client.get("/api/status")).json()
    assert status["running"]["id"] == log["id"]
    assert await finished(client, log["id"]) is Status.success
    status = await (await client.get("/api/status")).json()
    assert status["running"] is None
    assert status["last_success_at"] is not None
    located = await client.get(f"/api/{response.headers['Location']}")
    assert (await located.json())["status"] == "success"


async def test_a_second_run_is_409_with_the_running_one(make_client: MakeClient) -> None:
    client = await make_client(demo_delay_seconds=5)
    first = await (await client.post("/api/job_logs", headers=ADMIN)).json()
    second = await client.post("/api/job_logs", headers=ADMIN)
    assert second.status == 409
    body = await second.json()
    assert body["error"] == "a sync run is already in progress"
    assert body["job_log"]["id"] == first["id"]
    cancelled = await client.post(f"/api/job_logs/{first['name']}/cancel", headers=ADMIN)
    assert cancelled.status == 202
    assert (await cancelled.json())["status"] == "error"
    detail = (await job_log_with_details(client.app[appkeys.DATABASE], first["id"])).details[-1]
    assert detail.message == "ERROR: Cancelled by request"


async def test_cancel_of_a_run_that_is_not_running_is_409(make_client: MakeClient) -> None:
    client = await make_client()
    log = await (await client.post("/api/job_logs", headers=ADMIN)).json()
    await finished(client, log["id"])
    response = await client.post(f"/api/job_logs/{log['id']}/cancel", headers=ADMIN)
    assert response.status == 409
    body = await response.json()
    assert body["error"] == f"job log {log['name']} is not running"
    assert body["job_log"]["status"] == "success"
    assert (await client.post("/api/job_logs/12345/cancel", headers=ADMIN)).status == 404


async def test_force_passes_the_shrink_guard(make_client: MakeClient, database_path: Any) -> None:
    client = await make_client()
    first = await (await client.post("/api/job_logs", headers=ADMIN)).json()
    assert await finished(client, first["id"]) is Status.success
    bad = await client.post("/api/job_logs?force=maybe", headers=ADMIN)
    assert bad.status == 400
    assert (await bad.json())["field"] == "force"
    forced = await (await client.post("/api/job_logs?force=true", headers=ADMIN)).json()
    assert await finished(client, forced["id"]) is Status.success


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example"}, 403),
        ({"Host": "rebind.attacker.test:8080"}, 403),
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "null"}, 403),
    ],
)
async def test_cross_site_and_rebinding_posts_are_refused(
    make_client: MakeClient, headers: dict[str, str], status: int
) -> None:
    client = await make_client()
    response = await client.post("/api/job_logs", headers={**ADMIN, **headers})
    assert response.status == status
    assert "error" in await response.json()
    assert (await (await client.get("/api/job_logs/stats")).json())["total"] == 0


async def test_same_origin_and_public_host_are_accepted(make_client: MakeClient) -> None:
    client = await make_client(public_url="https://joblog.plant.example")
    host = f"127.0.0.1:{client.port}"
    same = await client.post("/api/job_logs", headers={**ADMIN, "Origin": f"http://{host}"})
    assert same.status == 202
    await finished(client, (await same.json())["id"])
    public = await client.post(
        "/api/job_logs",
        headers={
            **ADMIN,
            "Host": "joblog.plant.example",
            "Origin": "https://joblog.plant.example",
        },
    )
    assert public.status == 202


async def test_the_admin_token(make_client: MakeClient) -> None:
    client = await make_client(admin_token=SecretStr(TOKEN))
    missing = await client.post("/api/job_logs")
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = await client.post("/api/job_logs", headers={"Authorization": "Bearer nope-nope"})
    assert wrong.status == 403
    right = await client.post("/api/job_logs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status == 202
    assert TOKEN not in await wrong.text()


async def test_cancels_racing_starts_leave_every_run_closed(
    make_client: MakeClient, database_path: Any
) -> None:
    """A cancel can land at any point of a run, even its first or last statement."""
    client = await make_client()
    names = []
    for attempt in range(40):
        started = await client.post("/api/job_logs", headers=ADMIN)
        if started.status != 202:
            await asyncio.sleep(0.01)
            continue
        log = await started.json()
        names.append(log["name"])
        await asyncio.sleep(0.002 * (attempt % 5))
        cancelled = await client.post(f"/api/job_logs/{log['name']}/cancel", headers=ADMIN)
        assert cancelled.status in (202, 409)
    db = client.app[appkeys.DATABASE]
    for name in names:
        log = await job_log_with_details(db, name)
        assert log.status.finished
        messages = [d.message for d in log.details]
        assert sum(m.startswith("ERROR") for m in messages) <= 1
        if log.status is Status.success:
            assert messages[-1].startswith("Job completed successfully")
    last = await (await client.post("/api/job_logs", headers=ADMIN)).json()
    assert "name" in last, last
    assert await finished(client, last["id"]) is Status.success
