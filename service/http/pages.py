"""The page: served at ``/`` and at every deep link ``/runs/<name>``.

Every URL in the page is relative to its ``<base href>``, so it works behind a reverse proxy
under any sub-path: ``./`` at the root, ``../`` one level down at ``runs/<name>``.
"""

from __future__ import annotations

from functools import cache

from aiohttp import web

from service.http.auth import Access, requires
from service.resources import static_dir
from service.wire import NAME_PATTERN

_BASE = '<base href="./">'


@cache
def _page(base: str) -> str:
    html = (static_dir() / "index.html").read_text(encoding="utf-8")
    return html.replace(_BASE, f'<base href="{base}">', 1)


# The page's files hold no data (every byte of that comes from the API, behind a viewer
# credential): anyone may load them, so a caller without one gets the sign-in form.


@requires(Access.public)
async def index(request: web.Request) -> web.Response:
    """The page at the root."""
    return _html(_page("./"))


@requires(Access.public)
async def run_page(request: web.Request) -> web.Response:
    """The page at a run's deep link; the page itself opens the run."""
    if not NAME_PATTERN.fullmatch(request.match_info["name"]):
        raise web.HTTPNotFound(reason="no such page")
    return _html(_page("../"))


def _html(text: str) -> web.Response:
    return web.Response(
        text=text, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-cache"}
    )


@requires(Access.public)
async def static_file(request: web.Request) -> web.FileResponse:
    """A file of the page's folder; anything that resolves outside it (``..``, an absolute
    path, a symlink pointing out) or is not a file is a JSON 404."""
    root = static_dir().resolve()
    try:
        path = (root / request.match_info["path"]).resolve()
        found = path.is_relative_to(root) and path.is_file()
    except (OSError, ValueError):  # a NUL, a name too long
        found = False
    if not found:
        raise web.HTTPNotFound(reason="no such file")
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    """Serve the page at / and runs/<name>, and its files under /static/."""
    app.router.add_get("/", index)
    app.router.add_get("/runs/{name}", run_page)
    app.router.add_get("/static/{path:.+}", static_file)
