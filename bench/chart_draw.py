"""How long the overview's chart takes to draw a window, in a real browser.

A server on a database of 30 days at 288 runs a day (8,640 runs, one in 17 failed); headless
Chromium opens the overview, then switches the chart's window and waits until its bars are
drawn: the 30-day window (360 buckets of 2 hours, aggregated by the server) against the
24-hour one (288 buckets of 5 minutes) as the baseline, alternately. The time is from the
click to the last bar in the page (the request, the JSON, the SVG).

    python -m bench.chart_draw [--quick] [--out PATH]
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import common
from bench.common import Section
from service.store import to_db
from tests.support.browser import launch_chromium
from tests.support.server import ServerProcess

RUNS_PER_DAY = 288
DAYS = 30
GOAL_MS = 200.0
# Drawn: as many bars as the answer has buckets with runs.
DRAWN = "(count) => document.querySelectorAll('#chart rect.bar').length === count"


def seed(path: Path, now: datetime) -> None:
    """30 days of runs every 5 minutes as the service writes them (the server created the
    schema), one in 17 failed."""
    step = timedelta(days=1) / RUNS_PER_DAY
    start = now - timedelta(days=DAYS)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executemany(
            "INSERT INTO job_logs (name, status, created_at, updated_at) VALUES (?, ?, ?, ?)",
            [
                (
                    at.strftime("%Y%m%d%H%M%S"),
                    2 if k % 17 == 0 else 3,
                    to_db(at),
                    to_db(at + timedelta(seconds=20 + k % 40)),
                )
                for k in range(DAYS * RUNS_PER_DAY)
                for at in [start + k * step]
            ],
        )


def draw_times(repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"30d": [], "24h": []}
    with tempfile.TemporaryDirectory(prefix="joblog-chart-") as folder:
        work = Path(folder)
        with ServerProcess(
            work,
            SYNC_ON_START="false",
            SYNC_INTERVAL_SECONDS="300",
            LOG_LEVEL="warning",
            ALLOW_ANONYMOUS_VIEWERS="true",
        ) as server:
            server.wait_ready()
            seed(work / "data" / "joblog.sqlite3", datetime.now(UTC))
            with launch_chromium() as browser:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"{server.url}/")
                page.wait_for_selector("#chart rect.bar")
                for _ in range(repeat):
                    for window in ("30d", "24h", "6h"):
                        begun = time.monotonic()
                        with page.expect_response(lambda r: "timeline" in r.url) as answer:
                            page.click(f'.windows button[data-window="{window}"]')
                        bars = len(answer.value.json()["buckets"])
                        page.wait_for_function(DRAWN, arg=bars, polling="raf")
                        if window in times:  # 6h: only so that the next click draws anew
                            times[window].append((time.monotonic() - begun) * 1000)
                page.close()
    return times


def run(quick: bool) -> Section:
    repeat = 5 if quick else 20
    times = draw_times(repeat)
    section = Section(
        title="bench.chart_draw — the overview's chart, 30 days at 288 runs a day",
        command=f"python -m bench.chart_draw{' --quick' if quick else ''}",
        method=(
            f"{DAYS * RUNS_PER_DAY:,} runs (30 days, every 5 minutes); headless Chromium at "
            "1280x800 switches the chart's window and waits for its last bar: the request to "
            "GET /api/job_logs/timeline, the JSON and the SVG. The 24-hour window (288 buckets) "
            f"is the baseline, alternated with the 30-day one (360 buckets); {repeat} each."
        ),
    )

    def figures(values: list[float]) -> str:
        return f"{statistics.median(values):,.0f} ms ({min(values):,.0f} to {max(values):,.0f})"

    section.table(
        ["window", "buckets drawn", "click to last bar, median (min to max)"],
        [
            ["30 days", "360", figures(times["30d"])],
            ["24 hours (baseline)", "288", figures(times["24h"])],
        ],
    )
    median = statistics.median(times["30d"])
    section.goal(
        f"the 30-day window draws in ≤ {GOAL_MS:.0f} ms",
        median <= GOAL_MS,
        f"{median:,.0f} ms (24 hours: {statistics.median(times['24h']):,.0f} ms)",
    )
    return section


def main() -> None:
    common.main("chart_draw", "5 draws of each window instead of 20", lambda args: run(args.quick))


if __name__ == "__main__":
    main()
