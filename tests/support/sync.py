"""The sync job and its scheduler, built from settings exactly as the service builds them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path

from service.clock import Clock, utc_now
from service.components import build_scheduler, open_database, open_target
from service.scheduler import Scheduler
from service.settings import Settings
from service.sources import build_source
from service.store import Database, JobLog, JobLogDetail, get_job_log


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
        return [d.message for d in (await get_job_log(self.db, job_log_id)).details]


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

    async with open_database(settings, clock) as db, open_target(settings, db) as target:
        scheduler = build_scheduler(
            settings, db=db, target=target, source=source, clock=clock, on_detail=record
        )
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
