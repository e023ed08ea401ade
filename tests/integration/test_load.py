"""Load on a real server process: event-stream clients churning by the thousand, clients that
stop reading (a bare socket, a suspended curl), and 50 run requests released together.

Details are appended by the test to the server's database through ``sqlite3``, as another
process (Rails, ``run-once``) would; the server picks them up within EVENTS_POLL_SECONDS.
Memory and timings are printed as figures, never asserted, except functional deadlines.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.api import ADMIN
from tests.support.faults import (
    ERROR,
    OtherWriter,
    cpu_seconds,
    query,
    raise_open_files,
    request,
    rss_kib,
    scrape,
    wait_ended,
)
from tests.support.server import ServerProcess
from tests.support.system import require_command
from tests.support.wait import wait_for_async

pytestmark = pytest.mark.integration

_ID_LINE = re.compile(rb"^id: (\d+)$", re.MULTILINE)


async def read_ids(
    stream: aiohttp.ClientResponse, into: list[int], arrived: dict[int, float] | None = None
) -> None:
    """Append the id of every complete event of ``stream`` to ``into`` until the stream ends
    (and note when each arrived in ``arrived``).

    Cheaper than a full parse, so a thousand clients fit beside the server on two cores; an
    event counts once its blank line has arrived, as in a browser.
    """
    pending = b""
    while chunk := await stream.content.readany():
        complete, _, pending = (pending + chunk).rpartition(b"\n\n")
        ids = [int(match[1]) for match in _ID_LINE.finditer(complete)]
        into.extend(ids)
        if arrived is not None:
            now = time.monotonic()
            arrived.update((i, now) for i in ids)


@dataclass
class Appender:
    """Appends details to one job log at a steady rate from a thread, noting each commit."""

    writer: OtherWriter
    job_log_id: int
    per_second: float
    message: str = "line"
    committed: dict[int, float] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Append until told to stop."""
        interval = 1.0 / self.per_second
        due = time.monotonic()
        while not self.stop.is_set():
            detail = self.writer.append(self.job_log_id, f"{len(self.ids):06d} {self.message}")
            self.committed[detail] = time.monotonic()
            self.ids.append(detail)
            due += interval
            self.stop.wait(max(0.0, due - time.monotonic()))


@contextmanager
def appending(appender: Appender) -> Iterator[Appender]:
    """Run ``appender`` in a thread for the duration of the block."""
    thread = threading.Thread(target=appender.run, name="appender", daemon=True)
    thread.start()
    try:
        yield appender
    finally:
        appender.stop.set()
        thread.join(timeout=10)


# --- 1,000 clients churning -------------------------------------------------------------------

CLIENTS = 1000
HOLDERS = 50
CHURN_SECONDS = 60.0
DETAILS_PER_SECOND = 20
HOLD_SECONDS = (1.0, 5.0)
"""How long a churning client stays connected: ~280 connections/s. At 0.2-2 s (~700/s) the
server's one core saturates (live lines lag up to 10 s) and the 60 s need ~42,000 loopback
ports, more than net.ipv4.ip_local_port_range holds unless TIME_WAIT ports are reused."""


@dataclass
class Churn:
    """What the churning clients did."""

    connections: int = 0
    resumed: int = 0
    failures: list[str] = field(default_factory=list)


async def churner(
    session: aiohttp.ClientSession, url: str, until_time: float, seed: int, churn: Churn
) -> list[int]:
    """Connect, read for HOLD_SECONDS, disconnect, again and again, resuming like
    ``EventSource`` with ``Last-Event-ID``; every detail id received, over all connections."""
    rng = random.Random(seed)
    got: list[int] = []
    while time.monotonic() < until_time:
        headers = {"Last-Event-ID": str(got[-1])} if got else {}
        try:
            stream = await session.get(url, headers=headers)
        except aiohttp.ClientError as error:
            churn.failures.append(repr(error))
            continue
        churn.connections += 1
        churn.resumed += bool(headers)
        try:
            assert stream.status == 200, stream.status
            async with asyncio.timeout(rng.uniform(*HOLD_SECONDS)):
                await read_ids(stream, got)
            churn.failures.append("a stream ended by itself")
        except TimeoutError:
            pass
        except aiohttp.ClientError as error:
            churn.failures.append(repr(error))
        finally:
            stream.close()
    return got


async def holder(
    session: aiohttp.ClientSession, url: str, got: list[int], arrived: dict[int, float]
) -> None:
    """Stay connected, reading every event, until cancelled."""
    async with session.get(url) as stream:
        assert stream.status == 200
        await read_ids(stream, got, arrived)


