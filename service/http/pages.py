"""The static page and its files."""

from __future__ import annotations

from aiohttp import web

from service.resources import static_dir


async def index(request: web.Request) -> web.FileResponse:
    """The page itself."""
    return web.FileResponse(static_dir() / "index.html", headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    """Serve the page at / and its files under /static/."""
    app.router.add_get("/", index)
    app.router.add_static("/static/", static_dir(), name="static", follow_symlinks=False)
