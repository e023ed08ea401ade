"""``GET /api/events``: job logs live over Server-Sent Events, resumable without loss.

Every test runs the real app factory over a real socket and reads the stream with the WHATWG
parser of ``tests.support.sse``. Changes are written through the store (or, for "another
writer", through a plain ``sqlite3`` connection) exactly as a run writes them.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from service import appkeys
from service.app import create_app
from service.settings import Settings
from service.store import (
    JobLog,
    JobLogDetail,
    Status,
    add_detail,
    create_job_log,
    fit_message,
    set_status,
)
from service.store import history as store_history
from tests.support import joblogs
from tests.support.api import ADMIN_TOKEN
from tests.support.clock import FakeClock
from tests.support.sse import SSEComment, SSEEvent, SSEItem, SSEReader, parse

Client = TestClient[web.Request, web.Application]
MAX_ID = 2**63 - 1
DETAIL_KEYS = {"id", "job_log_id", "message", "created_at", "job_log_name"}
LOG_KEYS = {"id", "name", "status", "created_at", "updated_at", "duration_seconds"}


class Start(Protocol):
    """Starts the real app with the test settings changed by ``changes``; its client."""

    def __call__(self, **changes: Any) -> Awaitable[Client]: ...


@pytest.fixture
def start(aiohttp_client: AiohttpClient, settings: Settings, clock: FakeClock) -> Start:
    """A client for ``create_app(settings.model_copy(update=changes))``."""

    async def start(**changes: Any) -> Client:
        return await aiohttp_client(create_app(settings.model_copy(update=changes), clock=clock))

    return start


# --- helpers -------------------------------------------------------------------------------


async def get_events(
    client: Client,
    *,
    job_log: str | None = None,
    header: str | None = None,
    query: str | None = None,
) -> ClientResponse:
    """``GET /api/events``; ``header`` is sent as Last-Event-ID, ``query`` as ?last_event_id=."""
    params = {"job_log": job_log} if job_log is not None else {}
    if query is not None:
        params["last_event_id"] = query
    headers = {"Last-Event-ID": header} if header is not None else {}
    return await client.get("/api/events", params=params, headers=headers)


async def open_stream(
    client: Client,
    *,
    job_log: str | None = None,
    header: str | None = None,
    query: str | None = None,
) -> tuple[ClientResponse, SSEReader]:
    """An open 200 event stream and its reader."""
    response = await get_events(client, job_log=job_log, header=header, query=query)
    assert response.status == 200, await response.text()
    return response, SSEReader(response)


async def wait_until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Poll ``condition`` every 10 ms; fail naming ``what`` if it is not met ``within`` s."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not the case after {within} s")
        await asyncio.sleep(0.01)


async def subscribers_settle(client: Client, count: int = 0) -> None:
    """Wait until exactly ``count`` streams are subscribed to the hub."""
    hub = client.app[appkeys.HUB]
    await wait_until(
        lambda: hub.subscriber_count == count,
        f"subscriber count {hub.subscriber_count} back to {count}",
    )


def detail_json(detail: JobLogDetail, log: JobLog) -> dict[str, Any]:
    """What a detail event's data must be, built from the store's record."""
    return {
        "id": detail.id,
        "job_log_id": log.id,
        "message": detail.message,
        "created_at": detail.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "job_log_name": log.name,
    }


def status_of(event: SSEEvent) -> tuple[int, str]:
    """A job_log or end event's log id and status name."""
    data = event.json()
    return data["id"], data["status"]


def detail_ids(events: Iterable[SSEEvent]) -> list[int]:
    """The ids of the detail events, in the order received (checked against their id line)."""
    ids = []
    for event in events:
        if event.type == "detail":
            data = event.json()
            assert event.id == str(data["id"]), event
            ids.append(data["id"])
    return ids


def is_type(kind: str) -> Callable[[SSEItem], bool]:
    """A predicate for :meth:`SSEReader.read_until`: an event of type ``kind``."""
    return lambda item: isinstance(item, SSEEvent) and item.type == kind


def detail_numbered(detail_id: int) -> Callable[[SSEItem], bool]:
    """A predicate: the detail event with id ``detail_id``."""
    return lambda item: (
        isinstance(item, SSEEvent) and item.type == "detail" and item.id == str(detail_id)
    )


def job_log_matching(job_log_id: int, status: str) -> Callable[[SSEItem], bool]:
    """A predicate: the job_log event announcing ``status`` for the log ``job_log_id``."""
    return lambda item: (
        isinstance(item, SSEEvent)
        and item.type == "job_log"
        and status_of(item) == (job_log_id, status)
    )


