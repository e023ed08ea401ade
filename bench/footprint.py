"""Footprint: memory idle and per idle subscriber, start time, and a 100,000-detail run in the page.

Each figure has its baseline measured in the same run, alternately where the two can share the
machine:
  - start and idle RSS: ``python -m service`` on a fresh database against a bare aiohttp
    hello-world process, from ``Popen`` to the first 200 from ``/healthz``, then VmRSS;
  - per idle subscriber: N idle ``GET /api/events`` streams held by client processes (raw
    asyncio sockets), (VmRSS with N - idle VmRSS) / N, against a minimal aiohttp
    ``StreamResponse`` server holding the same connections;
  - the page: from navigation to ``runs/<name>`` until every line is loaded and the last one is
    on screen, in headless Chromium, against the same lines fetched as text by the same browser.

    python -m bench.footprint [--quick] [--out PATH]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from bench import common
from bench.common import Section, median, spread
from tests.support.browser import launch_chromium
from tests.support.server import ServerProcess
from tests.support.system import free_port

NAME = "20251215143022"
CLIENT_PROCESSES = 4
MB = 2**20

# The baseline servers: what any aiohttp process costs, and what any held stream costs.
HELLO = """
import sys
from aiohttp import web

async def healthz(request):
    return web.json_response({"status": "ok"})

app = web.Application()
app.router.add_get("/healthz", healthz)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""

