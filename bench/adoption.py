"""How long the Rails app's writes wait while the service adopts a database with history.

Copies the seeded database exactly as Rails left it (no counts, no search index: see
bench.seed_history), starts a writer process that writes as Rails does (one detail line, in its
own ``BEGIN IMMEDIATE`` transaction, every 50 ms, busy timeout 5 s), then adopts the copy:

* the service: the real process (``python -m service``), serving at once; it fills the counts
  when it opens the file and builds the runs by status and the search index in short batches
  in the background, until ``/readyz`` says ``search: ready``;
* the baseline: what the service did before, in a process of its own: the composite index, the
  counts and the whole search index (FTS5 ``'rebuild'``) in the one transaction that creates
  them.

Each write's wait is its whole ``BEGIN IMMEDIATE … COMMIT``, measured by the writer.

    python -m bench.adoption [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Section, percentile
from bench.seed_history import DECADE, rails_copy
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
WAIT_GOAL_MS = 100.0
QUICK_RUNS = 10_000
WRITE_EVERY_SECONDS = 0.05
# What the service ran at its first start on such a file before: one transaction.
OLD_ADOPTION = (
    "CREATE INDEX IF NOT EXISTS index_job_logs_on_status_and_created_at "
    "ON job_logs(status, created_at)",
    "CREATE TABLE job_log_counts (status INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
    "INSERT INTO job_log_counts (status, n) SELECT status, count(*) FROM job_logs GROUP BY status",
    "CREATE VIRTUAL TABLE job_log_details_search USING fts5(message, "
    "content = 'job_log_details', content_rowid = 'id', "
    "tokenize = 'trigram case_sensitive 0', detail = 'none')",
    "INSERT INTO job_log_details_search (job_log_details_search) VALUES ('rebuild')",
)


def write_as_rails(path: str) -> None:
    """The writer process: a line every 50 ms until stdin closes; prints each write's
    (start, seconds) and the writes that failed, as JSON."""
    stop = threading.Event()

    def until_stdin_closes() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    waits: list[tuple[float, float, float]] = []
    failed = 0
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA foreign_keys=ON")
        (log_id,) = conn.execute("SELECT max(id) FROM job_logs").fetchone()
        print("writing", flush=True)
        n = 0
        while not stop.is_set():
            began = time.monotonic()
            locked = began
            try:
                conn.execute("BEGIN IMMEDIATE")
                locked = time.monotonic()
                conn.execute(
                    "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
                    "VALUES (?, ?, datetime('now'), datetime('now'))",
                    (log_id, f"Written by Rails during the adoption ({n})"),
                )
                conn.execute("COMMIT")
            except sqlite3.OperationalError:
                failed += 1
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            took = time.monotonic() - began
            waits.append((began, took, locked - began))
            n += 1
            stop.wait(max(0.0, WRITE_EVERY_SECONDS - took))
    print(json.dumps({"waits": waits, "failed": failed}), flush=True)


class Writer:
    """The writer process, started before the adoption, stopped after it."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.adoption", "--write-as-rails", str(path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "writing"

    def stop(self) -> dict[str, Any]:
        """Stop writing; every write's (start, seconds) and how many failed."""
        out, _ = self.process.communicate(timeout=60)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


def scratch_copy(source: Path, work: Path) -> Path:
    """A fresh copy of the Rails file to adopt."""
    target = work / "adopted.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, target)
    return target


def old_adoption(path: str) -> None:
    """The baseline process: the counts and the search index in one transaction."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("BEGIN IMMEDIATE")
        for statement in OLD_ADOPTION:
            conn.execute(statement)
        conn.execute("COMMIT")


def run_baseline(source: Path, work: Path) -> dict[str, Any]:
    """The writer's waits while the old adoption runs."""
    path = scratch_copy(source, work)
    writer = Writer(path)
    time.sleep(0.5)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "bench.adoption", "--old-adoption", str(path)], cwd=ROOT, check=True
    )
    ready = time.monotonic()
    time.sleep(0.5)
    return _result(writer.stop(), started, ready, ready)


