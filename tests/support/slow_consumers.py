"""Slow consumers of an in-process app's event stream: one client that reads everything as it
comes (timing each line), one raw socket that reads nothing, a run written in big lines until
the service cuts the slow one off — and the cut-off client catching up afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from service import appkeys
from service.store import add_detail, create_job_log, set_status
from service.wire import JobLog, Status

from .api import Client, MakeClient
from .event_streams import (
    RawStream,
    detail_ids,
    job_log_matching,
    open_stream,
    raw_stream,
    status_of,
    subscribers_settle,
)
from .sse import SSEEvent, SSEReader

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
async def overflowing(make_client: MakeClient, **changes: Any) -> AsyncIterator[Overflowed]:
    """Start the app with ``changes``; open a healthy stream and a raw one that reads nothing;
    write big details until the hub cuts a subscriber off, then 20 more, then end the run."""
    client = await make_client(**changes)
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