@dataclass
class History:
    """Three runs written interleaved: A succeeded, B failed, C is still processing."""

    logs: dict[str, JobLog]
    details: list[tuple[JobLogDetail, JobLog]] = field(default_factory=list)

    def of(self, key: str) -> list[JobLogDetail]:
        """The details of one run, in id order."""
        return [d for d, log in self.details if log.id == self.logs[key].id]

    @property
    def positions(self) -> list[int | None]:
        """Every last id a client can hold: none, 0, each detail id, one past the end."""
        return [None, 0, *(d.id for d, _ in self.details), self.details[-1][0].id + 100]


async def write_history(client: Client, clock: FakeClock, per_log: int = 5) -> History:
    """Runs A, B and C with ``per_log`` details each, interleaved A, B, C, A, B, C, …; returns
    once the hub has published all of it (a witness stream saw B end)."""
    db = client.app[appkeys.DATABASE]
    witness, witness_reader = await open_stream(client)
    logs: dict[str, JobLog] = {}
    for key in "ABC":
        logs[key] = await create_job_log(db)
        clock.advance(1)
    for key in "ABC":
        logs[key] = await set_status(db, logs[key].id, Status.processing)
    history = History(logs)
    for round_ in range(per_log):
        for key in "ABC":
            clock.advance(0.1)
            detail = await add_detail(db, logs[key].id, f"run {key} line {round_}")
            history.details.append((detail, logs[key]))
    clock.advance(1)
    logs["A"] = await set_status(db, logs["A"].id, Status.success)
    logs["B"] = await set_status(db, logs["B"].id, Status.error)
    seen = await witness_reader.read_until(job_log_matching(logs["B"].id, "error"))
    assert detail_ids(seen) == [d.id for d, _ in history.details]
    witness.close()
    await subscribers_settle(client)
    return history


def check_all_logs_resume(events: list[SSEEvent], history: History, after: int | None) -> None:
    """The all-logs stream resumed after ``after``: every later detail once, in order, each
    finished log's final state after its last replayed detail, the open log announced."""
    where = f"resuming after {after}"
    expected = [(d, log) for d, log in history.details if after is not None and d.id > after]
    assert [e.type for e in events if e.type not in ("detail", "job_log")] == [], where
    assert detail_ids(events) == [d.id for d, _ in expected], where
    assert [e.json() for e in events if e.type == "detail"] == [
        detail_json(d, log) for d, log in expected
    ], where
    announced: dict[int, list[str]] = {}
    for position, event in enumerate(events):
        if event.type == "job_log":
            assert event.id is None, where
            assert set(event.json()) == LOG_KEYS, where
            log_id, status = status_of(event)
            announced.setdefault(log_id, []).append(status)
            last = max(
                (
                    i
                    for i, e in enumerate(events)
                    if e.type == "detail" and e.json()["job_log_id"] == log_id
                ),
                default=-1,
            )
            if status in ("success", "error"):
                assert position > last, f"{where}: log {log_id} ended before its last detail"
    wanted = {history.logs["C"].id: ["processing"]}
    for key, status in (("A", "success"), ("B", "error")):
        if any(log.id == history.logs[key].id for _, log in expected):
            wanted[history.logs[key].id] = [status]
    assert announced == wanted, where


def check_followed_resume(
    events: list[SSEEvent], history: History, key: str, after: int | None, *, ended: bool
) -> None:
    """``?job_log=`` resumed after ``after``: the log's later details once, in order, its
    state once (after the last detail when finished), then ``end`` when finished."""
    where = f"following {key} after {after}"
    log = history.logs[key]
    expected = [d for d in history.of(key) if d.id > (after or 0)]
    assert detail_ids(events) == [d.id for d in expected], where
    assert [e.json() for e in events if e.type == "detail"] == [
        detail_json(d, log) for d in expected
    ], where
    kinds = [e.type for e in events if e.type != "detail"]
    status = log.status.name
    if ended:
        assert kinds == ["job_log", "end"], where
        assert events[-1].type == "end", where
        assert events[-2].type == "job_log", where
        assert events[-1].json() == events[-2].json(), where
        assert status_of(events[-1]) == (log.id, status), where
        assert events[-1].id is None, where
    else:
        assert kinds == ["job_log"], where
    state = next(e for e in events if e.type == "job_log")
    assert status_of(state) == (log.id, status), where
    assert state.id is None, where


class RawStream:
    """An event stream on a bare socket with a small receive buffer, read only when told."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = b""

    async def read_to_end(self, within: float) -> bool:
        """Read until the server closes (True) or ``within`` s pass (False)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(within):
                while chunk := await loop.sock_recv(self.sock, 65536):
                    self.received += chunk
        except TimeoutError:
            return False
        except ConnectionResetError:
            pass
        return True

    def events(self) -> tuple[list[SSEEvent], list[str]]:
        """The complete events received, and the body's comment lines (after the headers)."""
        head, _, body = self.received.partition(b"\r\n\r\n")
        assert head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")), head[:200]
        events, _ = parse(body)
        comments = [line for line in body.decode(errors="replace").split("\n") if line[:1] == ":"]
        return events, comments


