"""Liveness: the event loop answers."""

from __future__ import annotations

from aiohttp import web


async def healthz(request: web.Request) -> web.Response:
    """200 ``{"status": "ok"}`` while the event loop runs; touches no database."""
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})
