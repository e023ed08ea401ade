"""The event stream of a real server process: curl, run-once beside it, 1,000 streams at a stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from service.store import to_db
from tests.support.api import ADMIN
from tests.support.server import ServerProcess, service_env
from tests.support.system import require_command
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


def detail_ids(database: Path, after: int = 0) -> list[int]:
    with closing(sqlite3.connect(database)) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT id FROM job_log_details WHERE id > ? ORDER BY id", (after,)
            )
        ]


def ids_in(text: str) -> list[int]:
    return [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]


def post_run(server: ServerProcess) -> dict[str, object]:
    request = urllib.request.Request(f"{server.url}/api/job_logs", method="POST", headers=ADMIN)
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 202
        answer: dict[str, object] = json.load(response)
        return answer


def running(server: ServerProcess) -> bool:
    with urllib.request.urlopen(f"{server.url}/api/status", timeout=5) as response:
        return json.load(response)["running"] is not None


def test_curl_sees_a_run_live_and_resumes_with_exactly_the_missed_lines(tmp_path: Path) -> None:
    curl = require_command("curl")
    database = tmp_path / "data" / "joblog.sqlite3"
    with ServerProcess(tmp_path, SYNC_ON_START="false", DEMO_DELAY_SECONDS="0.4") as server:
        server.wait_ready()
        seen: list[str] = []
        with subprocess.Popen(
            [curl, "-sN", f"{server.url}/api/events"], stdout=subprocess.PIPE, text=True
        ) as watcher:
            assert watcher.stdout is not None
            time.sleep(0.3)
            post_run(server)
            while len(ids_in("".join(seen))) < 6:
                seen.append(watcher.stdout.readline())
            watcher.send_signal(signal.SIGINT)  # ^C
            watcher.wait(timeout=5)
        first = ids_in("".join(seen))
        assert first == detail_ids(database)[: len(first)]
        wait_for(lambda: not running(server), "the run ended", every=0.1)
        resumed = subprocess.run(
            [
                curl,
                "-sN",
                "--max-time",
                "2",
                "-H",
                f"Last-Event-ID: {first[-1]}",
                f"{server.url}/api/events",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        server.stop()
    missed = detail_ids(database, after=first[-1])
    assert missed, "the run should have gone on after the first client left"
    assert ids_in(resumed.stdout) == missed
    assert "Job completed successfully" in resumed.stdout


async def test_a_run_once_in_another_process_is_seen_live(tmp_path: Path) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    with ServerProcess(tmp_path, SYNC_ON_START="false") as server:
        server.wait_ready()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}/api/events") as stream,
        ):
            once = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "service",
                "run-once",
                cwd=tmp_path,
                env=service_env(DEMO_DELAY_SECONDS="0.5"),
                stdout=asyncio.subprocess.DEVNULL,
            )
            received: list[tuple[int, float]] = []
            async for raw in stream.content:
                line = raw.decode()
                if line.startswith("id: "):
                    received.append((int(line[4:]), time.monotonic()))
                if "Job completed successfully" in line:
                    break
            finish_seen = time.monotonic()
            assert await once.wait() == 0
            exited = time.monotonic()
        server.stop()
    assert [i for i, _ in received] == detail_ids(database)
    # Live: the lines arrived while the other process was still running, not all at its end.
    assert received[0][1] < finish_seen - 1.0
    assert finish_seen <= exited + 1.0


async def test_a_stop_with_1000_open_streams_takes_under_five_seconds(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, SYNC_ON_START="false", SSE_PING_SECONDS="300") as server:
        server.wait_ready()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            streams = await asyncio.gather(
                *(session.get(f"{server.url}/api/events") for _ in range(1000))
            )
            for stream in streams:
                assert stream.status == 200
                assert (await stream.content.readline()) == b"retry: 2000\n"
            code, seconds = await asyncio.to_thread(server.stop, signal.SIGTERM)
            ended = await asyncio.gather(*(stream.content.read() for stream in streams))
    assert code == 0, server.logs()
    assert seconds < 5
    assert len(ended) == 1000


def subscribers_gauge(server: ServerProcess) -> int:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    [line] = [line for line in text.splitlines() if line.startswith("joblog_sse_subscribers ")]
    return int(float(line.split()[1]))


async def test_1000_streams_whose_clients_left_are_released_at_once(tmp_path: Path) -> None:
    # Pings every 60 s: a stream found gone only when a ping fails to go out would hold its
    # slot far past the deadline below.
    with ServerProcess(
        tmp_path, SYNC_ON_START="false", SSE_PING_SECONDS="60", SSE_MAX_CLIENTS="1000"
    ) as server:
        server.wait_ready()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            streams = await asyncio.gather(
                *(session.get(f"{server.url}/api/events") for _ in range(1000))
            )
            for stream in streams:
                assert stream.status == 200
                assert (await stream.content.readline()) == b"retry: 2000\n"
            assert await asyncio.to_thread(subscribers_gauge, server) == 1000
            async with session.get(f"{server.url}/api/events") as refused:
                assert refused.status == 503, "every slot is taken"
            for stream in streams:
                stream.close()
            await asyncio.to_thread(
                wait_for,
                lambda: subscribers_gauge(server) == 0,
                "every stream released",
                within=10,
                every=0.05,
            )
            async with session.get(f"{server.url}/api/events") as again:
                assert again.status == 200, "the slots are free again"
                assert (await again.content.readline()) == b"retry: 2000\n"
        server.stop()


async def test_a_line_another_process_commits_reaches_a_subscriber(tmp_path: Path) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    with ServerProcess(tmp_path, SYNC_ON_START="false") as server:
        server.wait_ready()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}/api/events") as stream,
        ):
            assert (await stream.content.readline()) == b"retry: 2000\n"
            stamp = to_db(datetime.now(UTC))
            with closing(sqlite3.connect(database)) as other:
                log_id = other.execute(
                    "INSERT INTO job_logs (name, status, created_at, updated_at) "
                    "VALUES ('elsewhere', 1, ?, ?) RETURNING id",
                    (stamp, stamp),
                ).fetchone()[0]
                other.execute(
                    "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
                    "VALUES (?, 'written by another process', ?, ?)",
                    (log_id, stamp, stamp),
                )
                other.commit()
            [detail_id] = detail_ids(database)
            async with asyncio.timeout(10):
                async for raw in stream.content:
                    if raw.decode().rstrip("\n") == f"id: {detail_id}":
                        break
            data = (await stream.content.readline()).decode()
            data += (await stream.content.readline()).decode()
        server.stop()
    assert "written by another process" in data
