"""A job-log database as the seed's Rails app would have left it after months or years.

The seed's own SQL schema (its tables and indexes, nothing of ours), one run every five minutes
(288 a day) with 20 details each, in Rails' timestamp format (UTC, ``.ffffff`` left out when it
is zero) and the seed's names (``YYYYMMDDhhmmss`` of the start). About 3 % of runs end in error,
the newest is still processing, and one run in a thousand hits a deadlock: the needle for
the search benchmark.

    python -m bench.seed_history PATH --logs 105120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from service.store import BackgroundBuild, Database

ROOT = Path(__file__).resolve().parents[1]
SEED_SCHEMA = ROOT / "tests" / "fixtures" / "seed_schema.sql"
RUNS_PER_DAY = 288
DETAILS_PER_RUN = 20
YEAR = 365 * RUNS_PER_DAY
DECADE = 10 * YEAR
# The text one run in a thousand carries, for a search that finds a few runs.
NEEDLE = "Deadlock victim"
_END = datetime(2026, 11, 1, tzinfo=UTC)
_BATCH = 20_000
# Where the benchmarks keep their seeded and adopted databases between runs.
CACHE = Path(tempfile.gettempdir()) / "joblog-history-bench"


def rails_time(moment: datetime) -> str:
    """A UTC timestamp as Rails' SQLite adapter writes it."""
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text if moment.microsecond == 0 else f"{text}.{moment.microsecond:06d}"


def _messages(rng: random.Random, outcome: str) -> list[str]:
    records = rng.randint(800, 2400)
    batches = 12
    lines = [
        "Job started - SyncOpenOrdersJob",
        "Connecting to SQL Server CASQL2.inxintl.com...",
        "Connected successfully",
        "Fetching records from vwZSDOrder_Advanced...",
        f"Fetched {records:,} records",
        "Truncating existing open_orders table...",
        f"Importing records in batches of {-(-records // batches)}...",
    ]
    size = -(-records // batches)
    for n in range(1, batches + 1):
        count = min(size, records - size * (n - 1))
        lines.append(f"Batch {n}/{batches} imported ({max(count, 0)} records)")
    if outcome == "error":
        lines.append(
            "ERROR: Connection failed - TinyTDS::Error: Login failed for user 'zsdOrder8800'"
        )
    elif outcome == "deadlock":
        lines.append(
            f"ERROR: {NEEDLE} (process {rng.randint(50, 999)}) - transaction was rolled back"
        )
    else:
        lines.append(
            f"Job completed successfully - Total: {records:,} records in {rng.randint(15, 40)} "
            "seconds"
        )
    return lines


def _runs(logs: int, seed: int) -> Iterator[tuple[tuple[object, ...], list[tuple[object, ...]]]]:
    rng = random.Random(seed)
    start = _END - timedelta(minutes=5 * logs)
    for i in range(logs):
        began = start + timedelta(minutes=5 * i, microseconds=rng.randrange(0, 2_000_000))
        roll = rng.random()
        outcome = "deadlock" if roll < 0.001 else "error" if roll < 0.03 else "success"
        status = 2 if outcome != "success" else 3
        if i == logs - 1:
            status = 1
        lines = _messages(rng, outcome)
        moments = [
            began + timedelta(seconds=n, microseconds=rng.randrange(1_000_000))
            for n in range(len(lines))
        ]
        name = began.strftime("%Y%m%d%H%M%S")
        log = (i + 1, name, status, rails_time(began), rails_time(moments[-1]))
        details: list[tuple[object, ...]] = [
            (i + 1, text, rails_time(m), rails_time(m))
            for text, m in zip(lines, moments, strict=True)
        ]
        yield log, details


def seed(path: Path, logs: int, *, seed_value: int = 20251215) -> float:
    """Create ``path`` with the seed's schema and ``logs`` runs; the seconds it took."""
    started = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with closing(sqlite3.connect(partial, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.executescript(SEED_SCHEMA.read_text())
        log_rows: list[tuple[object, ...]] = []
        detail_rows: list[tuple[object, ...]] = []

        def flush() -> None:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO job_logs (id, name, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                log_rows,
            )
            conn.executemany(
                "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
                "VALUES (?, ?, ?, ?)",
                detail_rows,
            )
            conn.execute("COMMIT")
            log_rows.clear()
            detail_rows.clear()

        for log, details in _runs(logs, seed_value):
            log_rows.append(log)
            detail_rows.extend(details)
            if len(log_rows) >= _BATCH // DETAILS_PER_RUN:
                flush()
        if log_rows:
            flush()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    partial.rename(path)
    return time.monotonic() - started


def rails_copy(name: str, logs: int) -> tuple[Path, float | None]:
    """The database of ``logs`` runs exactly as Rails left it (never adopted: the adoption
    benchmark starts from it), seeded once into the cache; and how long seeding took (None
    when the file was seeded outside this module, untimed)."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{name}-rails.sqlite3"
    facts_path = CACHE / f"{name}-rails.json"
    if path.exists() and facts_path.exists():
        facts = json.loads(facts_path.read_text())
        if facts.get("logs") == logs:
            took = facts.get("seed_seconds")
            return path, None if took is None else float(took)
    path.unlink(missing_ok=True)
    print(f"seeding {name}: {logs:,} logs", file=sys.stderr, flush=True)
    took = seed(path, logs)
    facts_path.write_text(json.dumps({"logs": logs, "seed_seconds": took}))
    return path, took


def prepare(name: str, logs: int) -> dict[str, Any]:
    """A cached copy of :func:`rails_copy` adopted by the service, and its facts."""
    path = CACHE / f"{name}.sqlite3"
    facts_path = CACHE / f"{name}.json"
    if path.exists() and facts_path.exists():
        facts = json.loads(facts_path.read_text())
        if facts.get("logs") == logs and "adopt_seconds" in facts:
            return {**facts, "path": str(path), "cached": True}
    rails, took = rails_copy(name, logs)
    shutil.copyfile(rails, path)
    facts = {"logs": logs, "seed_seconds": took, "rails_bytes": path.stat().st_size}
    print(f"adopting {name}", file=sys.stderr, flush=True)
    started = time.monotonic()
    asyncio.run(_adopt(path))
    facts["adopt_seconds"] = time.monotonic() - started
    facts["adopted_bytes"] = path.stat().st_size
    with closing(sqlite3.connect(path)) as conn:
        facts["search_index_bytes"] = conn.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'job_log_details_search%'"
        ).fetchone()[0]
    facts_path.write_text(json.dumps(facts))
    return {**facts, "path": str(path), "cached": False}


async def _adopt(path: Path) -> None:
    """Adopt as the service does, and build the search index to the end before anything is
    measured (the service builds it in the background; meanwhile searches scan)."""
    db = await Database.open(path)
    try:
        # Nobody else writes here: big batches, no pauses.
        build = BackgroundBuild(db, max_rows=200_000, first_rows=50_000, target_seconds=1.0)
        while not await build.step():
            pass
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seed_history")
    parser.add_argument("path", type=Path)
    parser.add_argument("--logs", type=int, default=YEAR)
    args = parser.parse_args()
    took = seed(args.path, args.logs)
    print(f"{args.logs:,} logs, {args.logs * DETAILS_PER_RUN:,} details in {took:.1f} s")


if __name__ == "__main__":
    main()
