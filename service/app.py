"""The one wiring point: create_app() registers every route, middleware and resource owner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from service import appkeys, logs
from service.clock import Clock, utc_now
from service.components import build_scheduler, open_database, open_notifier, open_target
from service.credentials import load_credentials
from service.events import EventHub
from service.http import event_stream, health, job_logs, openapi, pages, runs, sessions
from service.http.auth import access_control
from service.http.errors import json_errors
from service.http.params import strict_query
from service.http.security import security_headers
from service.late_watch import LateWatch
from service.metrics import Metrics
from service.notify import Notifier
from service.retention import Retention
from service.settings import Settings
from service.sources import build_source
from service.store import BackgroundBuild, Heartbeat, last_success_at
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
    metrics = app[appkeys.METRICS] = Metrics()

    async def credentials(app: web.Application) -> AsyncIterator[None]:
        app[appkeys.CREDENTIALS] = await asyncio.to_thread(load_credentials, settings)
        yield

    async def databases(app: web.Application) -> AsyncIterator[None]:
        async with open_database(settings, clock) as db, open_target(settings, db) as target:
            app[appkeys.DATABASE] = db
            app[appkeys.TARGET] = target
            heartbeat = app[appkeys.HEARTBEAT] = Heartbeat(db)
            last_success = await last_success_at(db)
            if last_success is not None:
                metrics.succeeded_at(last_success)
            # What an adopted database lacks (runs by status, search index) is built while serving.
            build = BackgroundBuild(db, max_rows=settings.adoption_batch_rows)
            build.start()
            try:
                yield
            finally:
                await build.close()
                await heartbeat.close()

    async def hub(app: web.Application) -> AsyncIterator[None]:
        events = EventHub(
            app[appkeys.DATABASE],
            poll_seconds=settings.events_poll_seconds,
            check_seconds=settings.events_check_seconds,
            buffer=settings.sse_buffer_events,
            max_subscribers=settings.sse_max_clients,
            metrics=metrics,
        )
        await events.start()
        app[appkeys.HUB] = events
        try:
            yield
        finally:
            await events.close()

    async def housekeeping(app: web.Application) -> AsyncIterator[None]:
        retention = Retention(
            app[appkeys.DATABASE],
            retention_days=settings.retention_days,
            archive_dir=settings.archive_dir,
            clock=clock,
            on_purged=metrics.purged.inc,
        )
        await retention.start()
        try:
            yield
        finally:
            await retention.stop()

    async def end_streams(app: web.Application) -> None:
        app[appkeys.HUB].end_streams()

    async def scheduler(app: web.Application) -> AsyncIterator[None]:
        db = app[appkeys.DATABASE]
        async with open_notifier(settings, db) as notifier, _scheduler(app, notifier):
            yield

    @asynccontextmanager
    async def _scheduler(app: web.Application, notifier: Notifier | None) -> AsyncIterator[None]:
        source = build_source(settings)
        app[appkeys.SOURCE] = source
        runner = build_scheduler(
            settings,
            db=app[appkeys.DATABASE],
            target=app[appkeys.TARGET],
            source=source,
            clock=clock,
            on_detail=logs.log_detail,
        )

        def count_rows(log: JobLog, rows: int) -> None:
            metrics.last_run_rows.set(rows)

        runner.on_finished.append(count_rows)
        if notifier is not None:
            runner.on_finished.append(lambda log, _rows: notifier.run_ended(log))
        metrics.watch(
            skipped_ticks=lambda: runner.skipped_ticks,
            subscribers=lambda: app[appkeys.HUB].subscriber_count,
        )
        app[appkeys.SCHEDULER] = runner
        await runner.start()
        late = None
        if notifier is not None:
            late = LateWatch(
                app[appkeys.DATABASE], notifier, settings.plan(), settings.late_after, clock
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
