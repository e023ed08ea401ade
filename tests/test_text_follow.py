"""``GET /api/job_logs/{ref}.txt?follow=true`` and ``latest.txt?follow=true``: a run's lines as
plain text while they are written, each once and in order, ending when the run ends."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from aiohttp import ClientResponse

from service import appkeys
from service.http.text_follow import text_line
from service.store import Database, add_detail, create_job_log, set_status
from service.wire import Status
from tests.support.api import Client, MakeClient
from tests.support.wait import wait_for_async

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}  (.*)$")


def test_a_line_is_local_time_to_the_millisecond_and_one_line_whatever_the_message() -> None:
    moment = datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=UTC)
    berlin = ZoneInfo("Europe/Berlin")
    assert text_line(moment, "Connected", berlin) == "01:59:59.999  Connected\n"
    # An hour later the clocks have gone forward.
    later = datetime(2026, 3, 29, 1, 0, 0, 250_000, tzinfo=UTC)
    assert text_line(later, "a\nb\r\nc", berlin) == "03:00:00.250  a\\nb\\nc\n"


async def read_lines(response: ClientResponse, into: list[str]) -> None:
    """Every line of the body until it ends, as it comes."""
    async for raw in response.content:
        into.append(raw.decode())


def messages(lines: list[str]) -> list[str]:
    found = []
    for line in lines:
        match = LINE.match(line.rstrip("\n"))
        assert match is not None, line
        found.append(match.group(1))
    return found


async def write_run(db: Database, count: int, *, end: Status = Status.success) -> list[str]:
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    written = []
    for n in range(count):
        message = f"line {n}" if n % 5 else f"line {n}\nwith a second line"
        await add_detail(db, log.id, message)
        written.append(message.replace("\n", "\\n"))
        await asyncio.sleep(0.01)
    await set_status(db, log.id, end)
    return written


async def test_following_a_run_gives_every_line_once_in_order_and_ends_with_it(
    client: Client,
) -> None:
    db = client.app[appkeys.DATABASE]
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    before = ["Job started - SyncOpenOrdersJob"]
    await add_detail(db, log.id, before[0])
    response = await client.get(f"/api/job_logs/{log.name}.txt?follow=true")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Disposition" not in response.headers
    lines: list[str] = []
    reader = asyncio.create_task(read_lines(response, lines))
    await wait_for_async(lambda: len(lines) == 1, "the line written before")
    later = []
    for n in range(30):
        later.append(f"Batch {n + 1}/30 imported (500 records)")
        await add_detail(db, log.id, later[-1])
    await set_status(db, log.id, Status.success)
    # The response ends by itself once the run has ended.
    await asyncio.wait_for(reader, timeout=10)
    assert messages(lines) == before + later


async def test_a_finished_run_is_written_whole_and_the_response_ends(client: Client) -> None:
    db = client.app[appkeys.DATABASE]
    written = await write_run(db, 12, end=Status.error)
    log = (await (await client.get("/api/job_logs/latest")).json())["name"]
    response = await client.get(f"/api/job_logs/{log}.txt?follow=true")
    lines: list[str] = []
    await asyncio.wait_for(read_lines(response, lines), timeout=10)
    assert messages(lines) == written


async def test_latest_follows_the_next_run_when_none_is_going_on(client: Client) -> None:
    db = client.app[appkeys.DATABASE]
    await write_run(db, 3)  # an old, finished run: not followed
    response = await client.get("/api/job_logs/latest.txt?follow=true")
    assert response.status == 200
    lines: list[str] = []
    reader = asyncio.create_task(read_lines(response, lines))
    await asyncio.sleep(0.3)
    assert lines == []
    written = await write_run(db, 20)
    await asyncio.wait_for(reader, timeout=10)
    assert messages(lines) == written


async def test_latest_without_follow_is_the_newest_run_as_a_download(client: Client) -> None:
    db = client.app[appkeys.DATABASE]
    assert (await client.get("/api/job_logs/latest.txt")).status == 404
    written = await write_run(db, 4)
    response = await client.get("/api/job_logs/latest.txt")
    assert response.status == 200
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    body = await response.text()
    assert [line.split("  ", 1)[1] for line in body.splitlines()] == written


async def test_a_bad_follow_value_is_a_400_naming_the_field(client: Client) -> None:
    db = client.app[appkeys.DATABASE]
    await write_run(db, 1)
    response = await client.get("/api/job_logs/latest.txt?follow=sometimes")
    assert response.status == 400
    body = await response.json()
    assert "follow" in str(body)


async def test_a_follower_that_goes_away_is_released(make_client: MakeClient) -> None:
    client = await make_client(sse_max_clients=1)
    db = client.app[appkeys.DATABASE]
    hub = client.app[appkeys.HUB]
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    response = await client.get(f"/api/job_logs/{log.name}.txt?follow=true")
    assert response.status == 200
    await wait_for_async(lambda: hub.subscriber_count == 1, "the follower counted")
    # One slot: a second follower is refused while the first holds it.
    refused = await client.get(f"/api/job_logs/{log.name}.txt?follow=true")
    assert refused.status == 503
    response.close()
    await wait_for_async(lambda: hub.subscriber_count == 0, "the follower released")
    again = await client.get(f"/api/job_logs/{log.name}.txt?follow=true")
    assert again.status == 200
    again.close()
    await client.close()


async def test_a_stop_ends_a_follower(make_client: MakeClient) -> None:
    client = await make_client()
    db = client.app[appkeys.DATABASE]
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    response = await client.get(f"/api/job_logs/{log.name}.txt?follow=true")
    lines: list[str] = []
    reader = asyncio.create_task(read_lines(response, lines))
    await asyncio.sleep(0.2)
    client.app[appkeys.HUB].end_streams()
    await asyncio.wait_for(reader, timeout=5)
    assert lines == []
    await client.close()
