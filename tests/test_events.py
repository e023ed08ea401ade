"""``GET /api/events``: job logs live over Server-Sent Events, resumable without loss.

Every test runs the real app factory over a real socket and reads the stream with the WHATWG
parser of ``tests.support.sse`` (the harness is tests/support/event_streams.py and, for slow
readers, tests/support/slow_consumers.py). Changes are written through the store (or, for
"another writer", through a plain ``sqlite3`` connection) exactly as a run writes them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse

from service import appkeys
from service.settings import Settings
from service.store import add_detail, create_job_log, fit_message, set_status
from service.wire import Status
from tests.support import joblogs
from tests.support.api import Client, MakeClient
from tests.support.clock import FakeClock
from tests.support.event_streams import (
    check_all_logs_resume,
    check_followed_resume,
    detail_ids,
    detail_json,
    detail_numbered,
    get_events,
    job_log_matching,
    open_stream,
    status_of,
    subscribers_settle,
    write_history,
)
from tests.support.slow_consumers import catch_up, connections, overflowing
from tests.support.sse import SSEEvent, SSEReader
from tests.support.wait import wait_for_async

MAX_ID = 2**63 - 1
DETAIL_KEYS = {"id", "job_log_id", "message", "created_at", "job_log_name"}


# --- headers, ping, errors -------------------------------------------------------------------


async def test_stream_headers_and_retry_line(client: Client) -> None:
    response = await client.get("/api/events", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert response.status == 200
    assert response.content_type == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in response.headers
    reader = SSEReader(response)
    assert await reader.read_line() == "retry: 2000"
    assert await reader.read_line() == ""
    assert client.app[appkeys.HUB].subscriber_count == 1
    response.close()
    await subscribers_settle(client)


async def test_idle_stream_sends_ping_comments(make_client: MakeClient) -> None:
    client = await make_client(sse_ping_seconds=0.2)
    response, reader = await open_stream(client)
    began = time.monotonic()
    for _ in range(3):
        assert await reader.read_to_ping() == []
    elapsed = time.monotonic() - began
    assert [c.text for c in reader.comments] == [" ping"] * 3
    assert reader.retry == 2000
    assert 0.5 <= elapsed < 5, elapsed
    response.close()
    await subscribers_settle(client)


@pytest.mark.parametrize("value", ["x", "-1", str(MAX_ID + 1), "1.5", ""])
@pytest.mark.parametrize("where", ["header", "query"])
async def test_invalid_last_event_id_is_400_naming_the_field(
    client: Client, value: str, where: str
) -> None:
    for job_log in (None, "1"):
        response = await get_events(client, job_log=job_log, **{where: value})
        assert response.status == 400, (where, value, job_log)
        assert response.content_type == "application/json"
        body = await response.json()
        assert body["field"] == "last_event_id"
        assert body["error"]
    assert client.app[appkeys.HUB].subscriber_count == 0


@pytest.mark.parametrize("value", ["0", str(MAX_ID)])
async def test_last_event_id_bounds_are_accepted(client: Client, value: str) -> None:
    response, reader = await open_stream(client, header=value)
    assert await reader.read_line() == "retry: 2000"
    response.close()
    await subscribers_settle(client)


@pytest.mark.parametrize("ref", ["20991231235959", "20251215143022_9", "424242", "0", "latest"])
async def test_unknown_job_log_is_404(client: Client, ref: str) -> None:
    response = await get_events(client, job_log=ref)
    assert response.status == 404
    assert response.content_type == "application/json"
    assert "error" in await response.json()
    assert client.app[appkeys.HUB].subscriber_count == 0


async def test_header_wins_over_query(make_client: MakeClient, clock: FakeClock) -> None:
    client = await make_client(sse_ping_seconds=0.1)
    db = client.app[appkeys.DATABASE]
    log = await create_job_log(db)
    written = [await add_detail(db, log.id, f"line {n}") for n in range(5)]
    await set_status(db, log.id, Status.error)
    ids = [d.id for d in written]

    response, reader = await open_stream(client, job_log=log.name, header=str(ids[2]), query="x")
    assert detail_ids(await reader.read_to_end()) == ids[3:]
    response, reader = await open_stream(client, header=str(ids[3]), query=str(ids[0]))
    assert detail_ids(await reader.read_to_ping()) == ids[4:]
    response.close()
    bad = await get_events(client, header="x", query=str(ids[0]))
    assert bad.status == 400
    assert (await bad.json())["field"] == "last_event_id"
    assert (
        await get_events(client, job_log=log.name, header=str(ids[-1]), query="0")
    ).status == 204
    await subscribers_settle(client)


async def test_one_more_than_max_clients_gets_503_with_retry_after(make_client: MakeClient) -> None:
    client = await make_client(sse_max_clients=2)
    first, first_reader = await open_stream(client)
    second, second_reader = await open_stream(client)
    assert await first_reader.read_line() == "retry: 2000"
    assert await second_reader.read_line() == "retry: 2000"
    refused = await get_events(client)
    assert refused.status == 503
    assert refused.headers["Retry-After"].isdigit()
    assert "error" in await refused.json()
    first.close()
    await subscribers_settle(client, 1)
    third, third_reader = await open_stream(client)
    assert await third_reader.read_line() == "retry: 2000"
    second.close()
    third.close()
    await subscribers_settle(client)


async def test_a_client_that_left_frees_its_slot_long_before_the_next_ping(
    make_client: MakeClient,
) -> None:
    # Nothing is written to an idle stream for 300 s: only noticing the closed connection
    # itself can free the one slot in time.
    client = await make_client(sse_ping_seconds=300, sse_max_clients=1)
    first, reader = await open_stream(client)
    assert await reader.read_line() == "retry: 2000"
    first.close()
    await subscribers_settle(client)
    second, reader = await open_stream(client)
    assert await reader.read_line() == "retry: 2000"
    second.close()
    await subscribers_settle(client)


# --- live, replay, end, 204 ------------------------------------------------------------------


async def test_a_run_arrives_live_in_order(client: Client, clock: FakeClock) -> None:
    db = client.app[appkeys.DATABASE]
    response, reader = await open_stream(client)
    assert await reader.read_line() == "retry: 2000"

    log = await create_job_log(db)
    pending = await reader.next_event()
    assert pending is not None
    assert pending.type == "job_log"
    assert pending.id is None
    assert pending.json() == {
        "id": log.id,
        "name": "20251215143022",
        "status": "pending",
        "created_at": "2025-12-15T14:30:22.250000Z",
        "updated_at": "2025-12-15T14:30:22.250000Z",
        "duration_seconds": None,
    }
    clock.advance(1)
    await set_status(db, log.id, Status.processing)
    processing = await reader.next_event()
    assert processing is not None
    assert processing.type == "job_log"
    assert processing.json()["status"] == "processing"
    assert processing.json()["updated_at"] == "2025-12-15T14:30:23.250000Z"

    written = []
    for n in range(3):
        clock.advance(0.5)
        written.append(await add_detail(db, log.id, f"step {n}"))
    clock.advance(0.5)
    await set_status(db, log.id, Status.success)
    events = await reader.read_until(job_log_matching(log.id, "success"))
    assert [e.type for e in events] == ["detail", "detail", "detail", "job_log"]
    assert [e.id for e in events] == [str(d.id) for d in written] + [None]
    assert [e.json() for e in events[:3]] == [detail_json(d, log) for d in written]
    assert events[0].json() == {
        "id": written[0].id,
        "job_log_id": log.id,
        "message": "step 0",
        "created_at": "2025-12-15T14:30:23.750000Z",
        "job_log_name": "20251215143022",
    }
    assert set(events[0].json()) == DETAIL_KEYS
    assert events[-1].json() == {
        "id": log.id,
        "name": "20251215143022",
        "status": "success",
        "created_at": "2025-12-15T14:30:22.250000Z",
        "updated_at": "2025-12-15T14:30:25.250000Z",
        "duration_seconds": 3.0,
    }
    assert reader.last_event_id == str(written[-1].id)
    response.close()
    await subscribers_settle(client)


async def test_following_a_log_replays_it_from_the_start_then_ends(
    client: Client, clock: FakeClock
) -> None:
    db = client.app[appkeys.DATABASE]
    witness, witness_reader = await open_stream(client)
    other = await create_job_log(db)
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    written = [await add_detail(db, log.id, "first"), await add_detail(db, log.id, "second")]
    last = await add_detail(db, other.id, "not followed")
    await witness_reader.read_until(detail_numbered(last.id))  # the hub has published it all
    witness.close()

    response, reader = await open_stream(client, job_log=str(log.id))
    replay = await reader.read_until(detail_numbered(written[-1].id))
    assert [e.type for e in replay] == ["job_log", "detail", "detail"]
    assert status_of(replay[0]) == (log.id, "processing")
    assert detail_ids(replay) == [d.id for d in written]

    clock.advance(1)
    written.append(await add_detail(db, log.id, "third"))
    await add_detail(db, other.id, "still not followed")
    clock.advance(1)
    final = await set_status(db, log.id, Status.success)
    rest = await reader.read_to_end()
    assert reader.eof
    assert [e.type for e in rest] == ["detail", "job_log", "end"]
    assert detail_ids(rest) == [written[-1].id]
    assert rest[1].json() == rest[2].json()
    assert rest[2].json()["status"] == "success"
    assert (
        rest[2].json()["duration_seconds"] == (final.updated_at - final.created_at).total_seconds()
    )
    response.close()

    # A finished log replays in full by name: details, its final state, end, then EOF.
    response, reader = await open_stream(client, job_log=log.name)
    events = await reader.read_to_end()
    assert reader.eof
    assert [e.type for e in events] == ["detail"] * 3 + ["job_log", "end"]
    assert detail_ids(events) == [d.id for d in written]
    assert [e.json()["message"] for e in events[:3]] == ["first", "second", "third"]
    assert status_of(events[-1]) == (log.id, "success")
    await subscribers_settle(client)


async def test_reconnecting_to_a_finished_log_with_its_last_id_is_204(client: Client) -> None:
    db = client.app[appkeys.DATABASE]
    witness, witness_reader = await open_stream(client)
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    written = [await add_detail(db, log.id, f"line {n}") for n in range(3)]
    await set_status(db, log.id, Status.success)
    later = await create_job_log(db)
    beyond = await add_detail(db, later.id, "a later run")
    await witness_reader.read_until(detail_numbered(beyond.id))  # the hub has published it all
    witness.close()

    for ref in (log.name, str(log.id)):
        for header, query in ((str(written[-1].id), None), (None, str(written[-1].id))):
            response = await get_events(client, job_log=ref, header=header, query=query)
            assert response.status == 204, (ref, header, query)
            assert await response.read() == b""
        assert (await get_events(client, job_log=ref, header=str(beyond.id))).status == 204

    response, reader = await open_stream(client, job_log=log.name, header=str(written[-2].id))
    events = await reader.read_to_end()
    assert [e.type for e in events] == ["detail", "job_log", "end"]
    assert detail_ids(events) == [written[-1].id]
    # A finished log without details: with any last id the client has it all.
    empty = await create_job_log(db)
    await set_status(db, empty.id, Status.error)
    assert (await get_events(client, job_log=empty.name, header="0")).status == 204
    await subscribers_settle(client)


# --- resume ------------------------------------------------------------------------------


async def test_all_logs_stream_resumes_from_every_position(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client(sse_ping_seconds=0.1)
    history = await write_history(client, clock)
    for n, after in enumerate(history.positions):
        last = None if after is None else str(after)
        header, query = (last, None) if n % 2 else (None, last)
        response, reader = await open_stream(client, header=header, query=query)
        events = await reader.read_to_ping()
        response.close()
        check_all_logs_resume(events, history, after)
    await subscribers_settle(client)


@pytest.mark.parametrize("key", ["A", "B", "C"])
async def test_following_a_log_resumes_from_every_position(
    make_client: MakeClient, clock: FakeClock, key: str
) -> None:
    client = await make_client(sse_ping_seconds=0.1)
    history = await write_history(client, clock)
    log = history.logs[key]
    last_of_log = history.of(key)[-1].id
    for n, after in enumerate(history.positions):
        last = None if after is None else str(after)
        header, query = (last, None) if n % 2 else (None, last)
        ref = log.name if n % 3 else str(log.id)
        response = await get_events(client, job_log=ref, header=header, query=query)
        if log.status.finished and after is not None and after >= last_of_log:
            assert response.status == 204, after
            continue
        assert response.status == 200, after
        reader = SSEReader(response)
        if log.status.finished:
            events = await reader.read_to_end()
            assert reader.eof
        else:
            events = await reader.read_to_ping()
            response.close()
        check_followed_resume(events, history, key, after, ended=log.status.finished)
    await subscribers_settle(client)


async def test_resume_across_a_restart_on_the_same_database(
    make_client: MakeClient, settings: Settings, clock: FakeClock
) -> None:
    first = await make_client()
    db = first.app[appkeys.DATABASE]
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    response, reader = await open_stream(first, header="0")
    written = [await add_detail(db, log.id, f"before restart {n}") for n in range(5)]
    seen = await reader.read_until(detail_numbered(written[2].id))
    assert detail_ids(seen) == [d.id for d in written[:3]]
    assert reader.last_event_id == str(written[2].id)
    response.close()
    await first.close()

    # While the service is down, another process finishes the run.
    with closing(sqlite3.connect(settings.database_path, timeout=10)) as conn:
        conn.execute(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (?, 'written while down', '2025-12-15 14:31:00', '2025-12-15 14:31:00')",
            (log.id,),
        )
        conn.execute(
            "UPDATE job_logs SET status = 3, updated_at = '2025-12-15 14:31:00.500000' "
            "WHERE id = ?",
            (log.id,),
        )
        conn.commit()
        (down_id,) = conn.execute("SELECT max(id) FROM job_log_details").fetchone()

    second = await make_client()
    response, reader = await open_stream(second, header=reader.last_event_id)
    events = await reader.read_until(job_log_matching(log.id, "success"))
    assert detail_ids(events) == [written[3].id, written[4].id, down_id]
    assert events[-1].type == "job_log"
    db = second.app[appkeys.DATABASE]
    clock.advance(60)
    later = await create_job_log(db)
    live = await add_detail(db, later.id, "after restart")
    more = await reader.read_until(
        lambda item: isinstance(item, SSEEvent) and item.type == "detail"
    )
    assert detail_ids(more) == [live.id]
    assert [e.type for e in more] == ["job_log", "detail"]
    assert detail_ids(events + more) == [*(d.id for d in written[3:]), down_id, live.id]
    response.close()
    await subscribers_settle(second)


# --- content, other writers -----------------------------------------------------------------

HOSTILE = [
    "two\nlines",
    "carriage\rreturn",
    "crlf\r\nevent: end\r\ndata: {}\r\n\r\n",
    "\n\nid: 999999\nevent: end\ndata: injected\n\n",
    "nul\x00byte",
    "<script>alert('x')</script></div>",
    "quotes \"double\" 'single' `back` \\ backslash \\u0000",
    "emoji 🎉 and non-BMP 𝄞 𐍈 😀",
    "line separators \u2028 \u2029 and \u0085 next-line",
    "lone surrogate \ud800 here",
    ": not a comment",
    "   leading and trailing spaces   ",
    "x" * 6000,
]


async def test_hostile_messages_arrive_exactly_as_stored(
    client: Client, settings: Settings
) -> None:
    db = client.app[appkeys.DATABASE]
    response, reader = await open_stream(client)
    log = await create_job_log(db)
    for message in HOSTILE:
        await add_detail(db, log.id, message)
    await set_status(db, log.id, Status.error)
    live = await reader.read_until(job_log_matching(log.id, "error"))
    response.close()
    stored = joblogs.details(settings.database_path, log.name)
    assert stored == [fit_message(m) for m in HOSTILE]
    assert "nul\x00byte" in stored
    response, replay_reader = await open_stream(client, job_log=log.name)
    replay = await replay_reader.read_to_end()
    for events in (live, replay):
        details = [e for e in events if e.type == "detail"]
        assert [e.json()["message"] for e in details] == stored
        for event in details:
            assert "\n" not in event.data  # one data line
            assert "\r" not in event.data
    assert [e.type for e in replay][-2:] == ["job_log", "end"]
    await subscribers_settle(client)


def other_writer(database: Path, sql: str, params: tuple[object, ...] = ()) -> int:
    """Run one statement in its own connection and transaction, as another process would."""
    with closing(sqlite3.connect(database, timeout=10)) as conn:
        cursor = conn.execute(sql, params)
        conn.commit()
        return int(cursor.lastrowid or 0)


async def test_changes_from_another_writer_arrive_within_a_second(
    client: Client, settings: Settings
) -> None:
    path = settings.database_path
    response, reader = await open_stream(client)
    assert await reader.read_line() == "retry: 2000"

    async def committed(sql: str, params: tuple[object, ...] = ()) -> tuple[int, float]:
        row_id = await asyncio.to_thread(other_writer, path, sql, params)
        return row_id, time.monotonic()

    async def next_within_a_second(stream: SSEReader, committed_at: float) -> SSEEvent:
        async with asyncio.timeout(1.0):
            event = await stream.next_event()
        assert event is not None
        assert time.monotonic() - committed_at < 1.0
        return event

    log_id, at = await committed(
        "INSERT INTO job_logs (name, status, created_at, updated_at) "
        "VALUES ('20251215143100', 1, '2025-12-15 14:31:00', '2025-12-15 14:31:00')"
    )
    created = await next_within_a_second(reader, at)
    assert created.type == "job_log"
    assert created.json() == {
        "id": log_id,
        "name": "20251215143100",
        "status": "processing",
        "created_at": "2025-12-15T14:31:00.000000Z",
        "updated_at": "2025-12-15T14:31:00.000000Z",
        "duration_seconds": None,
    }
    follower, follower_reader = await open_stream(client, job_log="20251215143100")
    first = await follower_reader.next_event()
    assert first is not None
    assert status_of(first) == (log_id, "processing")

    insert = (
        "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
        "VALUES (?, ?, ?, ?)"
    )
    for message, stamp, shown in (
        ("from Rails", "2025-12-15 14:31:00.500000", "2025-12-15T14:31:00.500000Z"),
        ("whole second", "2025-12-15 14:31:01", "2025-12-15T14:31:01.000000Z"),
    ):
        detail_id, at = await committed(insert, (log_id, message, stamp, stamp))
        for stream in (reader, follower_reader):
            event = await next_within_a_second(stream, at)
            assert event.type == "detail"
            assert event.id == str(detail_id)
            assert event.json() == {
                "id": detail_id,
                "job_log_id": log_id,
                "message": message,
                "created_at": shown,
                "job_log_name": "20251215143100",
            }
    _, at = await committed(
        "UPDATE job_logs SET status = 3, updated_at = '2025-12-15 14:31:02.250000' WHERE id = ?",
        (log_id,),
    )
    for stream in (reader, follower_reader):
        event = await next_within_a_second(stream, at)
        assert event.type == "job_log"
        assert event.json()["status"] == "success"
        assert event.json()["duration_seconds"] == 2.25
    end = await next_within_a_second(follower_reader, at)
    assert end.type == "end"
    assert await follower_reader.read_to_end() == []
    assert follower_reader.eof
    response.close()
    follower.close()
    await subscribers_settle(client)


# --- slow consumers -------------------------------------------------------------------------
async def test_a_stalled_reader_is_cut_off_without_slowing_others(make_client: MakeClient) -> None:
    stall = 1.0
    async with overflowing(make_client, sse_buffer_events=20, sse_stall_seconds=stall) as run:
        assert run.latency < stall, f"the healthy client waited {run.latency:.2f} s"
        # The stalled client never read; once the server has let go, it reads what reached it.
        await wait_for_async(
            lambda: connections(run.client) == 1, "the stalled connection closed", within=5
        )
        assert await run.raw.read_to_end(within=5), "the stalled stream was not closed"
        await catch_up(run)


async def test_an_overflowed_reader_is_cut_off_before_the_stall_timeout(
    make_client: MakeClient,
) -> None:
    """The backlog limit alone disconnects: SSE_STALL_SECONDS is long here."""
    async with overflowing(make_client, sse_buffer_events=20, sse_stall_seconds=30) as run:
        await wait_for_async(
            lambda: connections(run.client) == 1,
            "the overflowed subscriber's connection closed (it stays until SSE_STALL_SECONDS)",
            within=3,
        )
        assert await run.raw.read_to_end(within=5)
        await catch_up(run)


async def test_a_slow_reader_that_overflowed_is_ended_and_catches_up(
    make_client: MakeClient,
) -> None:
    """A reader pauses (shorter than the stall timeout) while its backlog overflows, then
    reads again: its stream must end, so it reconnects and catches up — not stay open on
    pings while the events it lost never come."""
    changes = {"sse_buffer_events": 20, "sse_stall_seconds": 30, "sse_ping_seconds": 0.2}
    async with overflowing(make_client, **changes) as run:
        ended = await run.raw.read_to_end(within=5)
        got, comments = run.raw.events()
        assert ended, (
            f"the overflowed stream stayed open: it received {len(detail_ids(got))} of "
            f"{len(run.ids)} details, then only {len(comments)} ping comments"
        )
        await catch_up(run)


# --- many streams, races ----------------------------------------------------------------------


async def test_a_thousand_streams_open_receive_and_close(client: Client) -> None:
    hub = client.app[appkeys.HUB]
    url = client.make_url("/api/events")
    gate = asyncio.Semaphore(100)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def open_one() -> tuple[ClientResponse, SSEReader]:
            async with gate:
                stream = await session.get(url)
                assert stream.status == 200
                stream_reader = SSEReader(stream)
                assert await stream_reader.read_line() == "retry: 2000"
                return stream, stream_reader

        streams = await asyncio.gather(*(open_one() for _ in range(1000)))
        assert hub.subscriber_count == 1000
        log = await create_job_log(client.app[appkeys.DATABASE])
        events = await asyncio.gather(*(r.next_event() for _, r in streams))
        assert all(e is not None and status_of(e) == (log.id, "pending") for e in events)
        for stream, _ in streams:
            stream.close()
        await subscribers_settle(client)


@pytest.mark.parametrize(
    ("function", "call", "before"),
    [
        # (the first look-up is the handler finding the log named in the query)
        pytest.param("job_log", 2, True, id="as-the-stream-reads-the-log"),
        pytest.param("details_after", 1, False, id="right-after-the-replay-read"),
    ],
)
async def test_a_run_that_ends_while_a_follower_connects_loses_nothing(
    client: Client,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    function: str,
    call: int,
    before: bool,
) -> None:
    """Another writer appends a last detail and ends the run while a ``?job_log=`` stream is
    being set up (at the ``call``-th use of the store's ``<function>`` by the stream, before or
    after it reads):
    the follower still gets every detail, then the final state, then ``end``."""
    db = client.app[appkeys.DATABASE]
    witness, witness_reader = await open_stream(client)
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    written = [await add_detail(db, log.id, f"line {n}") for n in range(3)]
    await witness_reader.read_until(detail_numbered(written[-1].id))  # the hub has it all
    witness.close()
    store = client.app[appkeys.STORE]
    real = getattr(store, function)
    calls = 0

    async def finish() -> None:
        written.append(await add_detail(db, log.id, "the last line"))
        clock.advance(1)
        await set_status(db, log.id, Status.success)

    async def hooked(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == call and before:
            await finish()
        result = await real(*args, **kwargs)
        if calls == call and not before:
            await finish()
        return result

    monkeypatch.setattr(store, function, hooked)
    response, reader = await open_stream(client, job_log=log.name)
    events = await reader.read_to_end()
    assert calls >= call, "the race was not exercised"
    assert reader.eof
    assert detail_ids(events) == [d.id for d in written]
    kinds = [e.type for e in events]
    assert kinds[-3:] == ["detail", "job_log", "end"], kinds
    assert status_of(events[-2]) == (log.id, "success"), [e.data for e in events]
    assert kinds.count("end") == 1
    response.close()
    await subscribers_settle(client)
