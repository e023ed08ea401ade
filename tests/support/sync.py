"""The sync job and its scheduler, built from settings exactly as the service builds them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path

from service.backend import Backend, open_backend
from service.clock import Clock, utc_now
from service.components import build_scheduler
from service.scheduler import Scheduler
from service.settings import Settings
from service.sources import build_source
from service.store import Database, SqliteTarget, job_log_with_details
from service.wire import JobLog, JobLogDetail, JobLogWithDetails

from .wait import wait_for_async


def run_lines(source: str) -> list[str]:
    """What a successful run of the 1,523 demo rows writes before its last line, in order (the
    seed's lines), reading from ``source`` (as its "Connecting to" line names it)."""
    return [
        "Job started - SyncOpenOrdersJob",
        f"Connecting to {source}...",
        "Connected successfully",
        "Fetching records from vwZSDOrder_Advanced...",
        "Importing records in batches of 500...",
        "Batch 1/4 imported (500 records)",
        "Batch 2/4 imported (500 records)",
        "Batch 3/4 imported (500 records)",
        "Batch 4/4 imported (23 records)",
        "Fetched 1,523 records",
        "Replacing open_orders table...",
    ]


DEMO_DETAILS = run_lines("demo source")
"""What a run on the demo source writes before its last line."""


@dataclass
class Harness:
    """The service's pieces for one test."""

    db: Database
    target: Database
    scheduler: Scheduler
    seen: list[JobLogDetail]
    appended: asyncio.Event

    async def until(self, prefix: str) -> None:
        """Return once a detail starting with ``prefix`` has been written (the per-test
        timeout bounds the wait)."""
        while not any(d.message.startswith(prefix) for d in self.seen):
            self.appended.clear()
            await self.appended.wait()

    async def messages(self, job_log_id: int) -> list[str]:
        """The details of a log, in order."""
        return [d.message for d in (await job_log_with_details(self.db, job_log_id)).details]


async def wait_ended(db: Database, job_log: int | str, *, every: float = 0.02) -> JobLogWithDetails:
    """The log ``job_log`` (id or name) once it has ended, well or badly."""

    async def ended() -> JobLogWithDetails | None:
        log = await job_log_with_details(db, job_log)
        return log if log.status.finished else None

    return await wait_for_async(ended, f"job log {job_log} ended", every=every)


def with_source(settings: Settings, odbc: str, **changes: object) -> Settings:
    """``settings`` reading from the ODBC connection string ``odbc``, with ``changes``."""
    return Settings(
        **{
            **settings.model_dump(exclude_unset=True, exclude={"source_odbc"}),
            "source_odbc": odbc,
            **changes,
        }
    )


@asynccontextmanager
async def sync_service(settings: Settings, clock: Clock = utc_now) -> AsyncIterator[Harness]:
    """Databases, source and scheduler for ``settings``; the scheduler's loop is not started."""
    source = build_source(settings)
    seen: list[JobLogDetail] = []
    appended = asyncio.Event()

    def record(log: JobLog, detail: JobLogDetail) -> None:
        seen.append(detail)
        appended.set()

    async with open_backend(settings, clock, serving=False) as backend:
        db, target = sqlite_of(backend), sqlite_target_of(backend)
        scheduler = build_scheduler(settings, backend, source=source, on_detail=record)
        try:
            yield Harness(db, target, scheduler, seen, appended)
        finally:
            await scheduler.stop()


def table_rows(database: Path, table: str = "open_orders") -> list[tuple[object, ...]]:
    """Every row of ``table`` in ``database``, in rowid order."""
    with closing(sqlite3.connect(database)) as conn:
        return list(conn.execute(f"SELECT * FROM {table} ORDER BY rowid"))


def tables(database: Path) -> set[str]:
    """The names of the tables in ``database``."""
    with closing(sqlite3.connect(database)) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def sqlite_of(backend: Backend) -> Database:
    """The job-log database of a backend in SQLite mode."""
    assert backend.database is not None, "SQLite mode"
    return backend.database


def sqlite_target_of(backend: Backend) -> Database:
    """The database receiving open_orders, in SQLite mode."""
    assert isinstance(backend.target, SqliteTarget), "SQLite mode"
    return backend.target.db