@asynccontextmanager
async def raw_stream(port: int, rcvbuf: int = 4096) -> AsyncIterator[RawStream]:
    """``GET /api/events`` over HTTP/1.0 (an unchunked body) on a socket whose receive buffer
    is ``rcvbuf`` bytes; nothing is read until the test says so. Closed with a reset, so a
    server still writing to it lets go at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        # HTTP/1.0 is what a proxy speaks, never a local client: it proves itself.
        request = (
            f"GET /api/events HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        yield RawStream(sock)
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


# --- the SSE parser itself ------------------------------------------------------------------


class Chunks:
    """A byte stream that hands out prepared chunks, then ``b""``."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def readany(self) -> bytes:
        """The next chunk."""
        return self.chunks.pop(0) if self.chunks else b""


async def test_parser_follows_the_whatwg_rules() -> None:
    reader = SSEReader(
        Chunks(
            b"\xef\xbb\xbfretry: 1500\n\n: hello\r",
            b'\nid: 7\revent: detail\r\ndata: {"a":\r',
            b"\ndata:  two\n\n",
            b"data\nid\n\nid: bad\x00id\ndata: x\n\nevent: lonely\n\nretry: 1x\n",
            b"data: half",
        )
    )
    first = await reader.next_item()
    assert first == SSEComment(" hello")
    assert reader.retry == 1500
    event = await reader.next_event()
    assert event == SSEEvent(type="detail", data='{"a":\n two', id="7", last_event_id="7")
    empty = await reader.next_event()
    assert empty == SSEEvent(type="message", data="", id="", last_event_id="")
    nul = await reader.next_event()
    assert nul == SSEEvent(type="message", data="x", id="bad\x00id", last_event_id="")
    assert await reader.next_event() is None  # "lonely" has no data; "half" never ended
    assert reader.eof
    assert reader.retry == 1500


async def test_parser_reads_until_a_predicate_or_the_end() -> None:
    raw = b"data: 1\n\n: ping\n\nevent: end\ndata: 2\n\ndata: 3\n\n"
    reader = SSEReader(Chunks(raw[:5], raw[5:17], raw[17:]))
    assert [e.data for e in await reader.read_to_ping()] == ["1"]
    assert [e.data for e in await reader.read_until(is_type("end"))] == ["2"]
    assert [e.data for e in await reader.read_to_end()] == ["3"]
    assert reader.eof
    assert [c.is_ping for c in reader.comments] == [True]


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


async def test_idle_stream_sends_ping_comments(start: Start) -> None:
    client = await start(sse_ping_seconds=0.2)
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


async def test_header_wins_over_query(start: Start, clock: FakeClock) -> None:
    client = await start(sse_ping_seconds=0.1)
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


async def test_one_more_than_max_clients_gets_503_with_retry_after(start: Start) -> None:
    client = await start(sse_max_clients=2)
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


async def test_all_logs_stream_resumes_from_every_position(start: Start, clock: FakeClock) -> None:
    client = await start(sse_ping_seconds=0.1)
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
    start: Start, clock: FakeClock, key: str
) -> None:
    client = await start(sse_ping_seconds=0.1)
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
    start: Start, settings: Settings, clock: FakeClock
) -> None:
    first = await start()
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

    second = await start()
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

BIG = 4000


@dataclass
class Healthy:
    """A client that reads everything as it comes, noting when each detail arrived."""

    reader: SSEReader
    arrived: dict[int, float] = field(default_factory=dict)
    events: list[SSEEvent] = field(default_factory=list)
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, job_log_id: int) -> None:
        """Read until the log's final state."""
        while True:
            event = await self.reader.next_event()
            assert event is not None, "the healthy stream ended"
            self.events.append(event)
            if event.type == "detail":
                self.arrived[int(event.json()["id"])] = time.monotonic()
                self.progress.set()
            if event.type == "job_log" and event.json()["status"] == "success":
                assert status_of(event)[0] == job_log_id
                return

    async def wait_for(self, detail_id: int) -> None:
        """Return once the detail ``detail_id`` has arrived."""
        while detail_id not in self.arrived:
            self.progress.clear()
            await self.progress.wait()


