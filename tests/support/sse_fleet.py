"""Hundreds of event-stream clients spread over several nodes, and the check that each received
exactly the lines of the table from where it started.

Each :class:`StreamClient` follows ``GET /api/events`` on its home node with ``Last-Event-ID``
set to where it starts. When its stream ends, breaks, is refused or stays silent longer than
a ping would allow (a hung node), it resumes on another node, chosen at random as a load
balancer would, with ``Last-Event-ID`` set to the last id it received — as a browser's
EventSource would, only sooner. Every detail id it receives
must be greater than the one before; :meth:`Fleet.check` compares what each received with the
table's ids (read by the caller, as psql would) — nothing lost, nothing twice, nothing else.

Each live detail's delivery time (its ``created_at``, stamped by the writing node just before
its commit, to its arrival here) is kept with the node that delivered it, for the figures.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import random
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp

from .sse import SSEDecoder, SSEEvent
from .wait import wait_for_async

RECONNECT_PAUSE = (0.1, 0.5)
"""A client waits between these many seconds (at random) before it resumes elsewhere."""


@dataclass
class Deliveries:
    """Live details as the clients received them: the line and its run, its ``created_at``
    (``time.time()`` seconds), the delivering node, the seconds from then to its arrival."""

    detail_ids: array[int] = field(default_factory=lambda: array("q"))
    job_log_ids: array[int] = field(default_factory=lambda: array("q"))
    created: array[float] = field(default_factory=lambda: array("d"))
    nodes: array[int] = field(default_factory=lambda: array("b"))
    seconds: array[float] = field(default_factory=lambda: array("d"))

    def add(
        self, detail_id: int, job_log_id: int, created: float, node: int, seconds: float
    ) -> None:
        """One delivery."""
        self.detail_ids.append(detail_id)
        self.job_log_ids.append(job_log_id)
        self.created.append(created)
        self.nodes.append(node)
        self.seconds.append(seconds)


class StreamClient:
    """One client of the event stream, moving from node to node."""

    def __init__(
        self,
        number: int,
        urls: Sequence[str],
        *,
        after: int,
        headers: dict[str, str],
        silence: float,
        deliveries: Deliveries,
    ) -> None:
        self.number = number
        self.urls = list(urls)
        self.start = after
        """The id it started after: it must receive every later one."""
        self.last = after
        self.received: list[int] = []
        self.disorder: list[tuple[int, int]] = []
        """(the last id, the id that came after it) for each id not above the last."""
        self.mislabelled: list[str] = []
        self.connects: list[int] = []
        """The node of each stream it opened, in order."""
        self.problems: Counter[str] = Counter()
        self.connected = asyncio.Event()
        self._headers = headers
        self._silence = silence
        self._deliveries = deliveries
        self._random = random.Random(number)

    async def run(self, session: aiohttp.ClientSession) -> None:
        """Follow the stream for ever, resuming on the next node whenever it stops."""
        node = self.number % len(self.urls)
        while True:
            try:
                await self._follow(session, node)
            except TimeoutError:
                self.problems["silent"] += 1
            except (aiohttp.ClientError, OSError) as exc:
                self.problems[type(exc).__name__] += 1
            # Elsewhere, as a load balancer would send it: any other node.
            node = self._random.choice([n for n in range(len(self.urls)) if n != node])
            await asyncio.sleep(self._random.uniform(*RECONNECT_PAUSE))

    async def _follow(self, session: aiohttp.ClientSession, node: int) -> None:
        headers = {**self._headers, "Last-Event-ID": str(self.last)}
        async with session.get(f"{self.urls[node]}/api/events", headers=headers) as response:
            if response.status != 200:
                self.problems[f"HTTP {response.status}"] += 1
                return
            opened = time.time()
            self.connects.append(node)
            self.connected.set()
            decoder = SSEDecoder()
            while True:
                async with asyncio.timeout(self._silence):
                    chunk = await response.content.readany()
                if not chunk:
                    self.problems["ended"] += 1
                    return
                arrived = time.time()
                for item in decoder.feed(chunk):
                    if isinstance(item, SSEEvent) and item.type == "detail":
                        self._take(item, node, opened, arrived)

    def _take(self, event: SSEEvent, node: int, opened: float, arrived: float) -> None:
        data = json.loads(event.data)
        detail_id = int(data["id"])
        if event.id != str(detail_id):
            self.mislabelled.append(f"id line {event.id!r} for detail {detail_id}")
        if detail_id <= self.last:
            self.disorder.append((self.last, detail_id))
        else:
            self.last = detail_id
        self.received.append(detail_id)
        created = datetime.fromisoformat(data["created_at"]).timestamp()
        if created >= opened:  # live, not replayed
            job_log_id = int(data["job_log_id"])
            self._deliveries.add(detail_id, job_log_id, created, node, arrived - created)


@dataclass(frozen=True)
class FleetReport:
    """What the clients received against the table."""

    clients: int
    received: int
    lost: int
    duplicated: int
    out_of_order: int
    foreign: int
    """Ids received that the table does not hold."""
    streams: int
    """Streams opened, first ones and resumptions."""
    problems: Counter[str]
    examples: list[str]
    """The first clients that did not receive exactly the table's ids, and how."""

    @property
    def exact(self) -> bool:
        """Every client received exactly the table's ids, in order."""
        return not self.examples


