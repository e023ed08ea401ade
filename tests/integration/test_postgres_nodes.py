"""PostgreSQL mode through the real app factory: two nodes on one real PostgreSQL 15 — a run
started on one streams on the other, a stream resumes on the other node by Last-Event-ID, a run
left open by a lost node is closed and replaced, slots run once, and the nodes say who runs."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient

from service import appkeys
from service.app import create_app
from service.scheduler import NODE_LOST
from service.settings import Settings
from service.store import InvalidTransition, RunEnded
from service.wire import Status
from tests.support.api import ADMIN, Client, MakeClient
from tests.support.event_streams import detail_ids, job_log_matching, open_stream
from tests.support.postgres import PostgresServer
from tests.support.wait import wait_for_async

pytestmark = pytest.mark.integration

_names = itertools.count(1)


@pytest.fixture
def database_url(postgres: PostgresServer) -> str:
    """A new database for the test's nodes."""
    return postgres.store_database(f"nodes_{next(_names)}")


async def node(make_client: MakeClient, url: str, name: str, **changes: Any) -> Client:
    """A node of the cluster: the app as the server builds it, on PostgreSQL."""
    chosen: dict[str, Any] = {"demo_delay_seconds": 0.05, "sync_batch_size": 200} | changes
    return await make_client(database_url=SecretStr(url), node_name=name, **chosen)


def table_ids(postgres: PostgresServer, url: str) -> list[int]:
    database = url.rsplit("/", 1)[1]
    out = postgres.psql("SELECT id FROM job_log_details ORDER BY id", database=database)
    return [int(line) for line in out.split()]