@dataclass
class Memory:
    """VmRSS of the server before, at most during, and after the churn, in KiB."""

    before: int
    during: int = 0
    samples: list[int] = field(default_factory=list)

    async def sample(self, pid: int) -> None:
        """Note the server's RSS every 0.25 s until cancelled."""
        while True:
            self.samples.append(rss_kib(pid))
            self.during = max(self.samples)
            await asyncio.sleep(0.25)


async def settle(server: ServerProcess, baseline: dict[str, float]) -> dict[str, float]:
    """Scrape every 0.25 s, for up to 10 s, until no stream is open and the task count has
    been back at ``baseline``'s for 1 s on end (a task or two finishing a closed connection
    can linger a moment); that last scrape."""
    steady = 0

    def settled() -> dict[str, float] | None:
        nonlocal steady
        now = scrape(server.url)
        back = now["joblog_sse_subscribers"] == 0
        back = back and now["joblog_asyncio_tasks"] == baseline["joblog_asyncio_tasks"]
        steady = steady + 1 if back else 0
        return now if steady == 5 else None

    return await wait_for_async(
        settled, "no stream open and the tasks back at their count", within=10, every=0.25
    )


def appended_in(ids: list[int], appended: list[int]) -> bool:
    """True when ``ids`` is a run of consecutive elements of ``appended``."""
    if not ids:
        return True
    start = appended.index(ids[0]) if ids[0] in appended else -1
    return start >= 0 and appended[start : start + len(ids)] == ids


@pytest.mark.timeout(180)
async def test_1000_clients_churning_for_a_minute_leave_nothing_behind(tmp_path: Path) -> None:
    raise_open_files(2 * CLIENTS + 500)
    database = tmp_path / "data" / "joblog.sqlite3"
    settings = {"SYNC_ON_START": "false", "SYNC_INTERVAL_SECONDS": "0", "SSE_PING_SECONDS": "1"}
    with ServerProcess(tmp_path, **settings) as server:
        await asyncio.to_thread(server.wait_ready)
        assert server.process is not None
        pid = server.process.pid
        baseline = scrape(server.url)
        assert baseline["joblog_sse_subscribers"] == 0
        memory = Memory(before=rss_kib(pid))
        writer = OtherWriter(database)
        log = writer.create_log("20251215143022_churn")
        url = f"{server.url}/api/events"
        churn = Churn()
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            held: list[list[int]] = [[] for _ in range(HOLDERS)]
            arrivals: list[dict[int, float]] = [{} for _ in range(HOLDERS)]
            holding = [
                asyncio.create_task(holder(session, url, got, arrived))
                for got, arrived in zip(held, arrivals, strict=True)
            ]
            await wait_for_async(
                lambda: scrape(server.url)["joblog_sse_subscribers"] == HOLDERS,
                "the holders are subscribed",
            )
            sampling = asyncio.create_task(memory.sample(pid))
            cpu_before = time.process_time(), cpu_seconds(pid)
            appender = Appender(writer, log, DETAILS_PER_SECOND)
            with appending(appender):
                end = time.monotonic() + CHURN_SECONDS
                churned = await asyncio.gather(
                    *(churner(session, url, end, seed, churn) for seed in range(CLIENTS - HOLDERS))
                )
            client_cpu = time.process_time() - cpu_before[0]
            server_cpu = cpu_seconds(pid) - cpu_before[1]
            sampling.cancel()
            last = appender.ids[-1]
            await wait_for_async(
                lambda: all(got and got[-1] >= last for got in held), "holders caught up"
            )
            for task in holding:
                task.cancel()
            await asyncio.gather(*holding, return_exceptions=True)
        writer.close()

        after = await settle(server, baseline)
        memory_after = rss_kib(pid)
        code, _ = server.stop()

    delays = sorted(at - appender.committed[i] for arrived in arrivals for i, at in arrived.items())
    print(
        f"\nchurn: {CLIENTS} clients ({HOLDERS} holding) for {CHURN_SECONDS:.0f} s, "
        f"{len(appender.ids)} details appended, {churn.connections:,} connections "
        f"({churn.resumed:,} resumed with Last-Event-ID), {len(churn.failures)} failures; "
        f"server RSS before {memory.before / 1024:.1f} MiB, max during "
        f"{memory.during / 1024:.1f} MiB, after {memory_after / 1024:.1f} MiB; "
        f"events sent {after['joblog_sse_events_sent_total']:,.0f}; "
        f"CPU server {server_cpu:.1f} s, clients {client_cpu:.1f} s; commit-to-holder delay median "
        f"{delays[len(delays) // 2]:.3f} s, max {delays[-1]:.3f} s"
    )
    assert code == 0
    assert churn.failures == []
    assert after["joblog_sse_subscribers"] == 0
    assert after["joblog_asyncio_tasks"] == baseline["joblog_asyncio_tasks"]
    for got in held:
        assert got == appender.ids
    for got in churned:
        assert len(got) == len(set(got)), "a churning client got an event twice"
        assert appended_in(got, appender.ids), "a churning client missed an event"
    assert sum(len(got) for got in churned) > len(appender.ids), "the churners saw nothing"