class Fleet:
    """``starts[i]`` is where client ``i`` starts; client ``i`` begins on node ``i % nodes``."""

    def __init__(
        self,
        urls: Sequence[str],
        token: str,
        starts: Sequence[int],
        *,
        silence: float = 5.0,
    ) -> None:
        self.deliveries = Deliveries()
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        self.clients = [
            StreamClient(
                number,
                urls,
                after=after,
                headers=headers,
                silence=silence,
                deliveries=self.deliveries,
            )
            for number, after in enumerate(starts)
        ]
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, within: float = 30.0) -> None:
        """Start every client; return once each has an open stream."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, connect=3),
        )
        self._tasks = [
            asyncio.create_task(client.run(self._session), name=f"sse-client-{client.number}")
            for client in self.clients
        ]
        await wait_for_async(
            lambda: all(client.connected.is_set() for client in self.clients),
            lambda: f"{sum(not c.connected.is_set() for c in self.clients)} clients not connected",
            within=within,
        )

    async def caught_up(self, last_id: int, within: float = 30.0) -> None:
        """Return once every client has received ``last_id`` (or a later id)."""
        await wait_for_async(
            lambda: all(client.last >= last_id for client in self.clients),
            lambda: (
                f"clients behind {last_id}: "
                f"{[(c.number, c.last) for c in self.clients if c.last < last_id][:10]}"
            ),
            within=within,
            every=0.1,
        )

    def check(self, table_ids: Sequence[int], upto: int) -> FleetReport:
        """Each client against the table's ids (ascending) after its start, up to ``upto``."""
        table = set(table_ids)
        examples: list[str] = []
        lost = duplicated = out_of_order = foreign = received = 0
        problems: Counter[str] = Counter()
        for client in self.clients:
            got = [i for i in client.received if i <= upto]
            begin = bisect.bisect_right(table_ids, client.start)
            end = bisect.bisect_right(table_ids, upto)
            expected = list(table_ids[begin:end])
            received += len(got)
            problems.update(client.problems)
            missing = len(set(expected) - set(got))
            twice = len(got) - len(set(got))
            strangers = len(set(got) - table)
            lost, duplicated, foreign = lost + missing, duplicated + twice, foreign + strangers
            out_of_order += len(client.disorder)
            if got != expected or client.mislabelled:
                examples.append(
                    f"client {client.number} (after {client.start}, nodes {client.connects}): "
                    f"{missing} lost, {twice} twice, {strangers} not in the table, "
                    f"{len(client.disorder)} out of order {client.disorder[:3]}, "
                    f"{client.mislabelled[:2]}"
                )
        return FleetReport(
            clients=len(self.clients),
            received=received,
            lost=lost,
            duplicated=duplicated,
            out_of_order=out_of_order,
            foreign=foreign,
            streams=sum(len(client.connects) for client in self.clients),
            problems=problems,
            examples=examples[:10],
        )

    async def close(self) -> None:
        """Stop every client and close their connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
