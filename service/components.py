"""The long-lived pieces and how they are built from the settings and the backend, for the
server and the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from service.backend import Backend
from service.events import EventHub
from service.metrics import Metrics
from service.notify import Notifier
from service.runlog import DetailListener
from service.schedule import Cron
from service.scheduler import Scheduler
from service.settings import Settings
from service.sources import Source
from service.store import JobLogStore
from service.sync import SyncJob, SyncOptions


@asynccontextmanager
async def open_notifier(settings: Settings, store: JobLogStore) -> AsyncIterator[Notifier | None]:
    """The webhook notifier when NOTIFY_WEBHOOK_URL is set (else None), closed at exit."""
    if settings.notify_webhook_url is None:
        yield None
        return
    notifier = Notifier(store, settings.notify_webhook_url, settings.public_url)
    await notifier.start()
    try:
        yield notifier
    finally:
        await notifier.close()


@asynccontextmanager
async def open_hub(
    settings: Settings, backend: Backend, metrics: Metrics
) -> AsyncIterator[EventHub]:
    """The event hub following the backend's store, started; stopped at exit. It wakes on the
    commits the backend reports (this process's; on PostgreSQL every node's) and, in SQLite
    mode, notices other processes' (run-once, the Rails app) by the file's change check."""
    hub = EventHub(
        backend.store,
        on_commit=backend.on_commit,
        poll_seconds=backend.poll_seconds,
        check_seconds=settings.events_check_seconds,
        watch=backend.watch,
        buffer=settings.sse_buffer_events,
        max_subscribers=settings.sse_max_clients,
        metrics=metrics,
    )
    await hub.start()
    try:
        yield hub
    finally:
        await hub.close()


def build_scheduler(
    settings: Settings,
    backend: Backend,
    *,
    source: Source,
    on_detail: DetailListener | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Scheduler:
    """The scheduler for these settings, running the sync job from ``source`` into the
    backend's target; with several nodes, on the shared grid with slots and take-over."""
    options = SyncOptions(
        batch_size=settings.sync_batch_size,
        min_ratio=settings.sync_min_ratio,
        key=settings.sync_key,
    )
    several = backend.several

    def job(epoch: int | None) -> SyncJob:
        return SyncJob(
            backend.store, backend.target, source, options, on_detail=on_detail, epoch=epoch
        )

    return Scheduler(
        store=backend.store,
        job=job,
        lock=backend.gate,
        interval_seconds=settings.sync_interval_seconds,
        cron=plan if isinstance(plan := settings.plan(), Cron) else None,
        on_start=settings.sync_on_start,
        timeout_seconds=settings.sync_timeout_seconds,
        clock=backend.clock,
        sleep=sleep,
        on_detail=on_detail,
        claim=several.claim if several is not None else None,
        takeover_seconds=several.takeover_seconds if several is not None else None,
    )
