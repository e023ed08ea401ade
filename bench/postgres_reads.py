"""The reads part of bench.postgres: bench.history's endpoints on PostgreSQL and on SQLite over
the same runs. bench.seed_history's cached year (--quick: 10,000 runs), 20 lines a run, as the
SQLite service has adopted it, is copied row for row (``COPY``, ids kept) into tables made as the
Rails migrations make them on PostgreSQL, then vacuumed and analysed as autovacuum would have.
The service starts on it with ``DATABASE_URL`` (adopting the tables and building its indexes
``CONCURRENTLY``, timed until ``/readyz`` says the search is ready) and on the SQLite file; each
endpoint is then measured on both, alternately: serial requests for p50/p99, bursts of
bench.history's CONCURRENCY for requests/s.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from bench.common import Section, median, percentile
from bench.history import CONCURRENCY, _burst, _serial, endpoints
from bench.postgres_common import BACKENDS, SERVICE_ENV, _get, _order, _plain
from bench.seed_history import DETAILS_PER_RUN, YEAR, prepare
from tests.support.postgres import PostgresServer
from tests.support.server import ServerProcess

# The seed's tables as the Rails migrations make them on PostgreSQL (bigserial ids,
# timestamp(6)); their indexes and foreign key come after the rows.
RAILS_TABLES = """
CREATE TABLE job_logs (
  id bigserial PRIMARY KEY,
  name character varying NOT NULL,
  status integer NOT NULL DEFAULT 0,
  created_at timestamp(6) without time zone NOT NULL,
  updated_at timestamp(6) without time zone NOT NULL
);
CREATE TABLE job_log_details (
  id bigserial PRIMARY KEY,
  job_log_id bigint NOT NULL,
  message text NOT NULL,
  created_at timestamp(6) without time zone NOT NULL,
  updated_at timestamp(6) without time zone NOT NULL
);
"""
RAILS_INDEXES = """
CREATE UNIQUE INDEX index_job_logs_on_name ON job_logs (name);
CREATE INDEX index_job_logs_on_status ON job_logs (status);
CREATE INDEX index_job_logs_on_created_at ON job_logs (created_at);
CREATE INDEX index_job_log_details_on_job_log_id ON job_log_details (job_log_id);
CREATE INDEX index_job_log_details_on_created_at ON job_log_details (created_at);
ALTER TABLE job_log_details ADD CONSTRAINT fk_rails_job_log_details_job_log
  FOREIGN KEY (job_log_id) REFERENCES job_logs (id);
SELECT setval('job_logs_id_seq', (SELECT max(id) FROM job_logs));
SELECT setval('job_log_details_id_seq', (SELECT max(id) FROM job_log_details));
"""
COPIED = {
    "job_logs": "id, name, status, created_at, updated_at",
    "job_log_details": "id, job_log_id, message, created_at, updated_at",
}


def _search_ready(url: str) -> bool:
    try:
        return bool(_get(f"{url}/readyz").get("search") == "ready")
    except OSError:  # 503 while unready, or not listening yet
        return False


def load(url: str, path: str) -> float:
    """Copy the SQLite database's runs and lines into ``url``'s Rails-made tables, then vacuum
    and analyse them; the seconds it took."""
    started = time.monotonic()
    with (
        closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as lite,
        psycopg.connect(url) as pg,
    ):
        pg.execute(RAILS_TABLES)
        for table, columns in COPIED.items():
            with pg.cursor() as cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in lite.execute(f"SELECT {columns} FROM {table} ORDER BY id"):
                    copy.write_row(row)
        pg.execute(RAILS_INDEXES)
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("VACUUM ANALYZE")
    return time.monotonic() - started


async def read_client(
    urls: dict[str, str], paths: dict[str, str], plan: dict[str, int]
) -> dict[str, Any]:
    """Each endpoint on both backends, alternating: serial requests, then bursts. An endpoint
    whose slower backend would take longer than the plan's budget gets fewer requests, the
    same number on both."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 3)
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=connector) as session:
        for label, path in paths.items():
            targets = {backend: urls[backend] + path for backend in BACKENDS}
            slowest = max([median(await _serial(session, url, 5)) for url in targets.values()])
            fits = int(plan["budget"] * 1000 / slowest)
            serial = max(2 * plan["rounds"], min(plan["serial"], fits))
            burst = max(CONCURRENCY, min(plan["burst"], fits))
            latency: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
            rate: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
            for n in range(plan["rounds"]):
                for backend in _order(n):
                    count = serial // plan["rounds"]
                    latency[backend] += await _serial(session, targets[backend], count)
            for n in range(plan["bursts"]):
                for backend in _order(n):
                    rate[backend].append(await _burst(session, targets[backend], burst))
            results[label] = {"latency": latency, "rate": rate, "burst": burst}
            print(f"{label}: {serial} serial, bursts of {burst}", file=sys.stderr, flush=True)
    return results


