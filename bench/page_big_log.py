"""How fast a run with 100,000 details opens in the page, against the raw download of its text.

Starts a real server on a fresh database holding one finished run of N details, then, in one run
and alternating, measures in headless Chromium (Debian's, through Playwright):
  - page_first_lines: from navigation to runs/<name> until its first lines are on screen;
  - page_all_lines:   until every line is loaded and the final banner shows;
and the baseline, the same lines fetched as text (GET /api/job_logs/<name>.txt) by the same
browser. Prints a Markdown table (median and spread of each) for docs/benchmarks.md.

    python bench/page_big_log.py [--details 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.browser import launch_chromium  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

NAME = "20251215143022"


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


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f} to {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--details", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="joblog-bench-"))
    first: list[float] = []
    full: list[float] = []
    text: list[float] = []
    with ServerProcess(
        work, SYNC_ON_START="false", SYNC_INTERVAL_SECONDS="0", LOG_LEVEL="warning"
    ) as server:
        server.wait_ready()
        seed(work / "data" / "joblog.sqlite3", args.details)
        with launch_chromium() as browser:
            for _ in range(args.repeat):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                started = time.monotonic()
                page.goto(f"{server.url}/runs/{NAME}")
                page.wait_for_selector("#run-lines li.line")
                first.append(time.monotonic() - started)
                page.wait_for_selector("#run-banner:not([hidden])", timeout=120_000)
                full.append(time.monotonic() - started)
                page.close()
                page = browser.new_page()
                page.goto(f"{server.url}/healthz")
                started = time.monotonic()
                count = page.evaluate(
                    "(url) => fetch(url).then((r) => r.text())"
                    ".then((t) => t.split('\\n').length - 1)",
                    f"api/job_logs/{NAME}.txt",
                )
                text.append(time.monotonic() - started)
                assert count == args.details, count
                page.close()
        server.stop()
    print(f"### Opening a run of {args.details:,} details in the page")
    print()
    print(
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, Python {platform.python_version()}, "
        f"`python bench/page_big_log.py --details {args.details} --repeat {args.repeat}`; "
        "median (min to max) of the runs, measured alternately in one process."
    )
    print()
    print("| measure | time | ratio to baseline |")
    print("| --- | --- | --- |")
    base = statistics.median(text)
    rows = (
        ("baseline: the same lines as text (`.txt`)", text),
        ("page: first lines on screen", first),
        ("page: every line loaded, banner shown", full),
    )
    for label, values in rows:
        print(f"| {label} | {spread(values)} | {statistics.median(values) / base:.2f} |")


if __name__ == "__main__":
    main()
