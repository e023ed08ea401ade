"""Webhook notices: a POST when a run fails and when a success follows failures, delivered in
the background with retries, and never a trace of the webhook URL in any log line."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from pydantic import SecretStr
from pytest_aiohttp import AiohttpServer

from service.late_watch import LateWatch
from service.notify import Notifier, parse_retry_after
from service.schedule import Cron, Grid
from service.store import (
    Database,
    SqliteStore,
    add_detail,
    create_job_log,
    fail_job_log,
    last_details,
    previous_finished_status,
    set_status,
)
from service.wire import JobLog, Status
from tests.support.api import MakeClient, run_to_end
from tests.support.clock import FakeClock
from tests.support.server import service_env

HOOK_PATH = "/hooks/T0/B0/s3cr3t-token"
# Every fragment of the webhook URL that would betray it in a log line.
SECRET_PARTS = ("s3cr3t", "T0/B0", "/hooks/")
HANG = -1


@dataclass
class Received:
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


@dataclass
class Receiver:
    """A webhook endpoint that records each POST and answers from a script (then 200)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    replies: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            Received(
                path=request.path,
                query=dict(request.query),
                content_type=request.content_type,
                body=await request.json(),
            )
        )
        self.arrived.set()
        status, headers = self.replies.pop(0) if self.replies else (200, {})
        if status == HANG:
            await self.release.wait()
            status = 200
        return web.Response(status=status, headers=headers, text="ok")

    @property
    def events(self) -> list[str]:
        return [r.body["event"] for r in self.requests]


class MakeNotifier(Protocol):
    def __call__(
        self, url: str, *, public_url: str | None = None, **options: float
    ) -> Awaitable[Notifier]: ...


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> AsyncIterator[Receiver]:
    """A local webhook receiver; the URL carries the token in its path and its query."""
    hook = Receiver()
    app = web.Application()
    app.router.add_post(HOOK_PATH, hook.handle)
    app.router.add_post("/elsewhere", hook.handle)
    # The receiver's own access log would print the path; only the notifier's logs are judged.
    server = await aiohttp_server(app, access_log=None)
    hook.url = str(server.make_url(HOOK_PATH).with_query(token="s3cr3t-token"))
    yield hook
    hook.release.set()


