"""The one wiring point: create_app() registers every route, middleware and resource owner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from service import appkeys, logs
from service.backend import open_backend
from service.clock import Clock, utc_now
from service.components import (
    build_scheduler,
    open_hub,
    open_notifier,
)
from service.credentials import load_credentials
from service.http import event_stream, health, job_logs, openapi, pages, runs, sessions
from service.http.auth import access_control
from service.http.errors import json_errors
from service.http.params import strict_query
from service.http.security import security_headers
from service.late_watch import LateWatch
from service.metrics import Metrics
from service.notify import Notifier
from service.retention import Retention
from service.scheduler import Scheduler
from service.settings import Settings
from service.sources import build_source
from service.wire import JobLog


def create_app(settings: Settings, *, clock: Clock = utc_now) -> web.Application:
    """Build the application for ``settings``; ``clock`` is the one source of time."""
    # No endpoint reads a request body (POSTs refuse one): never buffer more than a trifle.
    app = web.Application(
        middlewares=[json_errors, access_control, strict_query], client_max_size=1024
    )
    app.on_response_prepare.append(security_headers)
    app[appkeys.SETTINGS] = settings
    app[appkeys.CLOCK] = clock
    node = settings.node if settings.database_url is not None else None
    metrics = app[appkeys.METRICS] = Metrics(node)

    async def credentials(app: web.Application) -> AsyncIterator[None]:
        app[appkeys.CREDENTIALS] = await asyncio.to_thread(load_credentials, settings)
        yield

    async def databases(app: web.Application) -> AsyncIterator[None]:
        async with open_backend(settings, clock) as backend:
            app[appkeys.BACKEND] = backend
            app[appkeys.STORE] = backend.store
            if backend.database is not None:
                app[appkeys.DATABASE] = backend.database
            last_success = await backend.store.last_success_at()
            if last_success is not None:
                metrics.succeeded_at(last_success)
            yield

    async def hub(app: web.Application) -> AsyncIterator[None]:
        async with open_hub(settings, app[appkeys.BACKEND], metrics) as hub:
            app[appkeys.HUB] = hub
            yield

    async def housekeeping(app: web.Application) -> AsyncIterator[None]:
        backend = app[appkeys.BACKEND]
        retention = Retention(
            backend.store,
            gate=backend.purge_gate,
            retention_days=settings.retention_days,
            archive_dir=settings.archive_dir,
            clock=clock,
            on_purged=metrics.purged.inc,
            claim_day=backend.several.claim_day if backend.several else None,
        )
        await retention.start()
        try:
            yield
        finally:
            await retention.stop()

    async def end_streams(app: web.Application) -> None:
        app[appkeys.HUB].end_streams()

    async def scheduler(app: web.Application) -> AsyncIterator[None]:
        async with (
            open_notifier(settings, app[appkeys.STORE]) as notifier,
            _scheduler(app, notifier),
        ):
            yield

    @asynccontextmanager
    async def _scheduler(app: web.Application, notifier: Notifier | None) -> AsyncIterator[None]:
        source = build_source(settings)
        app[appkeys.SOURCE] = source
        backend = app[appkeys.BACKEND]
        runner = build_scheduler(settings, backend, source=source, on_detail=logs.log_detail)
        _tell_of_runs(runner, metrics, notifier, several=backend.several is not None)
        metrics.watch(
            skipped_ticks=lambda: runner.skipped_ticks,
            subscribers=lambda: app[appkeys.HUB].subscriber_count,
        )
        app[appkeys.SCHEDULER] = runner
        await runner.start()
        late = None
        if notifier is not None:
            late = LateWatch(
                app[appkeys.STORE], notifier, settings.plan(), settings.late_after, clock
            )
            late.start()
        try:
            yield
        finally:
            if late is not None:
                await late.close()
            await runner.stop()

    app.cleanup_ctx.extend([databases, credentials, hub, housekeeping, scheduler])
    app.on_shutdown.append(end_streams)

    health.add_routes(app)
    job_logs.add_routes(app)
    runs.add_routes(app)
    event_stream.add_routes(app)
    sessions.add_routes(app)
    pages.add_routes(app)
    openapi.add_routes(app)  # last: it describes the routes above
    return app


def _tell_of_runs(
    runner: Scheduler, metrics: Metrics, notifier: Notifier | None, *, several: bool
) -> None:
    """The metrics and the notifier hear of the runs this node ends; with several nodes also of
    runs it closes for a lost node (every node's hub sees every run: counted here, once)."""

    def count_rows(log: JobLog, rows: int) -> None:
        metrics.last_run_rows.set(rows)

    runner.on_finished.append(count_rows)
    if notifier is not None:
        runner.on_finished.append(lambda log, _rows: notifier.run_ended(log))
    if several:
        runner.on_finished.append(lambda log, _rows: metrics.run_ended(log))
        runner.on_closed.append(metrics.run_ended)
        if notifier is not None:
            runner.on_closed.append(notifier.run_ended)
