"""The app as the server builds it: liveness, the page, JSON errors, security headers."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient

from service import appkeys
from service.store import Database

Client = TestClient[web.Request, web.Application]


async def test_healthz(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_database_is_open_while_the_app_runs(client: Client) -> None:
    db = client.app[appkeys.DATABASE]
    assert isinstance(db, Database)
    assert db.path == client.app[appkeys.SETTINGS].database_path
    assert db.path.exists()


async def test_page_is_served_with_its_stylesheet(client: Client) -> None:
    page = await client.get("/")
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    assert 'href="static/style.css"' in html
    css = await client.get("/static/style.css")
    assert css.status == 200
    assert css.content_type == "text/css"


async def test_every_answer_carries_the_security_headers(client: Client) -> None:
    for path in ("/", "/healthz", "/static/style.css", "/no-such-page"):
        response = await client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        policy = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy


async def test_unknown_route_is_json_404(client: Client) -> None:
    response = await client.get("/no-such-page")
    assert response.status == 404
    assert response.content_type == "application/json"
    assert await response.json() == {"error": "Not Found"}


async def test_wrong_method_is_json_405_with_allow(client: Client) -> None:
    response = await client.post("/healthz")
    assert response.status == 405
    assert await response.json() == {"error": "Method Not Allowed"}
    assert "GET" in response.headers["Allow"]


async def test_static_paths_cannot_escape_the_folder(client: Client) -> None:
    for path in ("/static/../schema.sql", "/static/%2e%2e/schema.sql", "/static/"):
        response = await client.get(path)
        assert response.status in (403, 404)
        assert "CREATE TABLE" not in await response.text()


async def test_a_missing_static_file_is_a_json_404(client: Client) -> None:
    for path in ("/static/nope.js", "/static/", "/static/app.js/x"):
        response = await client.get(path)
        assert response.status == 404, path
        assert response.content_type == "application/json"
        assert "error" in await response.json()
    served = await client.get("/static/app.js")
    assert served.status == 200
    assert served.content_type in ("text/javascript", "application/javascript")
    assert served.headers["Cache-Control"] == "no-cache"


async def test_a_run_deep_link_serves_the_page_one_level_down(client: Client) -> None:
    page = await client.get("/runs/20251215143022_1")
    assert page.status == 200
    html = await page.text()
    assert '<base href="../">' in html
    assert "static/app.js" in html
    root = await (await client.get("/")).text()
    assert '<base href="./">' in root


async def test_a_malformed_run_link_is_404(client: Client) -> None:
    response = await client.get("/runs/not-a-run")
    assert response.status == 404
    assert (await response.json())["error"] == "no such page"