@pytest.fixture
async def make_notifier(db: Database) -> AsyncIterator[MakeNotifier]:
    """Started notifiers on the test's database, closed afterwards."""
    made: list[Notifier] = []

    async def make(url: str, *, public_url: str | None = None, **options: Any) -> Notifier:
        notifier = Notifier(SqliteStore(db), SecretStr(url), public_url, **options)
        await notifier.start()
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        await notifier.close()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record at DEBUG and above, aiohttp's and asyncio's included."""
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_secret_kept(caplog: pytest.LogCaptureFixture, *more: str) -> None:
    """No part of the webhook URL (nor ``more``) in any captured record, message or traceback."""
    assert caplog.records, "nothing was logged: the check would be empty"
    texts = [caplog.text]
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    for text in texts:
        for part in (*SECRET_PARTS, *more):
            assert part not in text


def notifier_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "service.notify"]


async def failed_run(db: Database, clock: FakeClock, lines: list[str], error: str) -> JobLog:
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    for line in lines:
        await add_detail(db, log.id, line)
    ended = await fail_job_log(db, log.id, error)
    assert ended is not None
    clock.advance(60)
    return ended[0]


async def succeeded_run(db: Database, clock: FakeClock) -> JobLog:
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    await add_detail(db, log.id, "Done: 42 rows")
    ended = await set_status(db, log.id, Status.success)
    clock.advance(60)
    return ended


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port: int = listener.getsockname()[1]
    return port


async def test_a_failed_run_posts_its_last_twenty_lines_and_its_page(
    db: Database,
    clock: FakeClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
    logs: pytest.LogCaptureFixture,
) -> None:
    lines = [f"Fetched batch {n}" for n in range(1, 26)]
    error = "ERROR: Fetch failed - [ODBC] <timeout> & gave up"
    log = await failed_run(db, clock, lines, error)
    notifier = await make_notifier(receiver.url, public_url="https://joblog.example/ops/")

    notifier.run_ended(log)
    await notifier.drain(10)

    assert len(receiver.requests) == 1
    received = receiver.requests[0]
    assert (received.path, received.query) == (HOOK_PATH, {"token": "s3cr3t-token"})
    assert received.content_type == "application/json"
    body = received.body
    assert set(body) == {"event", "text", "job_log", "details", "url"}
    assert body["event"] == "run_failed"
    assert body["job_log"]["name"] == log.name
    assert body["job_log"]["status"] == "error"
    assert [d["message"] for d in body["details"]] == [*lines[-19:], error]
    assert all(d["job_log_id"] == log.id for d in body["details"])
    url = f"https://joblog.example/ops/runs/{log.name}"
    assert body["url"] == url
    assert body["text"] == (
        f"Sync run {log.name} failed: ERROR: Fetch failed - [ODBC] &lt;timeout&gt; &amp; gave up"
        f" <{url}>"
    )
    assert (
        logging.INFO,
        f"webhook notice run_failed for run {log.name} delivered (attempt 1)",
    ) in notifier_lines(logs)
    assert_secret_kept(logs)


async def test_a_success_after_failures_posts_a_recovery(
    db: Database,
    clock: FakeClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
    logs: pytest.LogCaptureFixture,
) -> None:
    # The failures happened before this notifier existed (another process, a restart).
    await failed_run(db, clock, [], "ERROR: Fetch failed - one")
    await failed_run(db, clock, [], "ERROR: Fetch failed - two")
    log = await succeeded_run(db, clock)
    notifier = await make_notifier(receiver.url)

    notifier.run_ended(log)
    await notifier.drain(10)

    assert receiver.events == ["run_recovered"]
    body = receiver.requests[0].body
    assert body["job_log"]["name"] == log.name
    assert body["job_log"]["status"] == "success"
    assert [d["message"] for d in body["details"]] == ["Done: 42 rows"]
    assert body["url"] is None
    assert body["text"] == f"Sync run {log.name} succeeded again after failures"
    assert_secret_kept(logs)


async def test_a_success_after_a_success_or_none_posts_nothing(
    db: Database,
    clock: FakeClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
    logs: pytest.LogCaptureFixture,
) -> None:
    notifier = await make_notifier(receiver.url)
    first = await succeeded_run(db, clock)
    second = await succeeded_run(db, clock)
    failed = await failed_run(db, clock, [], "ERROR: Swap failed - locked")

    notifier.run_ended(first)
    notifier.run_ended(second)
    notifier.run_ended(failed)
    await notifier.drain(10)

    # Only the failure: the pipeline ran, and neither success was taken for a recovery.
    assert receiver.events == ["run_failed"]
    assert receiver.requests[0].body["job_log"]["name"] == failed.name
    assert_secret_kept(logs)


async def test_the_previous_finished_run_skips_open_ones(db: Database, clock: FakeClock) -> None:
    failed = await failed_run(db, clock, [], "ERROR: Fetch failed - x")
    still_open = await create_job_log(db)
    clock.advance(60)
    later = await succeeded_run(db, clock)

    assert await previous_finished_status(db, later.id) is Status.error
    assert await previous_finished_status(db, still_open.id) is Status.error
    assert await previous_finished_status(db, failed.id) is None
    assert [d.message for d in await last_details(db, failed.id, 20)] == ["ERROR: Fetch failed - x"]


@pytest.mark.parametrize(
    "first_reply",
    [(500, {}), (503, {"Retry-After": "0"}), (429, {"Retry-After": "0"})],
    ids=["500", "503-retry-after", "429"],
)
async def test_a_server_error_is_retried_until_delivered(
    db: Database,
    clock: FakeClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
    logs: pytest.LogCaptureFixture,
    first_reply: tuple[int, dict[str, str]],
) -> None:
    receiver.replies = [first_reply, (200, {})]
    log = await failed_run(db, clock, ["Started"], "ERROR: Fetch failed - x")
    notifier = await make_notifier(receiver.url, backoff_seconds=0.05)

    notifier.run_ended(log)
    await notifier.drain(10)

    assert receiver.events == ["run_failed", "run_failed"]
    assert receiver.requests[0].body == receiver.requests[1].body
    lines = notifier_lines(logs)
    assert (
        logging.INFO,
        f"webhook notice for run {log.name}: attempt 1 of 4 failed: HTTP {first_reply[0]}",
    ) in lines
    assert (
        logging.INFO,
        f"webhook notice run_failed for run {log.name} delivered (attempt 2)",
    ) in lines
    assert not any(level >= logging.WARNING for level, _ in lines)
    assert_secret_kept(logs)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ((400, {}), "HTTP 400"),
        ((404, {}), "HTTP 404"),
        ((302, {"Location": "/elsewhere"}), "HTTP 302 (redirects are not followed)"),
    ],
    ids=["400", "404", "redirect"],
)
async def test_a_refusal_is_not_retried_and_is_logged(
    db: Database,
    clock: FakeClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
    logs: pytest.LogCaptureFixture,
    reply: tuple[int, dict[str, str]],
    reason: str,
) -> None:
    receiver.replies = [reply]
    log = await failed_run(db, clock, [], "ERROR: Fetch failed - x")
    notifier = await make_notifier(receiver.url, backoff_seconds=0.01)

    notifier.run_ended(log)
    await notifier.drain(10)

    assert [r.path for r in receiver.requests] == [HOOK_PATH]
    assert (
        logging.WARNING,
        f"webhook notice for run {log.name} not delivered after 1 attempt: {reason}",
    ) in notifier_lines(logs)
    assert_secret_kept(logs)


async def test_a_receiver_that_never_answers_neither_blocks_nor_holds_up_close(
    db: Database,
    clock: FakeClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
    logs: pytest.LogCaptureFixture,
) -> None:
    receiver.replies = [(HANG, {})] * 10
    first = await failed_run(db, clock, [], "ERROR: Fetch failed - one")
    second = await failed_run(db, clock, [], "ERROR: Fetch failed - two")
    quick = await make_notifier(receiver.url, timeout_seconds=0.2, attempts=2, backoff_seconds=0.05)

    started = time.monotonic()
    quick.run_ended(first)
    assert time.monotonic() - started < 0.5
    await quick.drain(10)

    assert receiver.events == ["run_failed", "run_failed"]
    assert (
        logging.WARNING,
        f"webhook notice for run {first.name} not delivered after 2 attempts: "
        "timed out after 0.2 s",
    ) in notifier_lines(logs)

    # A delivery with minutes still to go when the service stops.
    slow = await make_notifier(receiver.url, timeout_seconds=30, attempts=4)
    receiver.arrived.clear()
    slow.run_ended(second)
    await receiver.arrived.wait()
    await slow.drain(0.05)
    async with asyncio.timeout(5):
        await slow.close()

    assert (
        logging.WARNING,
        f"webhook notice for run {second.name} not delivered: the notifier closed first",
    ) in notifier_lines(logs)
    assert_secret_kept(logs)


async def test_a_refused_connection_is_logged_as_not_delivered(
    db: Database,
    clock: FakeClock,
    make_notifier: MakeNotifier,
    logs: pytest.LogCaptureFixture,
) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}{HOOK_PATH}?token=s3cr3t-token"
    log = await failed_run(db, clock, [], "ERROR: Fetch failed - x")
    notifier = await make_notifier(url, attempts=2, backoff_seconds=0.01)

    notifier.run_ended(log)
    await notifier.drain(10)

    lines = notifier_lines(logs)
    assert (
        logging.WARNING,
        f"webhook notice for run {log.name} not delivered after 2 attempts: "
        "connection failed: Connection refused",
    ) in lines
    assert len([m for level, m in lines if level == logging.INFO and "failed" in m]) == 2
    # aiohttp's and asyncio's own texts name the host and port.
    assert_secret_kept(logs, f"127.0.0.1:{port}", f"{port})")


async def test_unfinished_runs_and_closed_notifiers_post_nothing(
    db: Database,
    clock: FakeClock,
    receiver: Receiver,
    make_notifier: MakeNotifier,
    logs: pytest.LogCaptureFixture,
) -> None:
    notifier = await make_notifier(receiver.url)
    pending = await create_job_log(db)
    notifier.run_ended(pending)
    await notifier.close()
    failed = await failed_run(db, clock, [], "ERROR: Fetch failed - x")
    notifier.run_ended(failed)
    await notifier.drain(1)

    assert receiver.requests == []
    # Nothing was scheduled for the pending run, so closing had nothing to report.
    dropped = f"webhook notice for run {failed.name} dropped: the notifier is not running"
    assert notifier_lines(logs) == [(logging.WARNING, dropped)]
    assert_secret_kept(logs)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        ("600", 60.0),
        ("-1", None),
        ("1.5", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        (None, None),
    ],
)
def test_retry_after_is_honoured_in_seconds_up_to_a_minute(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header) == seconds


async def test_the_app_notifies_a_failed_then_a_recovered_run(
    make_client: MakeClient, receiver: Receiver, logs: pytest.LogCaptureFixture
) -> None:
    """Through the real app factory: the scheduler's runs reach the webhook."""
    failing = "Driver={No Such Driver};Server=db.plant.example;PWD=hunter2-secret"
    client = await make_client(
        source_odbc=SecretStr(failing),
        notify_webhook_url=SecretStr(receiver.url),
        public_url="https://joblog.plant.example/sync/",
    )
    failed = await run_to_end(client)
    async with asyncio.timeout(10):
        await receiver.arrived.wait()
    (notice,) = receiver.requests
    assert notice.body["event"] == "run_failed"
    assert notice.body["job_log"]["name"] == failed["name"]
    assert notice.body["url"] == f"https://joblog.plant.example/sync/runs/{failed['name']}"
    assert notice.body["details"][-1]["message"].startswith("ERROR: Connection failed")
    assert "hunter2-secret" not in str(notice.body)
    assert_secret_kept(logs, "hunter2-secret")