async def test_a_run_on_one_node_streams_on_the_other_and_resumes_there(
    make_client: MakeClient,
    database_url: str,
    postgres: PostgresServer,
) -> None:
    a = await node(make_client, database_url, "node-a")
    b = await node(make_client, database_url, "node-b")
    _, on_b = await open_stream(b)
    started = await a.post("/api/job_logs", headers=ADMIN)
    assert started.status == 202
    log = await started.json()
    events = await on_b.read_until(job_log_matching(log["id"], "success"))
    seen = detail_ids(events)
    assert seen == sorted(set(seen)), "ids strictly increase"
    assert seen == table_ids(postgres, database_url), "every line once, in the table's order"
    # A client that had read half reconnects to the other node and gets exactly the rest.
    half = seen[len(seen) // 2]
    _, on_a = await open_stream(a, header=str(half))
    rest = await on_a.read_until(job_log_matching(log["id"], "success"))
    assert detail_ids(rest) == [i for i in seen if i > half]


async def test_a_run_left_open_by_a_lost_node_is_closed_and_replaced(
    make_client: MakeClient,
    database_url: str,
) -> None:
    a = await node(make_client, database_url, "node-a")
    store = a.app[appkeys.STORE]
    # A node that died mid-run: its log open, its lease gone with its session.
    lost = await store.create_job_log()
    await store.set_status(lost.id, Status.processing)
    await store.add_detail(lost.id, "Importing records in batches of 500...")
    b = await node(make_client, database_url, "node-b")

    async def closed_and_replacement() -> tuple[Any, Any] | None:
        closed = await store.job_log(lost.id)
        if not closed.status.finished:
            return None
        latest = await store.latest_job_log()
        if latest is None or latest.id == lost.id or not latest.status.finished:
            return None
        return closed, latest

    closed, replacement = await wait_for_async(
        closed_and_replacement, "the lost run closed and a replacement run ended", within=20
    )
    assert closed.status is Status.error
    assert (await store.last_details(lost.id, 1))[0].message == NODE_LOST
    assert replacement.status is Status.success
    del b


async def test_each_slot_runs_once_across_nodes(
    aiohttp_client: AiohttpClient,
    settings: Settings,
    database_url: str,
    postgres: PostgresServer,
) -> None:
    """Three nodes on the real clock, a slot every second: each claimed once, run once."""
    nodes = [
        await aiohttp_client(
            create_app(
                settings.model_copy(
                    update={
                        "database_url": SecretStr(database_url),
                        "node_name": f"node-{n}",
                        "demo_delay_seconds": 0.0,
                        "sync_interval_seconds": 1,
                    }
                )
            )
        )
        for n in range(3)
    ]
    await asyncio.sleep(4.5)
    database = database_url.rsplit("/", 1)[1]
    slots = postgres.psql("SELECT count(*), count(DISTINCT slot) FROM sync_ticks", database)
    claimed, distinct = (int(v) for v in slots.split("|"))
    assert claimed == distinct >= 3
    runs = postgres.psql("SELECT count(*) FROM job_logs", database)
    assert int(runs) <= claimed, "no run without its slot (a busy slot is skipped)"
    open_now = postgres.psql("SELECT count(*) FROM job_logs WHERE status IN (0, 1)", database)
    assert int(open_now) <= 1, "never two runs at once"
    del nodes


async def test_the_nodes_say_which_runs_the_sync_and_label_their_metrics(
    make_client: MakeClient,
    database_url: str,
) -> None:
    a = await node(make_client, database_url, "node-a", demo_delay_seconds=0.3)
    b = await node(make_client, database_url, "node-b")
    started = await a.post("/api/job_logs", headers=ADMIN)
    assert started.status == 202
    status = await (await b.get("/api/status", headers=ADMIN)).json()
    assert status["node"] == "node-b"
    assert status["sync_node"] == "node-a"
    refused = await b.post(f"/api/job_logs/{(await started.json())['name']}/cancel", headers=ADMIN)
    assert refused.status == 409
    assert "is run by another node" in (await refused.json())["error"]
    ready = await b.get("/readyz", headers=ADMIN)
    assert ready.status == 200
    metrics = await (await a.get("/metrics", headers=ADMIN)).text()
    assert 'joblog_sse_subscribers{node="node-a"}' in metrics
    assert "postgresql://" not in metrics
    await a.app[appkeys.SCHEDULER].cancel("Cancelled by request", wait=5)


async def test_a_run_that_has_ended_takes_no_more_lines(
    make_client: MakeClient, database_url: str
) -> None:
    """Fencing: a runner whose run another node closed as lost can append nothing to it."""
    a = await node(make_client, database_url, "node-a")
    store = a.app[appkeys.STORE]
    log = await store.create_job_log()
    await store.set_status(log.id, Status.processing)
    closed = await store.close_unfinished(NODE_LOST)
    assert [c.id for c in closed] == [log.id]
    with pytest.raises(RunEnded):
        await store.add_detail(log.id, "Batch 7/8 imported (500 records)")
    with pytest.raises(InvalidTransition):
        await store.set_status(log.id, Status.success)
    assert [d.message for d in await store.last_details(log.id, 5)] == [NODE_LOST]


async def test_the_database_password_appears_nowhere(
    make_client: MakeClient,
    database_url: str,
    postgres: PostgresServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not in a log line (sessions cut under a run included), nor in any answer a viewer, the
    metrics or nobody gets."""
    caplog.set_level(logging.DEBUG)
    password = urlsplit(database_url).password
    assert password
    a = await node(make_client, database_url, "node-a", demo_delay_seconds=0.2)
    started = await a.post("/api/job_logs", headers=ADMIN)
    assert started.status == 202
    user = urlsplit(database_url).username
    postgres.terminate_backends(user)  # the pool, LISTEN and lease sessions, mid-run
    answers = []
    for path in ("/readyz", "/api/status", "/metrics", "/api/openapi.json", "/api/job_logs"):
        for headers in ({}, ADMIN):
            response = await a.get(path, headers=headers)
            answers.append(await response.text())
    await wait_for_async(lambda: _ended(a), "the cut run ended, one way or the other", within=20)
    for text in [caplog.text, *answers]:
        assert password not in text
        assert database_url not in text


async def _ended(client: Client) -> bool:
    latest = await client.app[appkeys.STORE].latest_job_log()
    return latest is not None and latest.status.finished
