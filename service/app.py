"""The one wiring point: create_app() registers every route, middleware and resource owner."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from service import appkeys
from service.clock import Clock, utc_now
from service.http import health, pages
from service.http.errors import json_errors
from service.http.security import security_headers
from service.settings import Settings
from service.store import Database


def create_app(settings: Settings, *, clock: Clock = utc_now) -> web.Application:
    """Build the application for ``settings``; ``clock`` is the one source of time."""
    app = web.Application(middlewares=[security_headers, json_errors])
    app[appkeys.SETTINGS] = settings

    async def database(app: web.Application) -> AsyncIterator[None]:
        db = await Database.open(
            settings.database_path,
            busy_timeout_seconds=settings.database_busy_timeout_seconds,
            clock=clock,
            zone=settings.zone,
        )
        app[appkeys.DATABASE] = db
        try:
            yield
        finally:
            await db.close()

    app.cleanup_ctx.append(database)

    app.router.add_get("/healthz", health.healthz)
    pages.add_routes(app)
    return app