HOLDER = """
import asyncio, sys
from aiohttp import web

async def healthz(request):
    return web.json_response({"status": "ok"})

async def events(request):
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"retry: 2000\\n\\n")
    await asyncio.Event().wait()
    return response

app = web.Application()
app.router.add_get("/healthz", healthz)
app.router.add_get("/api/events", events)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def raise_nofile() -> None:
    """Open files up to the hard limit: inherited by every server and client started here."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss(pid: int) -> int:
    """VmRSS of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@contextmanager
def started(kind: str, work: Path, **env: str) -> Iterator[tuple[ServerProcess, float]]:
    """A server (``service``, ``hello`` or ``holder``) started in ``work``: it, and the seconds
    from ``Popen`` to its first 200 from ``/healthz``."""
    if kind == "service":
        # ADMIN_TOKEN empty is no setting: the service as deployed, making its own.
        quiet = {"SYNC_ON_START": "false", "SYNC_INTERVAL_SECONDS": "0", "LOG_LEVEL": "warning"}
        server = ServerProcess(work, ADMIN_TOKEN="", **quiet, **env)
    else:
        port = free_port()
        script = HELLO if kind == "hello" else HOLDER
        server = ServerProcess(
            work, command=[sys.executable, "-c", script, str(port)], PORT=str(port)
        )
    with server:
        yield server, server.wait_ready(within=30, every=0.005)


def settled_rss(pid: int, *, quiet: float = 0.6, limit: float = 15.0) -> int:
    """VmRSS once it has not grown for ``quiet`` seconds (or after ``limit``)."""
    deadline = time.monotonic() + limit
    last, since = rss(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = rss(pid)
        if now > last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


# ----------------------------------------------------------------------------- subscribers


def _hold(port: int, count: int, pipe: multiprocessing.connection.Connection) -> None:
    """Client process: open ``count`` idle event streams, report, hold them until told."""
    raise_nofile()

    async def one() -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace"))
        await reader.readuntil(b"\n\n")  # the retry line: the stream is open and idle
        return writer

    async def main() -> None:
        gate = asyncio.Semaphore(200)

        async def gated() -> asyncio.StreamWriter:
            async with gate:
                return await one()

        writers = await asyncio.gather(*(gated() for _ in range(count)))
        pipe.send(len(writers))
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        for writer in writers:
            writer.close()

    try:
        asyncio.run(main())
    except Exception as error:  # reported to the parent, which fails the measure
        pipe.send(repr(error))


def per_subscriber(pid: int, port: int, count: int) -> tuple[int, int]:
    """Idle VmRSS of ``pid`` and its VmRSS with ``count`` idle streams held."""
    idle = settled_rss(pid)
    context = multiprocessing.get_context("fork")
    pipes, workers = [], []
    share = [
        count // CLIENT_PROCESSES + (i < count % CLIENT_PROCESSES) for i in range(CLIENT_PROCESSES)
    ]
    for part in share:
        mine, theirs = context.Pipe()
        worker = context.Process(target=_hold, args=(port, part, theirs), daemon=True)
        worker.start()
        pipes.append(mine)
        workers.append(worker)
    try:
        for pipe, part in zip(pipes, share, strict=True):
            if not pipe.poll(120):
                raise RuntimeError("client process did not connect in time")
            answer = pipe.recv()
            if answer != part:
                raise RuntimeError(f"client process: {answer}")
        held = settled_rss(pid, quiet=1.5)
    finally:
        for pipe in pipes:
            with suppress(OSError):
                pipe.send("stop")
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
    return idle, held


# ----------------------------------------------------------------------------- the page


def seed(database: Path, details: int) -> None:
    """One finished run of ``details`` lines, written as the service writes them."""
    stamp = datetime(2025, 12, 15, 14, 30, 22, tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with closing(sqlite3.connect(database)) as conn:
        conn.execute(
            "INSERT INTO job_logs (name, status, created_at, updated_at) VALUES (?, 3, ?, ?)",
            (NAME, stamp, stamp),
        )
        conn.executemany(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (1, ?, ?, ?)",
            (
                (f"Batch {n:,}/{details:,} imported (500 records)", stamp, stamp)
                for n in range(1, details + 1)
            ),
        )
        conn.commit()


# The page shows a run once every line is in (the final banner is up) and its last line is
# inside the visible part of the list.
SHOWN = """(last) => {
  const banner = document.getElementById("run-banner");
  const viewport = document.getElementById("run-lines");
  const line = viewport.querySelector(`li[data-id="${last}"]`);
  if (banner.hidden || !line) return false;
  const box = line.getBoundingClientRect();
  const view = viewport.getBoundingClientRect();
  return box.top >= view.top - 1 && box.bottom <= view.bottom + 1;
}"""


def page_times(
    details: int, repeat: int, work: Path
) -> tuple[list[float], list[float], list[float]]:
    """(first lines, last line shown, text baseline) in seconds, alternately."""
    first: list[float] = []
    shown: list[float] = []
    text: list[float] = []
    with ServerProcess(
        work, SYNC_ON_START="false", SYNC_INTERVAL_SECONDS="0", LOG_LEVEL="warning"
    ) as server:
        server.wait_ready()
        seed(work / "data" / "joblog.sqlite3", details)
        with launch_chromium() as browser:
            for _ in range(repeat):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                begun = time.monotonic()
                page.goto(f"{server.url}/runs/{NAME}")
                page.wait_for_selector("#run-lines li.line")
                first.append(time.monotonic() - begun)
                page.wait_for_function(SHOWN, arg=details, timeout=120_000, polling="raf")
                shown.append(time.monotonic() - begun)
                page.close()
                page = browser.new_page()
                page.goto(f"{server.url}/healthz")
                begun = time.monotonic()
                count = page.evaluate(
                    "(url) => fetch(url).then((r) => r.text())"
                    ".then((t) => t.split('\\n').length - 1)",
                    f"api/job_logs/{NAME}.txt",
                )
                text.append(time.monotonic() - begun)
                if count != details:
                    raise RuntimeError(f"the text had {count} lines, not {details}")
                page.close()
    return first, shown, text


# ----------------------------------------------------------------------------- the section


def alternate(repeat: int, *measures: Callable[[], None]) -> None:
    for _ in range(repeat):
        for measure in measures:
            measure()


def run(quick: bool) -> Section:
    """Measure everything and return the section."""
    raise_nofile()
    repeat = 3 if quick else 5
    counts = (1_000,) if quick else (1_000, 10_000)
    details = 20_000 if quick else 100_000
    work = Path(tempfile.mkdtemp(prefix="joblog-footprint-"))
    section = Section(
        title="Footprint: memory, start, a big run in the page",
        command=f"python -m bench.footprint{' --quick' if quick else ''}",
        method=(
            "start = from `Popen` to the first 200 from `/healthz`; RSS = VmRSS from "
            "/proc/<pid>/status once it has settled; per subscriber = (RSS with N idle "
            f"`GET /api/events` streams - idle RSS) / N, the streams held by {CLIENT_PROCESSES} "
            "client processes (raw asyncio sockets); the page = headless Chromium, from "
            "navigation to every line loaded and the last one on screen. Each against its "
            f"baseline, alternately, {repeat} times."
        ),
    )

    # Start and idle RSS.
    starts: dict[str, list[float]] = {"service": [], "hello": []}
    idles: dict[str, list[float]] = {"service": [], "hello": []}

    def boot(kind: str) -> Callable[[], None]:
        def measure() -> None:
            home = Path(tempfile.mkdtemp(dir=work))
            with started(kind, home) as (server, took):
                assert server.process is not None
                starts[kind].append(took)
                idles[kind].append(settled_rss(server.process.pid) / MB)

        return measure

    alternate(repeat, boot("service"), boot("hello"))
    section.table(
        ["measure", "service", "baseline: aiohttp hello-world", "difference"],
        [
            [
                "start to first 200 from /healthz",
                spread(starts["service"]),
                spread(starts["hello"]),
                f"{median(starts['service']) - median(starts['hello']):+.2f} s",
            ],
            [
                "idle RSS",
                spread(idles["service"], "MB", 1),
                spread(idles["hello"], "MB", 1),
                f"{median(idles['service']) - median(idles['hello']):+.1f} MB",
            ],
        ],
    )
    start_s, idle_mb = median(starts["service"]), median(idles["service"])
    section.goal("start ≤ 1 s", start_s <= 1.0, f"{start_s:.2f} s")
    section.goal("idle ≤ 60 MB", idle_mb <= 60, f"{idle_mb:.1f} MB")

    # Per idle subscriber.
    rows = []
    for count in counts:
        kb: dict[str, list[float]] = {"service": [], "holder": []}
        held_mb: dict[str, list[float]] = {"service": [], "holder": []}

        def hold(
            kind: str,
            count: int = count,
            kb: dict[str, list[float]] = kb,
            held_mb: dict[str, list[float]] = held_mb,
        ) -> Callable[[], None]:
            def measure() -> None:
                home = Path(tempfile.mkdtemp(dir=work))
                env = {"SSE_MAX_CLIENTS": str(count + 100)} if kind == "service" else {}
                with started(kind, home, **env) as (server, _):
                    assert server.process is not None
                    idle, held = per_subscriber(server.process.pid, server.port, count)
                    kb[kind].append((held - idle) / count / 1024)
                    held_mb[kind].append(held / MB)

            return measure

        alternate(3 if count > 1_000 else 2 if quick else repeat, hold("service"), hold("holder"))
        rows.append(
            [
                f"{count:,} idle subscribers",
                spread(kb["service"], "KB", 1),
                spread(kb["holder"], "KB", 1),
                f"{median(kb['service']) - median(kb['holder']):+.1f} KB",
            ]
        )
        figure, bare = median(kb["service"]), median(kb["holder"])
        section.goal(
            f"per idle subscriber ≤ the bare StreamResponse server's + 2 KB ({count:,})",
            figure <= bare + 2,
            f"{figure:.1f} KB vs {bare:.1f} + 2 KB",
        )
        if count == 10_000:
            rss_mb = median(held_mb["service"])
            section.goal(
                "10,000 idle subscribers in one process ≤ 200 MB RSS",
                rss_mb <= 200,
                f"{rss_mb:.0f} MB",
            )
    section.table(
        ["per idle subscriber", "service", "baseline: bare StreamResponse server", "difference"],
        rows,
    )

    # The page.
    first, shown, text = page_times(details, repeat, Path(tempfile.mkdtemp(dir=work)))
    base = median(text)
    section.table(
        [f"a run of {details:,} details", "time", "ratio to baseline"],
        [
            ["baseline: the same lines as text (`.txt`), same browser", spread(text), "1.00"],
            ["page: first lines on screen", spread(first), f"{median(first) / base:.2f}"],
            [
                "page: every line loaded, the last one on screen",
                spread(shown),
                f"{median(shown) / base:.2f}",
            ],
        ],
    )
    section.goal(
        f"the {details:,}-detail run shown ≤ 2 s", median(shown) <= 2.0, f"{median(shown):.2f} s"
    )
    section.notes += NOTES
    return section


NOTES = [
    "**The page.** It was 2.66 s for 100,000 details (0.82 s text baseline). Three changes: "
    "the details page's JSON is written by SQLite (`json_group_array`/`json_object`, "
    "`service/store/detail_pages.py`; ~1 ms a page of 1,000 instead of ~11 ms for a pydantic "
    "model per row and its serializer; stored times outside Rails' two forms fall back to "
    "Python), the page asks for the next pages ahead at the cursors consecutive ids would "
    "give (4 in flight; a guess is used only when its cursor turns out to be the real one, "
    "so a gap in the ids costs time, never a line), and only each page's last batch line "
    "updates the progress bar. The text baseline still builds a model per row "
    "(`iter_details` feeds retention too), which is why the page can beat it.",
    "**Per idle subscriber** (#13; tracemalloc, 25 frames, snapshot diff idle → 1,000 "
    "idle streams, 2026-12-04): 12.7 KB of Python heap per stream (it was 14.2 KB after "
    "#12's restructuring, 17.5 KB before). Most of it is aiohttp's and asyncio's own per "
    "connection, as in the bare `StreamResponse` baseline (RequestHandler and its "
    "HttpRequestParser, the parsed request, two tasks, the transport, the response and its "
    "serialized headers). What the service adds: `EventStream` (`__slots__`, 0.2 KB) and "
    "its response 0.15 KB, two coroutine frames (`_LiveResponse.prepare` and "
    "`EventStream.live`, ~0.25 KB each), one future while it waits (0.14 KB), the security "
    "headers 0.2 KB, the middlewares' request state 0.16 KB.",
    "**What moved it** (#13): the stream runs inside its response's `prepare`, which aiohttp "
    "calls once the handler and the middlewares have returned (as for a `FileResponse`), so "
    "no handler or middleware frame (~0.3 KB each, five of them) stays suspended per stream, "
    "nor the handler's locals (the parsed `EventParams`, the query dict, the logs open at "
    "subscription); no timer or `asyncio.timeout` per stream: one tick of the hub every "
    "0.25 s gives every stream the time (pings, stall checks, the session's end, and finding "
    "a client that went away); the backlog deque and the log-state dict are made on first "
    "use; `EventStream` and `_Progress` have `__slots__`.",
]


def main() -> None:
    common.main("footprint", "1,000 subscribers, 20,000 details", lambda args: run(args.quick))


if __name__ == "__main__":
    main()
