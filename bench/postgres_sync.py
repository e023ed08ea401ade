"""The sync part of bench.postgres: the seconds of the scheduler's ``run_once()`` with the demo
source — grown past its 1,523 rows: it serves whatever file is already at its path — into a fresh
PostgreSQL database or a fresh SQLite file, each run in a child process of its own
(``python -m bench.postgres --sync-one``, the plan on stdin), the two alternated; reported as run
time and rows a second per backend and size.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg

from bench.common import Section, median, spread
from bench.postgres_common import BACKENDS, _order, _plain
from service.sources.demo import ROWS, demo_rows, ensure_demo_file
from tests.support.api import ADMIN_TOKEN
from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
LABEL = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def demo_file(path: Path, rows: int) -> Path:
    """The demo source's file with ``rows`` lines: its own, then copies of them under new
    order numbers."""
    partial = path.with_name(path.name + ".partial")
    ensure_demo_file(partial)
    base = demo_rows()
    extra = [
        (f"{int(str(row[0])) + (n // ROWS + 1) * 10_000_000:010d}", *row[1:])
        for n in range(rows - ROWS)
        for row in (base[n % ROWS],)
    ]
    with closing(sqlite3.connect(partial)) as conn:
        conn.executemany(
            f"INSERT INTO open_order_lines VALUES ({', '.join('?' * len(base[0]))})", extra
        )
        conn.commit()
    partial.replace(path)
    return path


async def _sync_run(plan: dict[str, Any], work: Path) -> dict[str, Any]:
    """One run of the service's scheduler into the plan's backend: seconds and rows."""
    from service.backend import open_backend
    from service.clock import utc_now
    from service.components import build_scheduler
    from service.settings import Settings
    from service.sources import build_source
    from service.wire import Status

    data = work / "data"
    data.mkdir()
    (data / "demo-source.sqlite3").symlink_to(plan["demo"])
    options: dict[str, Any] = {}
    if plan["url"] is not None:
        options = {"database_url": plan["url"], "admin_token": ADMIN_TOKEN, "node_name": "sync"}
    settings = Settings(
        database_path=data / "joblog.sqlite3",
        demo_delay_seconds=0,
        sync_interval_seconds=0,
        sync_on_start=False,
        sync_timeout_seconds=3600,
        log_level="warning",
        **options,
    )
    async with open_backend(settings, utc_now, serving=False) as backend:
        scheduler = build_scheduler(settings, backend, source=build_source(settings))
        try:
            started = time.perf_counter()
            log = await scheduler.run_once()
            seconds = time.perf_counter() - started
        finally:
            await scheduler.stop()
        assert log is not None
        last = await backend.store.last_details(log.id, 1)
    if log.status is not Status.success:
        raise RuntimeError(f"the run failed: {last[-1].message}")
    if plan["url"] is not None:
        with psycopg.connect(plan["url"]) as conn:
            found = conn.execute("SELECT count(*) FROM open_orders").fetchone()
        copied = found[0] if found else 0
    else:
        with closing(sqlite3.connect(settings.database_path)) as lite:
            copied = lite.execute("SELECT count(*) FROM open_orders").fetchone()[0]
    return {"seconds": seconds, "rows": copied}


def sync_once(plan: dict[str, Any]) -> dict[str, Any]:
    """:func:`_sync_run` in a fresh child process; its figures."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.postgres", "--sync-one"],
        cwd=ROOT,
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sync {plan['rows']} rows: exit {done.returncode}\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rows"] != plan["rows"]:
        raise RuntimeError(f"the run copied {result['rows']} rows, not {plan['rows']}")
    return result


def sync(server: PostgresServer, quick: bool, work: Path) -> dict[tuple[str, int], list[float]]:
    """Seconds of each run, per backend and size, the backends alternated."""
    sizes, repeats = ((ROWS, 100_000), 2) if quick else ((ROWS, 100_000, 1_000_000), 3)
    seconds: dict[tuple[str, int], list[float]] = {}
    for rows in sizes:
        demo = demo_file(work / f"demo-{rows}.sqlite3", rows)
        for n in range(repeats):
            for backend in _order(n):
                url = None
                if backend == "postgresql":
                    url = server.store_database(f"sync_{rows}_{n}")
                result = sync_once({"demo": str(demo), "rows": rows, "url": url})
                seconds.setdefault((backend, rows), []).append(result["seconds"])
                print(
                    f"sync {backend:10} {rows:>9,} rows {result['seconds']:6.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return seconds


def report_sync(section: Section, measured: dict[tuple[str, int], list[float]]) -> None:
    """The sync table."""
    rows = []
    for rows_count in sorted({rows for _, rows in measured}):
        rates = {b: [rows_count / s for s in measured[b, rows_count]] for b in BACKENDS}
        for backend in BACKENDS:
            rows.append(
                [
                    f"{rows_count:,}",
                    LABEL[backend],
                    len(measured[backend, rows_count]),
                    spread(measured[backend, rows_count], "s", 2),
                    _plain(rates[backend], 0),
                    "—"
                    if backend == "sqlite"
                    else f"{median(rates['postgresql']) / median(rates['sqlite']):.2f}",
                ]
            )
    section.table(
        ["demo rows", "into", "runs", "run time", "rows/s", "PostgreSQL / SQLite rows/s"], rows
    )