def _search_state(url: str) -> str:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:
            return str(json.load(response).get("search", "?"))
    except OSError:
        return "down"


def run_service(source: Path, work: Path) -> dict[str, Any]:
    """The writer's waits while the service starts on the copy and builds its index."""
    path = scratch_copy(source, work)
    writer = Writer(path)
    time.sleep(0.5)
    env = {
        "DATABASE_PATH": str(path),
        "SYNC_ON_START": "false",
        "SYNC_INTERVAL_SECONDS": "0",
        "RETENTION_DAYS": "0",
    }
    (work / "service").mkdir(exist_ok=True)
    with ServerProcess(work / "service", **env) as server:
        server.wait_ready(within=120, every=0.02)
        serving = time.monotonic()
        while _search_state(server.url) != "ready":
            time.sleep(0.25)
        ready = time.monotonic()
        time.sleep(0.5)
        result = _result(writer.stop(), server.started_at, serving, ready)
        result["log"] = [
            line
            for line in server.logs().splitlines()
            if "search index" in line or "filled" in line
        ]
    return result


def _result(
    written: dict[str, Any], started: float, serving: float, ready: float
) -> dict[str, Any]:
    """The writes from the start of the adoption to its end, and their waits in ms."""
    writes = [
        (began, took * 1000, lock * 1000)
        for began, took, lock in written["waits"]
        if began + took >= started and began <= ready
    ]
    top = sorted(writes, key=lambda write: -write[1])[:5]
    print(
        "longest writes (at s, whole ms, lock ms):",
        [(round(began - started, 1), round(took), round(lock)) for began, took, lock in top],
        file=sys.stderr,
    )
    during = [took for _, took, _ in writes]
    building = [took for began, took, _ in writes if began > serving]
    return {
        "writes": len(writes),
        "failed": written["failed"],
        "longest_ms": max(during, default=0.0),
        "p99_ms": percentile(during, 99),
        "p50_ms": percentile(during, 50),
        "lock_longest_ms": max((lock for _, _, lock in writes), default=0.0),
        "opening_longest_ms": max((t for b, t, _ in writes if b <= serving), default=0.0),
        "building_longest_ms": max(building, default=0.0),
        "building_p99_ms": percentile(building, 99) if building else 0.0,
        "serving_s": serving - started,
        "ready_s": ready - started,
    }