@pytest.mark.integration  # run-once in a process of its own
async def test_run_once_waits_for_its_notice(receiver: Receiver, tmp_path: Path) -> None:
    """``run-once`` (its own process) delivers the notice of its failed run before it exits."""
    env = service_env(
        DATABASE_PATH=str(tmp_path / "joblog.sqlite3"),
        SOURCE_ODBC="Driver={No Such Driver};Server=db.plant.example",
        NOTIFY_WEBHOOK_URL=receiver.url,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "run-once",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode == 1, err
    assert receiver.events == ["run_failed"]
    for secret in SECRET_PARTS:
        assert secret not in (out + err).decode()


async def test_sync_late_is_posted_once_per_episode(
    db: Database, clock: FakeClock, receiver: Receiver, make_notifier: MakeNotifier
) -> None:
    notifier = await make_notifier(receiver.url, public_url="https://joblog.plant.example/")
    watch = LateWatch(SqliteStore(db), notifier, Grid(timedelta(minutes=5)), None, clock)
    await succeeded_run(db, clock)
    assert not await watch.check()
    clock.advance(16 * 60)  # no success for three intervals and more
    failed = await failed_run(db, clock, ["Connecting…"], "ERROR: Login failed for user 'sync'")
    assert await watch.check()
    async with asyncio.timeout(10):
        await receiver.arrived.wait()
    (notice,) = receiver.requests
    assert notice.body["event"] == "sync_late"
    assert notice.body["job_log"]["name"] == failed.name
    assert notice.body["text"].startswith("Sync is late: no success since ")
    assert "ERROR: Login failed for user 'sync'" in notice.body["text"]
    assert notice.body["url"] == f"https://joblog.plant.example/runs/{failed.name}"
    # Still late: not again.
    clock.advance(600)
    assert not await watch.check()
    assert not await watch.check()
    # Recovered, then late again: a new episode, a new notice.
    await succeeded_run(db, clock)
    assert not await watch.check()
    clock.advance(16 * 60)
    assert await watch.check()
    await notifier.drain(10)
    assert [r.body["event"] for r in receiver.requests] == ["sync_late", "sync_late"]


async def test_a_paused_schedule_is_not_late(
    db: Database, clock: FakeClock, receiver: Receiver, make_notifier: MakeNotifier
) -> None:
    notifier = await make_notifier(receiver.url)
    # Only at 03:00 on the 1st of January: a day without a success is a pause, not late.
    watch = LateWatch(
        SqliteStore(db), notifier, Cron.parse("* 3 1 1 *", ZoneInfo("UTC")), None, clock
    )
    await succeeded_run(db, clock)
    clock.advance(86400)
    assert not await watch.check()
    await notifier.drain(1)
    assert receiver.requests == []