# --- clients that stop reading ------------------------------------------------------------------

STALL_SECONDS = 2
STALL_BUFFER_EVENTS = 20
"""Small, yet above the 5 details a poll brings at 20/s (more in one poll cuts everyone off:
see test_a_burst_larger_than_the_buffer_does_not_cut_off_a_reader)."""
CUT_OFF_WITHIN = 10.0
"""Seconds after curl is suspended by which both stalled streams must be gone: the stall
timeout, plus the few seconds 80 KB/s takes to fill a socket's default buffers."""
BIG_MESSAGE = "x" * 4000
"""Details near the 5,000-character limit: 80 KB/s, so a stalled stream's buffers fill fast."""


@contextmanager
def stopped_reader(port: int) -> Iterator[socket.socket]:
    """``GET /api/events`` on a socket with a 4 KiB receive buffer that is never read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        yield sock
    finally:
        sock.close()


def read_to_end(sock: socket.socket, within: float) -> bytes:
    """Everything the socket still delivers until the server has closed it."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def ids_in(raw: bytes) -> list[int]:
    """The ids of the complete events in a raw stream."""
    complete, _, _ = raw.rpartition(b"\n\n")
    return [int(match[1]) for match in _ID_LINE.finditer(complete)]


@contextmanager
def suspendable_curl(curl: str, url: str, output: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``curl -sN url > output``; resumed (SIGCONT) and ended at exit, whatever happened."""
    with output.open("wb") as sink:
        watcher = subprocess.Popen([curl, "-sN", url], stdout=sink)
    try:
        yield watcher
    finally:
        watcher.send_signal(signal.SIGCONT)
        if watcher.poll() is None:
            watcher.kill()
        watcher.wait()


def subscribers(server: ServerProcess) -> float:
    return scrape(server.url)["joblog_sse_subscribers"]


@pytest.mark.timeout(90)
async def test_a_stopped_reader_and_a_suspended_curl_are_cut_off_and_others_stay_on_time(
    tmp_path: Path,
) -> None:
    curl = require_command("curl")
    database = tmp_path / "data" / "joblog.sqlite3"
    settings = {
        "SYNC_ON_START": "false",
        "SYNC_INTERVAL_SECONDS": "0",
        "SSE_STALL_SECONDS": str(STALL_SECONDS),
        "SSE_BUFFER_EVENTS": str(STALL_BUFFER_EVENTS),
    }
    output = tmp_path / "curl.out"
    with ServerProcess(tmp_path, **settings) as server:
        await asyncio.to_thread(server.wait_ready)
        url = f"{server.url}/api/events"
        writer = OtherWriter(database)
        log = writer.create_log("20251215143022_stall")
        appender = Appender(writer, log, DETAILS_PER_SECOND, BIG_MESSAGE)
        async with aiohttp.ClientSession() as session:
            healthy = await session.get(url)
            got: list[int] = []
            arrived: dict[int, float] = {}
            reading = asyncio.create_task(read_ids(healthy, got, arrived))
            with (
                stopped_reader(server.port) as stopped,
                suspendable_curl(curl, url, output) as watcher,
            ):
                await wait_for_async(lambda: subscribers(server) == 3, "3 streams open")
                with appending(appender):
                    first = f"id: {await first_detail(appender)}\n".encode()
                    await wait_for_async(lambda: first in output.read_bytes(), "curl read a detail")
                    watcher.send_signal(signal.SIGSTOP)  # ^Z
                    suspended = time.monotonic()
                    await wait_for_async(
                        lambda: subscribers(server) <= 1,
                        "every stream but one gone",
                        within=CUT_OFF_WITHIN,
                        every=0.1,
                    )
                    cut_off = time.monotonic() - suspended
                    streams_left = subscribers(server)
                    await asyncio.sleep(STALL_SECONDS)  # details keep coming
                await wait_for_async(
                    lambda: bool(got) and got[-1] == appender.ids[-1], "healthy done"
                )
                delays = [arrived[i] - appender.committed[i] for i in appender.ids]
                print(
                    f"\nstall: {len(appender.ids)} details of {len(BIG_MESSAGE):,} characters "
                    f"at {DETAILS_PER_SECOND}/s; {streams_left:.0f} streams open "
                    f"{cut_off:.1f} s after curl was suspended; healthy client's delay max "
                    f"{max(delays):.3f} s"
                )
                assert got == appender.ids
                assert max(delays) < 1.0, f"the healthy client waited {max(delays):.2f} s"
                assert streams_left <= 1, "a stalled stream was left open past the stall limit"
                assert scrape(server.url)["joblog_sse_subscribers_dropped_total"] == 2
                watcher.send_signal(signal.SIGCONT)
                curl_code = await asyncio.to_thread(watcher.wait, 10)
                stopped_got = ids_in(await asyncio.to_thread(read_to_end, stopped, 10))
            healthy.close()
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        curl_got = ids_in(output.read_bytes())
        resumed = await asyncio.to_thread(
            subprocess.run,
            [curl, "-sN", "--max-time", "2", "-H", f"Last-Event-ID: {curl_got[-1]}", url],
            capture_output=True,
            check=False,
        )
        writer.close()
        code, _ = server.stop()
    print(
        f"curl exited {curl_code} with {len(curl_got)} details; the reader had {len(stopped_got)}"
    )
    assert code == 0
    for partial in (stopped_got, curl_got):
        assert partial == appender.ids[: len(partial)]
        assert len(partial) < len(appender.ids), "a stalled stream was not cut off"
    assert ids_in(resumed.stdout) == appender.ids[len(curl_got) :]


async def first_detail(appender: Appender) -> int:
    """The id of the appender's first detail, once written."""
    await wait_for_async(lambda: bool(appender.ids), "the first detail appended")
    return appender.ids[0]


async def test_a_burst_larger_than_the_buffer_does_not_cut_off_a_reader(tmp_path: Path) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    settings = {"SYNC_ON_START": "false", "SYNC_INTERVAL_SECONDS": "0", "SSE_BUFFER_EVENTS": "10"}
    with ServerProcess(tmp_path, **settings) as server:
        await asyncio.to_thread(server.wait_ready)
        writer = OtherWriter(database)
        log = writer.create_log("20251215143022_burst")
        async with aiohttp.ClientSession() as session:
            stream = await session.get(f"{server.url}/api/events")
            got: list[int] = []
            reading = asyncio.create_task(read_ids(stream, got))
            await wait_for_async(lambda: subscribers(server) == 1, "the stream is open")
            # What a run-once in another process writes in a fraction of a second.
            writer.execute("BEGIN")
            ids = [writer.append(log, f"Batch {n}/12 imported (500 records)") for n in range(12)]
            writer.execute("COMMIT")
            await wait_for_async(lambda: len(got) == len(ids) or reading.done(), "the burst read")
            stream.close()
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        writer.close()
        dropped = scrape(server.url)["joblog_sse_subscribers_dropped_total"]
        code, _ = server.stop()
    assert code == 0
    assert got == ids
    assert dropped == 0


# --- 50 run requests at once ------------------------------------------------------------------

REQUESTS = 50


def post_together(port: int, count: int) -> list[tuple[int, dict[str, Any]]]:
    """``POST /api/job_logs`` on ``count`` connections opened first, sent at the same moment."""
    barrier = threading.Barrier(count)

    def post(_: int) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.connect()
            barrier.wait(timeout=10)
            conn.request("POST", "/api/job_logs", headers=ADMIN)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))


def test_50_run_requests_at_once_start_exactly_one_run(tmp_path: Path) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    settings = {"SYNC_ON_START": "false", "SYNC_INTERVAL_SECONDS": "0", "DEMO_DELAY_SECONDS": "5"}
    with ServerProcess(tmp_path, **settings) as server:
        server.wait_ready()
        for _ in range(3):
            answers = post_together(server.port, REQUESTS)
            accepted = [body for status, body in answers if status == 202]
            refused = [body for status, body in answers if status == 409]
            assert len(accepted) == 1, answers
            assert len(refused) == REQUESTS - 1, answers
            run = accepted[0]
            for body in refused:
                assert body["error"] == "a sync run is already in progress"
                # Each 409 names the run in progress, even one whose log was being created.
                assert body["job_log"]["id"] == run["id"], body
            status, _ = request(f"{server.url}/api/job_logs/{run['name']}/cancel", "POST")
            assert status == 202
            assert wait_ended(database, run["id"]) == ERROR
        code, _ = server.stop()
    assert code == 0
    assert len(query(database, "SELECT id FROM job_logs")) == 3
