"""The one wiring point: create_app() registers every route, middleware and resource owner."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from service import appkeys
from service.clock import Clock, utc_now
from service.components import build_scheduler, open_database, open_target
from service.events import EventHub
from service.http import health, job_logs, openapi, pages, runs, sse
from service.http.errors import json_errors
from service.http.security import security_headers
from service.settings import Settings
from service.sources import build_source


def create_app(settings: Settings, *, clock: Clock = utc_now) -> web.Application:
    """Build the application for ``settings``; ``clock`` is the one source of time."""
    app = web.Application(middlewares=[json_errors])
    app.on_response_prepare.append(security_headers)
    app[appkeys.SETTINGS] = settings

    async def databases(app: web.Application) -> AsyncIterator[None]:
        async with open_database(settings, clock) as db, open_target(settings, db) as target:
            app[appkeys.DATABASE] = db
            app[appkeys.TARGET] = target
            yield

    async def hub(app: web.Application) -> AsyncIterator[None]:
        events = EventHub(
            app[appkeys.DATABASE],
            poll_seconds=settings.events_poll_seconds,
            buffer=settings.sse_buffer_events,
            max_subscribers=settings.sse_max_clients,
        )
        await events.start()
        app[appkeys.HUB] = events
        try:
            yield
        finally:
            await events.close()

    async def end_streams(app: web.Application) -> None:
        app[appkeys.HUB].end_streams()

    async def scheduler(app: web.Application) -> AsyncIterator[None]:
        source = build_source(settings)
        app[appkeys.SOURCE] = source
        runner = build_scheduler(
            settings,
            db=app[appkeys.DATABASE],
            target=app[appkeys.TARGET],
            source=source,
            clock=clock,
        )
        app[appkeys.SCHEDULER] = runner
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    app.cleanup_ctx.extend([databases, hub, scheduler])
    app.on_shutdown.append(end_streams)

    app.router.add_get("/healthz", health.healthz)
    job_logs.add_routes(app)
    runs.add_routes(app)
    sse.add_routes(app)
    openapi.add_routes(app)
    pages.add_routes(app)
    return app