def reads(server: PostgresServer, quick: bool, work: Path) -> dict[str, Any]:
    """The history endpoints on both backends, over the same runs."""
    name, logs = ("10k", 10_000) if quick else ("year", YEAR)
    db = prepare(name, logs)
    url = server.store_database("reads")
    print(f"copying {name} into PostgreSQL", file=sys.stderr, flush=True)
    loaded = load(url, db["path"])
    for backend in BACKENDS:
        (work / f"reads-{backend}").mkdir()
    env = {**SERVICE_ENV, "NODE_NAME": "reads"}
    with ServerProcess(work / "reads-postgresql", DATABASE_URL=url, **env) as pg:
        ready = {"postgresql": pg.wait_ready(within=600)}
        searchable = pg.wait_until(
            lambda: _search_ready(pg.url), "search index not built", within=1800, every=0.5
        )
        with ServerProcess(work / "reads-sqlite", DATABASE_PATH=db["path"], **env) as lite:
            ready["sqlite"] = lite.wait_ready(within=120)
            plan = {
                "serial": 100 if quick else 300,
                "rounds": 2 if quick else 6,
                "bursts": 2 if quick else 3,
                "burst": 320 if quick else 960,
                # Seconds of serial requests to the slower backend, per endpoint, at most.
                "budget": 5 if quick else 10,
            }
            print("measuring reads", file=sys.stderr, flush=True)
            urls = {"sqlite": lite.url, "postgresql": pg.url}
            results = asyncio.run(read_client(urls, endpoints(db["path"], logs), plan))
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return {
        "name": name,
        "db": db,
        "loaded": loaded,
        "ready": ready,
        "searchable": searchable,
        "bytes": {"sqlite": Path(db["path"]).stat().st_size, "postgresql": row[0] if row else 0},
        "results": results,
    }


def report_reads(section: Section, measured: dict[str, Any]) -> None:
    """The reads' tables."""
    logs = measured["db"]["logs"]
    rows = []
    for label, result in measured["results"].items():
        lat, rate = result["latency"], result["rate"]
        rows.append(
            [
                label,
                f"{len(lat['sqlite'])} / {result['burst']}",
                *[f"{percentile(lat[b], 50):.2f}" for b in BACKENDS],
                *[f"{percentile(lat[b], 99):.2f}" for b in BACKENDS],
                *[_plain(rate[b], 0) for b in BACKENDS],
                f"{median(rate['postgresql']) / median(rate['sqlite']):.2f}",
            ]
        )
    section.table(
        [
            f"{measured['name']}: {logs:,} runs, {logs * DETAILS_PER_RUN:,} lines",
            "requests: serial / burst",
            "SQLite p50 ms",
            "PostgreSQL p50 ms",
            "SQLite p99 ms",
            "PostgreSQL p99 ms",
            "SQLite req/s",
            "PostgreSQL req/s",
            "PostgreSQL / SQLite req/s",
        ],
        rows,
    )
    db, size = measured["db"], measured["bytes"]
    section.table(
        ["database", "size MB", "made by", "made in s", "service ready s", "search ready s"],
        [
            [
                "SQLite",
                f"{size['sqlite'] / 2**20:,.0f}",
                "bench.seed_history, adopted (search index built to the end)",
                f"{db['adopt_seconds']:.1f} (adoption)",
                f"{measured['ready']['sqlite']:.2f}",
                "at start",
            ],
            [
                "PostgreSQL",
                f"{size['postgresql'] / 2**20:,.0f}",
                "COPY of the same rows, Rails' indexes, VACUUM ANALYZE; then the service's "
                "schema and indexes",
                f"{measured['loaded']:.1f} (COPY, Rails' indexes, VACUUM)",
                f"{measured['ready']['postgresql']:.2f}",
                f"{measured['searchable']:.1f}",
            ],
        ],
    )
