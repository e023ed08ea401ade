"""The one wiring point: create_app() registers every route, middleware and resource owner."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from service import appkeys
from service.clock import Clock, utc_now
from service.components import build_scheduler, open_database, open_target
from service.http import health, pages
from service.http.errors import json_errors
from service.http.security import security_headers
from service.settings import Settings
from service.sources import build_source


def create_app(settings: Settings, *, clock: Clock = utc_now) -> web.Application:
    """Build the application for ``settings``; ``clock`` is the one source of time."""
    app = web.Application(middlewares=[security_headers, json_errors])
    app[appkeys.SETTINGS] = settings

    async def databases(app: web.Application) -> AsyncIterator[None]:
        async with open_database(settings, clock) as db, open_target(settings, db) as target:
            app[appkeys.DATABASE] = db
            app[appkeys.TARGET] = target
            yield

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

    app.cleanup_ctx.extend([databases, scheduler])

    app.router.add_get("/healthz", health.healthz)
    pages.add_routes(app)
    return app