async def write_until_cut_off(
    client: Client, log: JobLog, healthy: Healthy, *, then: int = 20
) -> tuple[list[int], dict[int, float]]:
    """Write big details, each once the healthy client has it, until the hub has cut a
    subscriber off, then ``then`` more; the ids written and when each was committed."""
    db = client.app[appkeys.DATABASE]
    hub = client.app[appkeys.HUB]
    ids: list[int] = []
    committed: dict[int, float] = {}
    extra = None
    while extra is None or extra > 0:
        assert len(ids) < 6000, "the stalled subscriber was never cut off"
        detail = await add_detail(db, log.id, f"{len(ids):05d} " + "x" * BIG)
        committed[detail.id] = time.monotonic()
        ids.append(detail.id)
        await healthy.wait_for(detail.id)
        if extra is None and hub.subscriber_count < 2:
            extra = then
        elif extra is not None:
            extra -= 1
    return ids, committed


def connections(client: Client) -> int:
    """The HTTP connections the server holds open."""
    return len(client.server.handler.connections)


@dataclass
class Overflowed:
    """A run written while one client read everything and a raw one fell behind."""

    client: Client
    log: JobLog
    ids: list[int]
    latency: float
    """The longest the healthy client waited for a detail, in seconds."""
    raw: RawStream


@asynccontextmanager
async def overflowing(start: Start, **changes: Any) -> AsyncIterator[Overflowed]:
    """Start the app with ``changes``; open a healthy stream and a raw one that reads nothing;
    write big details until the hub cuts a subscriber off, then 20 more, then end the run."""
    client = await start(**changes)
    assert client.port is not None
    db = client.app[appkeys.DATABASE]
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    response, reader = await open_stream(client)
    async with raw_stream(client.port) as raw:
        await subscribers_settle(client, 2)
        healthy = Healthy(reader)
        reading = asyncio.create_task(healthy.run(log.id))
        ids, committed = await write_until_cut_off(client, log, healthy)
        final = await set_status(db, log.id, Status.success)
        await asyncio.wait_for(reading, 10)
        assert detail_ids(healthy.events) == ids
        assert healthy.events[-1].type == "job_log"
        latency = max(healthy.arrived[i] - committed[i] for i in ids)
        yield Overflowed(client, final, ids, latency, raw)
    response.close()
    await subscribers_settle(client)


async def catch_up(run: Overflowed) -> None:
    """The raw client reconnects with the last id it read and gets the rest, exactly once."""
    got, _ = run.raw.events()
    first_ids = detail_ids(got)
    assert first_ids, "the cut-off client received nothing at all"
    assert first_ids == run.ids[: len(first_ids)]
    assert len(first_ids) < len(run.ids), "the client was not cut off"
    resumed, reader = await open_stream(run.client, header=got[-1].last_event_id)
    rest = await reader.read_until(job_log_matching(run.log.id, "success"))
    resumed.close()
    assert first_ids + detail_ids(rest) == run.ids


async def test_a_stalled_reader_is_cut_off_without_slowing_others(start: Start) -> None:
    stall = 1.0
    async with overflowing(start, sse_buffer_events=20, sse_stall_seconds=stall) as run:
        assert run.latency < stall, f"the healthy client waited {run.latency:.2f} s"
        # The stalled client never read; once the server has let go, it reads what reached it.
        await wait_until(lambda: connections(run.client) == 1, "the stalled connection closed")
        assert await run.raw.read_to_end(within=5), "the stalled stream was not closed"
        await catch_up(run)


async def test_an_overflowed_reader_is_cut_off_before_the_stall_timeout(start: Start) -> None:
    """The backlog limit alone disconnects: SSE_STALL_SECONDS is long here."""
    async with overflowing(start, sse_buffer_events=20, sse_stall_seconds=30) as run:
        await wait_until(
            lambda: connections(run.client) == 1,
            "the overflowed subscriber's connection closed (it stays until SSE_STALL_SECONDS)",
            within=3,
        )
        assert await run.raw.read_to_end(within=5)
        await catch_up(run)


async def test_a_slow_reader_that_overflowed_is_ended_and_catches_up(start: Start) -> None:
    """A reader pauses (shorter than the stall timeout) while its backlog overflows, then
    reads again: its stream must end, so it reconnects and catches up — not stay open on
    pings while the events it lost never come."""
    changes = {"sse_buffer_events": 20, "sse_stall_seconds": 30, "sse_ping_seconds": 0.2}
    async with overflowing(start, **changes) as run:
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
        pytest.param("load_job_log", 1, True, id="as-the-stream-reads-the-log"),
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
    being set up (at the ``call``-th use of ``history.<function>``, before or after it reads):
    the follower still gets every detail, then the final state, then ``end``."""
    db = client.app[appkeys.DATABASE]
    witness, witness_reader = await open_stream(client)
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    written = [await add_detail(db, log.id, f"line {n}") for n in range(3)]
    await witness_reader.read_until(detail_numbered(written[-1].id))  # the hub has it all
    witness.close()
    real = getattr(store_history, function)
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

    monkeypatch.setattr(store_history, function, hooked)
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