def run(quick: bool) -> Section:
    """Adopt the decade database (quick: 10,000 runs, seeded in seconds) with each design, a
    writer going on."""
    name, logs = (f"{QUICK_RUNS // 1000}k", QUICK_RUNS) if quick else ("decade", DECADE)
    source, _ = rails_copy(name, logs)
    work = Path(tempfile.mkdtemp(prefix="joblog-adoption-"))
    try:
        baseline = run_baseline(source, work)
        print(f"baseline: {baseline}", file=sys.stderr, flush=True)
        service = run_service(source, work)
        for line in service.pop("log"):
            print(line, file=sys.stderr)
        print(f"service: {service}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as conn:
        (details,) = conn.execute("SELECT max(id) FROM job_log_details").fetchone()
    section = Section(
        title="bench.adoption — first start on a database with history, Rails writing",
        command=f"python -m bench.adoption{' --quick' if quick else ''}",
        method=(
            f"the {name} database as Rails left it ({logs:,} runs, {details:,} lines); a writer "
            "process adds a line as Rails does (its own BEGIN IMMEDIATE transaction, busy "
            "timeout 5 s) every 50 ms from before the adoption until the search index is "
            "complete; each write's wait is its whole transaction. Service: `python -m service` "
            "on the copy (counts filled at open; the runs by status, then the search index, "
            "built in batches in the background). Baseline: the previous adoption, the "
            "composite index, the counts and the FTS5 'rebuild' in one transaction, in a "
            "process of its own. One run each."
        ),
    )

    def row(label: str, r: dict[str, Any]) -> list[object]:
        return [
            label,
            f"{r['longest_ms']:,.0f} ms",
            f"{r['p99_ms']:,.0f} ms",
            f"{r['p50_ms']:,.1f} ms",
            f"{r['lock_longest_ms']:,.0f} ms",
            f"{r['writes']:,}",
            r["failed"],
            f"{r['serving_s']:,.1f} s",
            f"{r['ready_s']:,.1f} s",
        ]

    section.table(
        [
            "adoption",
            "longest write wait",
            "p99 wait",
            "p50 wait",
            "longest of it waiting for the lock",
            "writes",
            "failed (busy)",
            "serving after",
            "search ready after",
        ],
        [
            row("service (batches, background)", service),
            row("baseline (one transaction)", baseline),
        ],
    )
    section.table(
        ["service phase", "longest write wait", "p99 wait"],
        [
            ["opening the file (schema, counts)", f"{service['opening_longest_ms']:,.0f} ms", ""],
            [
                "building the runs by status and the search index",
                f"{service['building_longest_ms']:,.0f} ms",
                f"{service['building_p99_ms']:,.0f} ms",
            ],
        ],
    )
    section.goal(
        f"longest wait of a concurrent writer during the adoption of the {name} database "
        f"≤ {WAIT_GOAL_MS:.0f} ms",
        service["longest_ms"] <= WAIT_GOAL_MS and service["failed"] == 0,
        f"{service['longest_ms']:,.0f} ms (p99 {service['p99_ms']:,.0f} ms; baseline "
        f"{baseline['longest_ms']:,.0f} ms, {baseline['failed']} writes failed)",
    )
    if not quick and not (service["longest_ms"] <= WAIT_GOAL_MS and service["failed"] == 0):
        section.notes += LIMITS
    return section


# What the measurements of #13 showed, for the section when the goal is not met.
LIMITS = [
    "**What limits it, and what was tried** (#13, decade). The baseline's one transaction "
    "held every writer for 107 to 111 s (20 to 21 of about 90 writes failed after Rails' 5 s). "
    "Moving the search index to background batches of about 10 ms, with pauses longer than "
    "SQLite's busy-handler sleeps, left 1,432 ms: 1.1 s of it a `max(id)` that SQLite "
    "answered by scanning an index to its end inside the schema's transaction (now a scalar "
    "subquery: 55 ms for the whole opening), and 855 ms a writer's own COMMIT running the WAL "
    "checkpoint of the batches' pages (now a passive checkpoint after each batch). The "
    "composite index on (status, created_at) cannot be built in batches at all (CREATE INDEX is "
    "one statement: 0.3 to 0.5 s at a year, seconds at a decade): its order is now a table "
    "kept by triggers and built in batches, and the index itself is made only on young "
    "databases. What remains: a few waits of 230 to 330 ms for the lock during the search "
    "index's build (p99 85 ms): batches that ran long although their size aims at 10 ms, most "
    "likely where FTS5 merged the index's segments during the inserts (a cost that grows with "
    "the index, not with the batch; not yet confirmed by a trace); and, once, 300 ms for a "
    "writer's commit right after the opening. Next to try: "
    "FTS5's `automerge`/`crisismerge` set for the build with explicit bounded `merge` steps "
    "between batches.",
]


def _measure(args: argparse.Namespace) -> Section | None:
    if args.write_as_rails:
        write_as_rails(args.write_as_rails)
        return None
    if args.old_adoption:
        old_adoption(args.old_adoption)
        return None
    return run(args.quick)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--write-as-rails", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--old-adoption", metavar="PATH", help=argparse.SUPPRESS)


def main() -> None:
    common.main("adoption", "10,000 runs instead of the decade", _measure, _options)


if __name__ == "__main__":
    main()
