"""The cluster test's own pieces, each shown to catch what it is there to catch: the client
fleet's exact-ids check against a real PostgreSQL table (stand-in nodes serving it, one that
goes away, one that hangs, one that drops or repeats a line), the watchers (two open runs, a
partial total, a database restart), the node's process control, and the run-history checks."""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web

from service.tasks import cancel_and_wait
from tests.support.cluster import NODE_LOST, RUN_LOCK, SUCCEEDED, Node, Probe
from tests.support.cluster_runs import Run, Slot, overlaps, slot_problems, stale_problems
from tests.support.cluster_watch import Watch
from tests.support.delivery_probe import DeliveryProbe
from tests.support.figures import Figures, percentile
from tests.support.postgres import SUPERUSER, PostgresServer, connected, postgres_server
from tests.support.sse_fleet import Fleet
from tests.support.system import free_port
from tests.support.wait import wait_for_async

pytestmark = pytest.mark.integration

TOKEN = "harness-view-token-0123456789"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the module's tests."""
    with postgres_server() as running:
        yield running


def superuser_url(server: PostgresServer) -> str:
    """The superuser's URL for the server's own database."""
    return f"postgresql://{SUPERUSER}@{server.host}:{server.port}/{server.database}"


class StandIn:
    """A node's event stream of the table ``lines``, as the service serves it: the lines after
    ``Last-Event-ID`` in id order, then new ones as they come, and a ping; with faults on
    demand: it goes away (every stream ends), hangs (sends nothing), or drops or repeats lines.
    One session follows the table for all its streams, as a node's hub does.
    """

    def __init__(
        self, url: str, *, drop: frozenset[int] = frozenset(), twice: frozenset[int] = frozenset()
    ) -> None:
        self.url = url
        self.drop = drop
        self.twice = twice
        self.gone = False
        self.hung = False
        self.port = free_port()
        self.ids: list[int] = []
        self.events: list[bytes] = []
        """Every line read so far (``ids``), in id order, as its event."""
        self._runner: web.AppRunner | None = None
        self._follow: asyncio.Task[None] | None = None

    @property
    def base(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Follow the table and listen."""
        self._follow = asyncio.create_task(self._read())
        app = web.Application()
        app.router.add_get("/api/events", self._events)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        """End every stream and stop listening."""
        self.gone = True
        if self._runner is not None:
            await self._runner.cleanup()
        await cancel_and_wait(self._follow)

    async def _read(self) -> None:
        async with connected(self.url) as conn:
            while True:
                last = self.ids[-1] if self.ids else 0
                cursor = await conn.execute(
                    "SELECT id, job_log_id, message, created_at FROM lines WHERE id > %s "
                    "ORDER BY id",
                    (last,),
                )
                for line_id, job_log_id, message, created in await cursor.fetchall():
                    data = {
                        "id": line_id,
                        "job_log_id": job_log_id,
                        "message": message,
                        "created_at": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    }
                    text = f"id: {line_id}\nevent: detail\ndata: {json.dumps(data)}\n\n"
                    self.ids.append(int(line_id))
                    self.events.append(text.encode())
                await asyncio.sleep(0.01)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        last = int(request.headers.get("Last-Event-ID", "0"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        with suppress(ConnectionResetError):  # the client went away
            await self._serve(response, last)
        return response

    async def _serve(self, response: web.StreamResponse, last: int) -> None:
        pinged = time.monotonic()
        while not self.gone:
            if not self.hung:
                sent = bisect.bisect_right(self.ids, last)
                for line_id, event in zip(self.ids[sent:], self.events[sent:], strict=True):
                    if line_id not in self.drop:
                        await response.write(event)
                    if line_id in self.twice:
                        await response.write(event)
                    last = line_id
                if time.monotonic() - pinged > 0.3:
                    await response.write(b": ping\n\n")
                    pinged = time.monotonic()
            await asyncio.sleep(0.02)


@asynccontextmanager
async def lines_table(server: PostgresServer) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A fresh table ``lines`` (the shape of job_log_details) and a session writing to it."""
    async with connected(superuser_url(server)) as conn:
        await conn.execute("DROP TABLE IF EXISTS lines")
        await conn.execute(
            "CREATE TABLE lines (id bigserial PRIMARY KEY, job_log_id bigint NOT NULL, "
            "message text NOT NULL, created_at timestamp NOT NULL "
            "DEFAULT (clock_timestamp() AT TIME ZONE 'UTC'))"
        )
        yield conn


async def write_lines(conn: psycopg.AsyncConnection[Any], count: int, every: float) -> None:
    """``count`` lines, one committed every ``every`` seconds."""
    for number in range(count):
        await conn.execute(
            "INSERT INTO lines (job_log_id, message) VALUES (%s, %s)",
            (1 + number // 20, f"line {number}"),
        )
        await asyncio.sleep(every)


async def table_ids(conn: psycopg.AsyncConnection[Any]) -> list[int]:
    cursor = await conn.execute("SELECT id FROM lines ORDER BY id")
    return [int(row[0]) for row in await cursor.fetchall()]


async def test_every_client_gets_exactly_the_table_when_its_node_goes_away_or_hangs(
    postgres: PostgresServer,
) -> None:
    async with lines_table(postgres) as conn:
        await write_lines(conn, 30, 0)
        nodes = [StandIn(superuser_url(postgres)) for _ in range(3)]
        for node in nodes:
            await node.start()
        starts = [0 if i % 3 == 0 else 15 if i % 3 == 1 else 30 for i in range(60)]
        fleet = Fleet([node.base for node in nodes], TOKEN, starts, silence=1.0)
        try:
            await fleet.start()
            writing = asyncio.create_task(write_lines(conn, 150, 0.01))
            await asyncio.sleep(0.5)
            await nodes[0].close()
            await asyncio.sleep(0.5)
            nodes[1].hung = True
            await writing
            ids = await table_ids(conn)
            await fleet.caught_up(ids[-1], within=15)
            report = fleet.check(ids, ids[-1])
        finally:
            await fleet.close()
            for node in nodes:
                await node.close()
    assert report.exact, report.examples
    assert (report.lost, report.duplicated, report.out_of_order, report.foreign) == (0, 0, 0, 0)
    assert report.received == sum(len([i for i in ids if i > start]) for start in starts)
    assert report.problems["silent"] > 0, "clients of the hung node moved on"
    assert report.streams > 60, "clients of the closed node resumed elsewhere"
    homes = [client.connects[0] for client in fleet.clients]
    assert sorted(set(homes)) == [0, 1, 2]
    assert len(fleet.deliveries.seconds) > 0
    assert percentile(list(fleet.deliveries.seconds), 0.5) < 1.0


async def test_the_delivery_probe_times_each_line_once_on_each_node(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    async with lines_table(postgres) as conn:
        await write_lines(conn, 10, 0)
        nodes = [StandIn(superuser_url(postgres)) for _ in range(2)]
        for node in nodes:
            await node.start()
        try:
            timer = DeliveryProbe(tmp_path / "out.txt", TOKEN, 5, [n.base for n in nodes])
            with timer:
                await asyncio.sleep(1.0)  # the probe's streams open
                await write_lines(conn, 20, 0.01)
                await wait_for_async(lambda: len(timer.received()) >= 50, "50 deliveries")
        finally:
            for node in nodes:
                await node.close()
    received = timer.received()
    assert sorted((r.node, r.detail_id) for r in received) == [
        (node, line) for node in (0, 1) for line in range(6, 31)
    ]
    live = [r.seconds for r in received if r.detail_id > 10]
    assert min(live) > 0
    assert max(live) < 1.0


async def test_the_exact_ids_check_sees_a_lost_a_repeated_and_a_foreign_line(
    postgres: PostgresServer,
) -> None:
    async with lines_table(postgres) as conn:
        await write_lines(conn, 20, 0)
        nodes = [
            StandIn(superuser_url(postgres), drop=frozenset({5})),
            StandIn(superuser_url(postgres), twice=frozenset({7})),
        ]
        for node in nodes:
            await node.start()
        fleet = Fleet([node.base for node in nodes], TOKEN, [0, 0, 0, 0], silence=1.0)
        try:
            await fleet.start()
            ids = await table_ids(conn)
            await fleet.caught_up(ids[-1], within=10)
            report = fleet.check([i for i in ids if i != 9], ids[-1])
        finally:
            await fleet.close()
            for node in nodes:
                await node.close()
    assert not report.exact
    assert report.lost == 2  # line 5, on node 0's two clients
    assert report.duplicated == 2  # line 7 twice on node 1's two clients
    assert report.out_of_order == 2
    assert report.foreign == 4  # line 9, which the table (as checked) does not hold
    assert len(report.examples) == 4


async def test_the_watch_sees_two_open_runs_a_partial_total_and_rides_out_a_restart() -> None:
    with postgres_server() as server:
        url = superuser_url(server)
        async with connected(url) as conn:
            await conn.execute(
                "CREATE TABLE job_logs (id bigserial PRIMARY KEY, status integer NOT NULL);"
                "CREATE TABLE sync_lease (id integer PRIMARY KEY, epoch bigint, node text);"
                "INSERT INTO sync_lease VALUES (1, 0, NULL);"
                "CREATE TABLE open_orders (n integer)"
            )
            watch = Watch(url, {5})
            watch.start()
            try:
                await asyncio.sleep(0.2)
                await conn.execute("INSERT INTO open_orders SELECT generate_series(1, 5)")
                await conn.execute("INSERT INTO job_logs (status) VALUES (1)")
                async with connected(url) as holder:
                    await holder.execute("SELECT pg_advisory_lock(%s, %s)", RUN_LOCK)
                    await holder.execute("UPDATE sync_lease SET epoch = 1, node = 'node-2'")
                    await asyncio.sleep(0.3)
                assert watch.bad_totals == []
                assert watch.open_max == 1
                held_at = time.time()
                await conn.execute("INSERT INTO job_logs (status) VALUES (0)")
                await conn.execute("DELETE FROM open_orders")  # a swap that is not atomic
                await asyncio.sleep(0.3)
                await conn.execute("INSERT INTO open_orders SELECT generate_series(1, 5)")
                await asyncio.to_thread(server.stop)
                await asyncio.to_thread(server.start)
                before = watch.runs.samples
                await wait_for_async(lambda: watch.runs.samples > before + 5, "polling again")
            finally:
                await watch.stop()
    assert watch.open_max == 2
    assert watch.too_many_open
    assert [total for _, total in watch.bad_totals] == [0] * len(watch.bad_totals)
    assert watch.bad_totals
    assert watch.totals[5] > 0
    assert watch.totals["absent"] == 0
    assert [(seen.epoch, seen.node, seen.held) for seen in watch.leases][:3] == [
        (0, None, False),
        (1, "node-2", True),
        (1, "node-2", False),
    ]
    assert watch.node_at(held_at - 0.35) == "node-2"
    assert watch.runs.longest_down > 0
    assert watch.orders.longest_down > 0
    assert watch.lags


async def test_the_probe_reconnects_after_a_restart() -> None:
    with postgres_server() as server:
        probe = Probe(superuser_url(server))
        try:
            assert await probe.value("SELECT 1") == 1
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            assert await probe.value("SELECT 2") == 2
            assert await probe.sync_node() is None
        except psycopg.errors.UndefinedTable:
            pass  # sync_lease is the service's: only the reconnect is this test's
        finally:
            await probe.close()


def test_a_node_is_killed_stopped_resumed_and_restarted_on_its_own_port(tmp_path: Path) -> None:
    node = Node("node-1", tmp_path / "node-1", free_port(), {"SYNC_ON_START": "false"})
    with node:
        node.wait_up()
        port = node.port
        node.pause()
        assert not node.ready()
        node.resume()
        assert node.ready()
        node.kill()
        assert not node.running
        node.start()
        node.wait_up()
        assert node.port == port
        assert node.ready()
        code, _ = node.stop()
        assert code == 0
    logs = node.logs()
    assert "--- start 1 ---" in logs
    assert "--- start 2 ---" in logs


def run(number: int, created: float, updated: float, *lines: tuple[float, str]) -> Run:
    return Run(number, f"run-{number}", 2, created, updated, list(lines))


def test_the_run_history_checks_fail_on_what_they_forbid() -> None:
    first = run(1, 100.0, 110.0)
    overlapping = run(2, 105.0, 120.0)
    lost = run(3, 130.0, 140.0, (130.1, "Batch 1/4 imported"), (140.0, NODE_LOST))
    replacement = run(4, 140.2, 150.0)
    assert overlaps([first, overlapping]) == [
        "run-1 (100.000..110.000) overlaps run-2 (from 105.000)"
    ]
    assert overlaps([first, lost, replacement]) == []
    slots = [Slot(100.0, "node-1", 100.0), Slot(130.0, "node-2", 130.0)]
    assert slot_problems([first, lost, replacement], slots) == []
    twice = run(5, 100.5, 100.6)
    stray = run(6, 160.0, 161.0)
    assert slot_problems([first, twice, stray], slots) == [
        "run run-6 was started by no claimed slot",
        "slot 100 started 2 runs: ['run-1', 'run-5']",
    ]
    assert stale_problems([lost], [3]) == []
    claimed = run(7, 170.0, 180.0, (175.0, NODE_LOST), (179.0, f"{SUCCEEDED} - Total: 1"))
    assert stale_problems([claimed], [7]) != []
    assert stale_problems([first], [1]) != []


def test_figures_mark_failed_checks(tmp_path: Path) -> None:
    figures = Figures("Round")
    figures.add("runs", "12")
    figures.check("failover", "1.2 s", "≤ 3 s", True)
    figures.check("lost lines", "1", "0", False)
    assert [row.name for row in figures.failed] == ["lost lines"]
    figures.write(tmp_path / "figures.md")
    text = (tmp_path / "figures.md").read_text()
    assert "| lost lines | 1 | 0 | **FAILED** |" in text
    assert "| failover | 1.2 s | ≤ 3 s | ok |" in text
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
