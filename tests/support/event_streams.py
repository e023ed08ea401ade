"""An in-process app's event stream as a test reads it: opening ``GET /api/events`` (also on a
bare socket that reads nothing until told), predicates for :meth:`SSEReader.read_until`, the
ids a stream carried, and a history of interleaved runs with the checks that every position of
it resumes exactly.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientResponse

from service import appkeys
from service.store import add_detail, create_job_log, set_status
from service.wire import JobLog, JobLogDetail, Status, iso_z

from .api import ADMIN_TOKEN, Client
from .clock import FakeClock
from .sse import SSEEvent, SSEItem, SSEReader, parse
from .wait import wait_for_async

LOG_KEYS = {"id", "name", "status", "created_at", "updated_at", "duration_seconds"}


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


async def subscribers_settle(client: Client, count: int = 0) -> None:
    """Wait until exactly ``count`` streams are subscribed to the hub."""
    hub = client.app[appkeys.HUB]
    await wait_for_async(
        lambda: hub.subscriber_count == count,
        lambda: f"subscriber count {hub.subscriber_count} back to {count}",
        within=5,
        every=0.01,
    )


def detail_json(detail: JobLogDetail, log: JobLog) -> dict[str, Any]:
    """What a detail event's data must be, built from the store's record."""
    return {
        "id": detail.id,
        "job_log_id": log.id,
        "message": detail.message,
        "created_at": iso_z(detail.created_at),
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
