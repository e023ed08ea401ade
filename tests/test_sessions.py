"""Browser sessions and anonymous viewers: the cookie on the wire, its end, and its origin rules."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from http.cookies import SimpleCookie
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient, AiohttpServer

from service.http.access_log import AccessLogger
from service.settings import Settings
from tests.support.api import ADMIN_TOKEN, MakeApp, MakeClient
from tests.support.clock import FakeClock
from tests.support.rawhttp import exchange_async, request_bytes

Client = TestClient[web.Request, web.Application]
VIEW_TOKEN = "test-viewer-token-9876543210"


@pytest.fixture
def guarded(settings: Settings) -> Settings:
    """A service nobody may view without a credential."""
    return settings.model_copy(
        update={"view_token": SecretStr(VIEW_TOKEN), "allow_anonymous_viewers": False}
    )


def set_cookie(response: Any) -> dict[str, str]:
    """The attributes of the session cookie a response sets, as sent on the wire."""
    header = next(v for v in response.headers.getall("Set-Cookie") if "joblog_session" in v)
    parsed = SimpleCookie()
    parsed.load(header)
    morsel = parsed["joblog_session"]
    flags = {k.lower(): v for k, v in morsel.items() if v}
    flags["value"] = morsel.value
    flags["raw"] = header
    return flags


async def sign_in(client: Client, token: str, **headers: str) -> Any:
    response = await client.post("/api/session", json={"token": token}, headers=headers)
    client.session.cookie_jar.clear()  # every request below says what it carries
    return response


async def stats_with(client: Client, cookie: str) -> int:
    async with client.get("/api/job_logs/stats", headers={"Cookie": cookie}) as response:
        return response.status


async def test_the_cookie_on_the_wire(make_client: MakeClient, guarded: Settings) -> None:
    client = await make_client(guarded)
    response = await sign_in(client, ADMIN_TOKEN)
    assert response.status == 200
    assert await response.json() == {
        "role": "admin",
        "via": "session",
        "user": None,
        "expires_at": "2025-12-16T02:30:22.000000Z",
    }
    cookie = set_cookie(response)
    assert "HttpOnly" in cookie["raw"]
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert "Secure" not in cookie["raw"]  # plain http on loopback
    assert cookie["max-age"] == str(12 * 3600)
    assert ADMIN_TOKEN not in cookie["raw"]
    assert response.headers["Cache-Control"] == "no-store"
    assert await stats_with(client, f"joblog_session={cookie['value']}") == 200


async def test_behind_a_trusted_proxy_over_https_the_cookie_is_secure_under_its_prefix(
    make_client: MakeClient, guarded: Settings
) -> None:
    trusted = (ipaddress.ip_network("127.0.0.1"),)
    client = await make_client(guarded, trusted_proxies=trusted)
    forwarded = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "joblog.plant.example",
        "X-Forwarded-Prefix": "/joblog",
    }
    cookie = set_cookie(await sign_in(client, VIEW_TOKEN, **forwarded))
    assert "Secure" in cookie["raw"]
    assert cookie["path"] == "/joblog/"


async def test_forwarded_https_from_an_untrusted_address_changes_no_flag(
    make_client: MakeClient, guarded: Settings
) -> None:
    client = await make_client(guarded)
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/elsewhere"}
    cookie = set_cookie(await sign_in(client, VIEW_TOKEN, **headers))
    assert "Secure" not in cookie["raw"]
    assert cookie["path"] == "/"


async def test_public_url_scopes_the_cookie_to_its_path(
    make_client: MakeClient, guarded: Settings
) -> None:
    client = await make_client(guarded, public_url="https://plant.example/tools/joblog/")
    cookie = set_cookie(await sign_in(client, VIEW_TOKEN))
    assert cookie["path"] == "/tools/joblog/"


async def test_a_changed_token_ends_every_session_of_its_role(
    make_client: MakeClient, guarded: Settings
) -> None:
    first = await make_client(guarded)
    admin = set_cookie(await sign_in(first, ADMIN_TOKEN))["value"]
    viewer = set_cookie(await sign_in(first, VIEW_TOKEN))["value"]
    changed = await make_client(guarded, admin_token=SecretStr("a-brand-new-admin-token-42"))
    assert await stats_with(changed, f"joblog_session={admin}") == 401
    assert await stats_with(changed, f"joblog_session={viewer}") == 200


async def test_an_expired_session_gets_401(
    make_client: MakeClient, guarded: Settings, clock: FakeClock
) -> None:
    client = await make_client(guarded, session_hours=1)
    cookie = f"joblog_session={set_cookie(await sign_in(client, VIEW_TOKEN))['value']}"
    clock.advance(3599)
    assert await stats_with(client, cookie) == 200
    clock.advance(2)
    assert await stats_with(client, cookie) == 401
    who = await (await client.get("/api/session", headers={"Cookie": cookie})).json()
    assert who["role"] is None


async def test_a_tampered_cookie_is_nobody(make_client: MakeClient, guarded: Settings) -> None:
    client = await make_client(guarded)
    value = set_cookie(await sign_in(client, VIEW_TOKEN))["value"]
    role, expires, nonce, mac = value.split(".")
    for forged in (
        f"admin.{expires}.{nonce}.{mac}",  # a viewer's MAC does not make an admin
        f"viewer.{int(expires) + 86400}.{nonce}.{mac}",  # nor a longer life
        f"{role}.{expires}.{nonce}.{mac[:-2]}AA",
        f"{role}.{expires}.{nonce}",
        "",
    ):
        assert await stats_with(client, f"joblog_session={forged}") == 401, forged


async def test_sign_out_clears_the_cookie(make_client: MakeClient, guarded: Settings) -> None:
    client = await make_client(guarded)
    await sign_in(client, VIEW_TOKEN)
    response = await client.delete("/api/session")
    assert response.status == 204
    cleared = set_cookie(response)
    assert cleared["value"] == ""
    assert cleared["max-age"] == "0"
    assert cleared["path"] == "/"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"token": "not-the-right-token-1"}', "application/json", 403),
        (b"{}", "application/json", 400),
        (b'{"token": ""}', "application/json", 400),
        (b"not json", "application/json", 400),
        (b'{"token": 5}', "application/json", 400),
        (f"token={ADMIN_TOKEN}".encode(), "application/x-www-form-urlencoded", 415),
        (b'{"token": "' + b"x" * 2000 + b'"}', "application/json", 400),
        (b'{"token": "' + b"x" * 20000 + b'"}', "application/json", 413),
    ],
)
async def test_a_bad_sign_in_sets_no_cookie(
    make_client: MakeClient,
    guarded: Settings,
    body: bytes,
    content_type: str,
    status: int,
) -> None:
    client = await make_client(guarded)
    response = await client.post("/api/session", data=body, headers={"Content-Type": content_type})
    assert response.status == status, await response.text()
    assert "Set-Cookie" not in response.headers
    assert "error" in await response.json()
    if status == 400:
        assert (await response.json())["field"] == "token"


async def test_the_metrics_token_signs_nobody_in(
    make_client: MakeClient, guarded: Settings
) -> None:
    metrics = "test-metrics-token-5555555555"
    client = await make_client(guarded, metrics_token=SecretStr(metrics))
    assert (await sign_in(client, metrics)).status == 403


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site"},
        {"Host": "rebind.attacker.example"},
    ],
)
async def test_a_cross_origin_post_with_a_valid_cookie_is_refused(
    make_client: MakeClient, guarded: Settings, headers: dict[str, str]
) -> None:
    client = await make_client(guarded)
    cookie = f"joblog_session={set_cookie(await sign_in(client, ADMIN_TOKEN))['value']}"
    run = await client.post("/api/job_logs", headers={"Cookie": cookie, **headers})
    assert run.status == 403, await run.text()
    signin = await client.post("/api/session", json={"token": ADMIN_TOKEN}, headers=headers)
    assert signin.status == 403
    stats = await client.get("/api/job_logs/stats", headers={"Cookie": cookie})
    assert (await stats.json())["total"] == 0


async def test_a_same_origin_post_with_the_cookie_acts(
    make_client: MakeClient, guarded: Settings
) -> None:
    """Behind nginx's bare proxy_pass the Host is the upstream's, not what the browser named:
    the browser's Sec-Fetch-Site says the page and the request share an origin."""
    client = await make_client(guarded)
    cookie = f"joblog_session={set_cookie(await sign_in(client, ADMIN_TOKEN))['value']}"
    proxied_page = {"Origin": "http://127.0.0.1:9", "Sec-Fetch-Site": "same-origin"}
    run = await client.post("/api/job_logs", headers={"Cookie": cookie, **proxied_page})
    assert run.status == 202, await run.text()


