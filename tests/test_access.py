"""Who may see and who may act: every route against every kind of credential, through the app.

The app listens on 0.0.0.0 here (so nobody is an anonymous viewer) with an admin, a viewer and a
metrics token, a proxy user header and one admin user. The test client always connects from
127.0.0.1: that address is a trusted proxy in one app and not in the other, so a proxy's user
header is tried from a trusted and from an untrusted address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from service import appkeys
from service.settings import Settings
from service.store import add_detail, create_job_log, set_status
from service.wire import Status
from tests.support.api import ADMIN_TOKEN, MakeClient

Client = TestClient[web.Request, web.Application]
VIEW_TOKEN = "test-viewer-token-9876543210"
METRICS_TOKEN = "test-metrics-token-5555555555"
OPEN, METRICS, VIEWER, ADMIN = "open", "metrics", "viewer", "admin"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    needs: str


ROUTES = [
    Route("GET", "/", OPEN),
    Route("GET", "/runs/{name}", OPEN),
    Route("GET", "/static/app.js", OPEN),
    Route("GET", "/healthz", OPEN),
    Route("GET", "/readyz", OPEN),
    Route("GET", "/api/session", OPEN),
    Route("GET", "/metrics", METRICS),
    Route("GET", "/api/job_logs", VIEWER),
    Route("GET", "/api/job_logs/stats", VIEWER),
    Route("GET", "/api/job_logs/latest", VIEWER),
    Route("GET", "/api/job_logs/{name}", VIEWER),
    Route("GET", "/api/job_logs/{name}/details", VIEWER),
    Route("GET", "/api/job_logs/{name}.txt", VIEWER),
    Route("GET", "/api/job_logs/latest.txt", VIEWER),
    Route("GET", "/api/job_logs/timeline", VIEWER),
    Route("GET", "/api/job_logs/{name}/neighbours", VIEWER),
    Route("GET", "/api/status", VIEWER),
    Route("GET", "/api/openapi.json", VIEWER),
    Route("GET", "/api/events?job_log={name}", VIEWER),
    Route("POST", "/api/job_logs/{name}/cancel", ADMIN),
    Route("POST", "/api/job_logs", ADMIN),
]

# What each credential proves: the role it gives, or "refused" (a wrong one), in each app.
CREDENTIALS: dict[str, dict[str, str]] = {
    "none": {},
    "wrong token": {"Authorization": "Bearer not-the-token-at-all"},
    "basic auth": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    "metrics token": {"Authorization": f"Bearer {METRICS_TOKEN}"},
    "viewer token": {"Authorization": f"Bearer {VIEW_TOKEN}"},
    "admin token": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
    "viewer cookie": {},  # filled in by signing in
    "admin cookie": {},
    "forged cookie": {"Cookie": "joblog_session=admin.99999999999.nonce.bWFjbWFjbWFj"},
    "proxy user": {"Remote-User": "bob"},
    "proxy admin": {"Remote-User": "alice"},
    "forged forwarding": {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"},
}
ROLE = {
    "none": "nobody",
    "wrong token": "refused",
    "basic auth": "nobody",
    "metrics token": "metrics",
    "viewer token": VIEWER,
    "admin token": ADMIN,
    "viewer cookie": VIEWER,
    "admin cookie": ADMIN,
    "forged cookie": "nobody",
    "proxy user": VIEWER,
    "proxy admin": ADMIN,
    "forged forwarding": "nobody",
}
UNTRUSTED_ROLE = ROLE | {"proxy user": "nobody", "proxy admin": "nobody"}


def expected(needs: str, role: str) -> int | None:
    """401 or 403 when ``role`` may not use a route that ``needs`` it; None when it may."""
    if needs == OPEN:
        return None
    if role == "refused":
        return 403
    allowed = {
        METRICS: {METRICS, VIEWER, ADMIN},
        VIEWER: {VIEWER, ADMIN},
        ADMIN: {ADMIN},
    }[needs]
    if role in allowed:
        return None
    return 401 if role == "nobody" else 403


def guarded_settings(settings: Settings, *, trusted: str) -> Settings:
    return settings.model_copy(
        update={
            "host": "0.0.0.0",
            "view_token": SecretStr(VIEW_TOKEN),
            "metrics_token": SecretStr(METRICS_TOKEN),
            "trusted_proxies": (ipaddress.ip_network(trusted),),
            "auth_proxy_header": "Remote-User",
            "auth_proxy_admins": frozenset({"alice"}),
        }
    )


async def signed_in(client: Client, token: str) -> dict[str, str]:
    response = await client.post("/api/session", json={"token": token})
    assert response.status == 200, await response.text()
    cookie = response.cookies["joblog_session"]
    client.session.cookie_jar.clear()  # each request below says what it carries
    return {"Cookie": f"joblog_session={cookie.value}"}


async def start(
    make_client: MakeClient, settings: Settings
) -> tuple[Client, str, dict[str, dict[str, str]]]:
    client = await make_client(settings)
    db = client.app[appkeys.DATABASE]
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    await add_detail(db, log.id, "Job started - SyncOpenOrdersJob")
    await set_status(db, log.id, Status.success)
    credentials = dict(CREDENTIALS)
    credentials["viewer cookie"] = await signed_in(client, VIEW_TOKEN)
    credentials["admin cookie"] = await signed_in(client, ADMIN_TOKEN)
    return client, log.name, credentials


async def attempt(client: Client, route: Route, name: str, headers: dict[str, str]) -> int:
    path = route.path.format(name=name)
    async with client.request(route.method, path, headers=headers) as response:
        return response.status


@pytest.mark.parametrize("trusted", ["127.0.0.1", "10.9.9.9"], ids=["trusted", "untrusted"])
async def test_every_route_against_every_credential(
    make_client: MakeClient, settings: Settings, trusted: str
) -> None:
    client, name, credentials = await start(
        make_client, guarded_settings(settings, trusted=trusted)
    )
    roles = ROLE if trusted == "127.0.0.1" else UNTRUSTED_ROLE
    wrong: list[str] = []
    for kind, headers in credentials.items():
        for route in ROUTES:
            status = await attempt(client, route, name, headers)
            want = expected(route.needs, roles[kind])
            if (want is None and status in (401, 403)) or (want is not None and status != want):
                wrong.append(f"{kind}: {route.method} {route.path} -> {status}, want {want}")
    assert not wrong, "\n".join(wrong)


def _shape(path: str) -> str:
    """A path with every variable part as ``{}`` (``/static/app.js`` is the static route's)."""
    path = re.sub(r"\{[^}]*\}", "{}", path.split("?")[0])
    return "/static/{}" if path.startswith("/static/") else path


async def test_the_table_covers_every_route(client: Client) -> None:
    listed = {(route.method, _shape(route.path)) for route in ROUTES}
    # Signing in and out take their own tests (tests/test_sessions.py).
    listed |= {("POST", "/api/session"), ("DELETE", "/api/session")}
    served = {
        (route.method, _shape(resource.canonical))
        for resource in client.app.router.resources()
        for route in resource
        if route.method != "HEAD"
    }
    assert served == listed


async def test_a_proxy_user_is_named_and_given_its_role(
    make_client: MakeClient, settings: Settings
) -> None:
    client, _, _ = await start(make_client, guarded_settings(settings, trusted="127.0.0.1"))
    for user, role in (("alice", "admin"), ("bob", "viewer")):
        async with client.get("/api/session", headers={"Remote-User": user}) as response:
            assert await response.json() == {
                "role": role,
                "via": "proxy",
                "user": user,
                "expires_at": None,
            }


async def test_readyz_names_nothing_to_a_caller_who_is_not_a_viewer(
    make_client: MakeClient, settings: Settings
) -> None:
    odbc = "DRIVER={X};SERVER=casql2.plant.example;UID=u;PWD=pw-secret-1"
    changes = {"source_odbc": SecretStr(odbc)}
    guarded = guarded_settings(settings, trusted="10.9.9.9").model_copy(update=changes)
    client, name, _ = await start(make_client, guarded)
    anonymous = await (await client.get("/readyz")).json()
    assert anonymous["source"] == {"kind": "odbc", "server": None}
    assert anonymous["last_run"] is None
    assert set(anonymous["checks"].values()) <= {"ok", "failing"}
    assert name not in str(anonymous)
    viewer = await (
        await client.get("/readyz", headers={"Authorization": f"Bearer {VIEW_TOKEN}"})
    ).json()
    assert viewer["source"]["server"] == "casql2.plant.example"
    assert viewer["last_run"]["name"] == name
    assert "pw-secret-1" not in str(viewer)
