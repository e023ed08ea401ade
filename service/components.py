"""The long-lived pieces and how they are built from the settings, for the server and the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from service.clock import Clock
from service.notify import Notifier
from service.runlock import RunLock
from service.runlog import DetailListener
from service.schedule import Cron
from service.scheduler import Scheduler
from service.settings import Settings
from service.sources import Source
from service.store import Database
from service.sync import SyncJob, SyncOptions


@asynccontextmanager
async def open_database(settings: Settings, clock: Clock) -> AsyncIterator[Database]:
    """The job-log database, closed at exit."""
    db = await Database.open(
        settings.database_path,
        busy_timeout_seconds=settings.database_busy_timeout_seconds,
        clock=clock,
        zone=settings.zone,
    )
    try:
        yield db
    finally:
        await db.close()


@asynccontextmanager
async def open_target(settings: Settings, db: Database) -> AsyncIterator[Database]:
    """The database that receives open_orders: the job-log one unless TARGET_DATABASE_PATH."""
    path = settings.target_database_path
    if path is None or path.resolve() == settings.database_path.resolve():
        yield db
        return
    target = await Database.open(
        path,
        busy_timeout_seconds=settings.database_busy_timeout_seconds,
        clock=db.clock,
        apply_schema=False,
    )
    try:
        yield target
    finally:
        await target.close()


@asynccontextmanager
async def open_notifier(settings: Settings, db: Database) -> AsyncIterator[Notifier | None]:
    """The webhook notifier when NOTIFY_WEBHOOK_URL is set (else None), closed at exit."""
    if settings.notify_webhook_url is None:
        yield None
        return
    notifier = Notifier(db, settings.notify_webhook_url, settings.public_url)
    await notifier.start()
    try:
        yield notifier
    finally:
        await notifier.close()


def build_scheduler(
    settings: Settings,
    *,
    db: Database,
    target: Database,
    source: Source,
    clock: Clock,
    on_detail: DetailListener | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Scheduler:
    """The scheduler for these settings, running the sync job from ``source`` into ``target``."""
    options = SyncOptions(
        batch_size=settings.sync_batch_size,
        min_ratio=settings.sync_min_ratio,
        key=settings.sync_key,
    )
    return Scheduler(
        db=db,
        job=lambda: SyncJob(db, target, source, options, on_detail=on_detail),
        lock=RunLock.beside(settings.database_path),
        interval_seconds=settings.sync_interval_seconds,
        cron=plan if isinstance(plan := settings.plan(), Cron) else None,
        on_start=settings.sync_on_start,
        timeout_seconds=settings.sync_timeout_seconds,
        clock=clock,
        sleep=sleep,
        on_detail=on_detail,
    )