# --- anonymous viewers ------------------------------------------------------------------------


async def who(client: Client, **headers: str) -> str | None:
    body = await (await client.get("/api/session", headers=headers)).json()
    role: str | None = body["role"]
    return role


async def test_a_local_browser_of_a_loopback_service_is_an_anonymous_viewer(
    client: Client,
) -> None:
    host = f"127.0.0.1:{client.port}"
    assert await who(client) == "viewer"
    assert await who(client, Origin=f"http://{host}", Referer=f"http://{host}/runs/x") == "viewer"
    assert (await client.get("/api/job_logs/stats")).status == 200
    refused = await client.post("/api/job_logs")
    assert refused.status == 401  # acting always needs the admin credential
    assert refused.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"X-Forwarded-For": "127.0.0.1"},
        {"Forwarded": "for=127.0.0.1"},
        {"X-Real-IP": "127.0.0.1"},
        {"Via": "1.1 nginx"},
        {"Host": "joblog.plant.example"},
        {"Origin": "http://127.0.0.1:9"},
        {"Referer": "http://127.0.0.1:9/joblog/"},
    ],
)
async def test_what_a_proxy_or_another_site_leaves_is_never_local(
    client: Client, headers: dict[str, str]
) -> None:
    assert await who(client, **headers) is None
    assert (await client.get("/api/job_logs/stats", headers=headers)).status == 401


