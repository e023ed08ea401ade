"""The server side of bench.fanout: one broadcaster under test, driven over stdin/stdout.

python -m bench.fanout_server MODE --port P --rate R --duration S --subscribers N

- ``service``: the real app (``create_app``) on a fresh database; a task appends details to one
  job log with ``add_detail`` at the rate, as the in-process sync job does, so the hub is woken
  at once by each commit. An event's time is taken right after ``add_detail`` returns.
- ``elsewhere`` / ``elsewhere-poll``: the real app again, but every detail is committed by
  another process (``writer`` below, as the Rails app or a ``run-once`` writes): the hub learns
  of it from its change check every EVENTS_CHECK_SECONDS (``elsewhere``), or from its poll every
  0.25 s with the check off (``elsewhere-poll``, the service before #13). An event's time is
  taken in the writer right after its commit.
- ``floor``: a minimal aiohttp handler per subscriber, waiting on its own queue and writing the
  pre-encoded ``id:``/``data:`` frame with ``await resp.write(...)`` (no database, no JSON).
- ``peer``: sse-starlette's ``EventSourceResponse`` on uvicorn, fed by a per-client queue.

Protocol: prints ``READY`` once listening; on ``GO`` (stdin) waits until ``--subscribers``
streams are registered, sends events for ``--duration`` seconds, then prints one JSON line
``{"sent": [[id, time], ...]}``; runs until stdin closes or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import signal
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

Sent = list[tuple[int, float]]


def raise_nofile() -> None:
    """Allow thousands of sockets in this process."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Control:
    """stdin commands, read on a thread so the loop never blocks on them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.go = asyncio.Event()
        self.quit = asyncio.Event()
        threading.Thread(target=self._read, args=(loop,), daemon=True).start()

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        for line in sys.stdin:
            if line.strip() == "GO":
                loop.call_soon_threadsafe(self.go.set)
        loop.call_soon_threadsafe(self.quit.set)


async def drive(
    control: Control,
    count: Callable[[], int],
    subscribers: int,
    send: Callable[[int], Awaitable[tuple[int, float]]],
    rate: float,
    duration: float,
    profile: Path | None = None,
) -> None:
    """On GO: wait for every subscriber, send at ``rate`` for ``duration``, print what was sent."""
    await control.go.wait()
    for _ in range(600):  # 30 s at most
        if count() >= subscribers:
            break
        await asyncio.sleep(0.05)
    profiler: Any = None
    if profile is not None:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled")
        profiler.start()
    sent: Sent = []
    total = max(1, round(rate * duration))
    start = time.monotonic()
    for n in range(total):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append(await send(n + 1))
    if profiler is not None:
        await asyncio.sleep(0.5)
        profiler.stop()
        assert profile is not None
        text = profiler.output_text(unicode=False, color=False, show_all=False)
        await asyncio.to_thread(profile.write_text, text)
    print(json.dumps({"sent": sent, "subscribers": count()}), flush=True)


async def serve_service(args: argparse.Namespace, control: Control) -> None:
    from service import appkeys
    from service.app import create_app
    from service.settings import Settings
    from service.store import add_detail, create_job_log

    folder = Path(tempfile.mkdtemp(prefix="joblog-fanout-"))
    settings = Settings(
        database_path=folder / "joblog.sqlite3",
        sync_on_start=False,
        sync_interval_seconds=0,
        demo_delay_seconds=0,
        log_level="warning",
        sse_max_clients=100_000,
    )
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, backlog=2048).start()
    db = app[appkeys.DATABASE]
    log = await create_job_log(db)
    hub = app[appkeys.HUB]
    print("READY", flush=True)

    async def send(n: int) -> tuple[int, float]:
        detail = await add_detail(db, log.id, f"Batch {n:,} imported (500 records)")
        return detail.id, time.time()

    profile = Path(args.profile) if args.profile else None
    task = asyncio.create_task(
        drive(
            control,
            lambda: hub.subscriber_count,
            args.subscribers,
            send,
            args.rate,
            args.duration,
            profile,
        )
    )
    await control.quit.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await runner.cleanup()


async def serve_elsewhere(args: argparse.Namespace, control: Control) -> None:
    from service import appkeys
    from service.app import create_app
    from service.settings import Settings
    from service.store import create_job_log

    folder = Path(tempfile.mkdtemp(prefix="joblog-fanout-"))
    database = folder / "joblog.sqlite3"
    settings = Settings(
        database_path=database,
        sync_on_start=False,
        sync_interval_seconds=0,
        demo_delay_seconds=0,
        log_level="warning",
        sse_max_clients=100_000,
        events_poll_seconds=0.25,
    )
    if args.mode == "elsewhere-poll":
        settings = settings.model_copy(update={"events_check_seconds": 0.0})
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, backlog=2048).start()
    log = await create_job_log(app[appkeys.DATABASE])
    hub = app[appkeys.HUB]
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.fanout_server",
        "writer",
        "--database",
        str(database),
        "--job-log",
        str(log.id),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    stdin, stdout = writer.stdin, writer.stdout
    assert stdin is not None
    assert stdout is not None
    print("READY", flush=True)

    async def send(n: int) -> tuple[int, float]:
        stdin.write(b"%d\n" % n)
        await stdin.drain()
        detail_id, committed = json.loads(await stdout.readline())
        return int(detail_id), float(committed)

    task = asyncio.create_task(
        drive(
            control,
            lambda: hub.subscriber_count,
            args.subscribers,
            send,
            args.rate,
            args.duration,
        )
    )
    await control.quit.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    stdin.close()
    await writer.wait()
    await runner.cleanup()


def write_elsewhere(database: Path, job_log_id: int) -> None:
    """The ``writer`` mode: for each line on stdin, commit one detail as another process
    would, and print its id and the time right after the commit."""
    import sqlite3
    from contextlib import closing
    from datetime import UTC, datetime

    from service.store import to_db

    with closing(sqlite3.connect(database, isolation_level=None)) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        for line in sys.stdin:
            stamp = to_db(datetime.now(UTC))
            conn.execute("BEGIN IMMEDIATE")
            (detail_id,) = conn.execute(
                "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) RETURNING id",
                (job_log_id, f"Batch {int(line):,} imported (500 records)", stamp, stamp),
            ).fetchone()
            conn.execute("COMMIT")
            print(json.dumps([detail_id, time.time()]), flush=True)


async def serve_floor(args: argparse.Namespace, control: Control) -> None:
    queues: set[asyncio.Queue[bytes]] = set()

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        queue: asyncio.Queue[bytes] = asyncio.Queue(1000)
        queues.add(queue)
        try:
            await response.prepare(request)
            while True:
                await response.write(await queue.get())
        finally:
            queues.discard(queue)

    app = web.Application()
    app.router.add_get("/api/events", stream)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, backlog=2048).start()
    print("READY", flush=True)

    async def send(n: int) -> tuple[int, float]:
        now = time.time()
        frame = f"id: {n}\ndata: {now!r}\n\n".encode()
        for queue in list(queues):
            queue.put_nowait(frame)
        return n, now

    task = asyncio.create_task(
        drive(control, lambda: len(queues), args.subscribers, send, args.rate, args.duration)
    )
    await control.quit.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await runner.cleanup()


async def serve_peer(args: argparse.Namespace, control: Control) -> None:
    import uvicorn
    from sse_starlette import EventSourceResponse
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    queues: set[asyncio.Queue[tuple[int, float]]] = set()

    async def stream(request: Request) -> EventSourceResponse:
        queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue(1000)

        async def events() -> AsyncIterator[dict[str, str]]:
            queues.add(queue)
            try:
                while True:
                    n, sent = await queue.get()
                    yield {"id": str(n), "data": repr(sent)}
            finally:
                queues.discard(queue)

        return EventSourceResponse(events())

    app = Starlette(routes=[Route("/api/events", stream)])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_level="critical", lifespan="off", backlog=2048
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    for _ in range(600):
        if server.started:
            break
        await asyncio.sleep(0.05)
    print("READY", flush=True)

    async def send(n: int) -> tuple[int, float]:
        now = time.time()
        for queue in list(queues):
            queue.put_nowait((n, now))
        return n, now

    task = asyncio.create_task(
        drive(control, lambda: len(queues), args.subscribers, send, args.rate, args.duration)
    )
    await control.quit.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    server.should_exit = True
    server.force_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await serving


async def amain(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    control = Control(loop)
    loop.add_signal_handler(signal.SIGTERM, control.quit.set)
    serve = {
        "service": serve_service,
        "elsewhere": serve_elsewhere,
        "elsewhere-poll": serve_elsewhere,
        "floor": serve_floor,
        "peer": serve_peer,
    }[args.mode]
    await serve(args, control)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_server")
    parser.add_argument(
        "mode", choices=("service", "elsewhere", "elsewhere-poll", "floor", "peer", "writer")
    )
    parser.add_argument("--port", type=int)
    parser.add_argument("--database", type=Path, help="writer: the database to write to")
    parser.add_argument("--job-log", type=int, help="writer: the log to append to")
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--profile", help="service: write a pyinstrument profile of the window")
    args = parser.parse_args()
    if args.mode == "writer":
        write_elsewhere(args.database, args.job_log)
        return
    raise_nofile()
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