async def test_http_1_0_is_what_nginx_speaks_by_default_and_never_local(client: Client) -> None:
    assert client.server.host is not None
    assert client.server.port is not None
    head = f"GET /api/job_logs/stats HTTP/1.0\r\nHost: 127.0.0.1:{client.port}\r\n\r\n"
    answer = await exchange_async(client.server.host, client.server.port, head.encode())
    assert answer.status == 401
    eleven = request_bytes("GET", "/api/job_logs/stats", host=f"127.0.0.1:{client.port}")
    assert (await exchange_async(client.server.host, client.server.port, eleven)).status == 200


async def test_anonymous_viewers_can_be_turned_off_and_on(make_client: MakeClient) -> None:
    off = await make_client(allow_anonymous_viewers=False)
    assert await who(off) is None
    anywhere = await make_client(host="0.0.0.0", allow_anonymous_viewers=True)
    assert await who(anywhere, **{"X-Forwarded-For": "203.0.113.9"}) == "viewer"
    assert (await anywhere.post("/api/job_logs")).status == 401


async def test_a_service_on_every_address_has_no_anonymous_local_viewer(
    make_client: MakeClient,
) -> None:
    client = await make_client(host="0.0.0.0", view_token=SecretStr(VIEW_TOKEN))
    assert await who(client) is None


async def test_a_session_s_event_stream_ends_when_the_session_does(
    make_client: MakeClient, guarded: Settings, clock: FakeClock
) -> None:
    client = await make_client(guarded, session_hours=0.0003, sse_stall_seconds=0.4)
    cookie = f"joblog_session={set_cookie(await sign_in(client, VIEW_TOKEN))['value']}"
    async with asyncio.timeout(10), client.get("/api/events", headers={"Cookie": cookie}) as stream:
        assert stream.status == 200
        await stream.read()  # to its end: the server closed the stream
    clock.advance(2)
    again = await client.get("/api/events", headers={"Cookie": cookie})
    assert again.status == 401


async def test_the_access_log_names_the_client_a_trusted_proxy_forwards(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    make_app: MakeApp,
    guarded: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    trusted = (ipaddress.ip_network("127.0.0.0/8"),)
    app = make_app(guarded, trusted_proxies=trusted)
    caplog.set_level(logging.INFO, logger="service.access")
    server = await aiohttp_server(
        app, access_log_class=AccessLogger, access_log=logging.getLogger("service.access")
    )
    client: TestClient[web.Request, None] = await aiohttp_client(server)
    forwarded = {"X-Forwarded-For": "198.51.100.23, 127.0.0.1"}
    await client.get("/api/job_logs/stats", headers=forwarded)
    await client.get("/api/job_logs/stats", headers={"X-Forwarded-For": "198.51.100.99"})
    lines = [r.getMessage() for r in caplog.records if r.name == "service.access"]
    assert any(line.endswith(" 198.51.100.23") for line in lines), lines
    assert any(line.endswith(" 198.51.100.99") for line in lines), lines
