"""Who may see and who may act: every request's caller, and each route's requirement.

A route says what it needs with :func:`requires` (a route that says nothing needs a viewer):
``public`` (the probes, the page's files, signing in), ``metrics`` (a viewer or METRICS_TOKEN),
``viewer`` or ``admin``. The caller is, in this order:

1. ``Authorization: Bearer <token>``: ADMIN_TOKEN is an admin, VIEW_TOKEN a viewer (a wrong
   token is refused, never taken for no token);
2. the user a trusted proxy names in AUTH_PROXY_HEADER: an admin if listed in
   AUTH_PROXY_ADMINS, else a viewer (the header is ignored from any other address);
3. a browser session cookie (see :mod:`service.http.session_cookie`);
4. an anonymous viewer, when ALLOW_ANONYMOUS_VIEWERS says so or, unset, for a local client
   of a service that listens on loopback only;
5. nobody.

Whatever changes state also passes :func:`service.http.guard.check_same_origin`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from service import appkeys
from service.credentials import Role
from service.http.clients import Client, cached_is_loopback, client_of
from service.http.guard import check_same_origin
from service.http.session_cookie import COOKIE, verify

Via = Literal["token", "session", "proxy", "anonymous"]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ATTRIBUTE = "joblog_access"


class Access(enum.Enum):
    """What a route needs."""

    public = "public"
    metrics = "metrics"
    viewer = "viewer"
    admin = "admin"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request and what they may do.

    ``metrics``: the METRICS_TOKEN was presented (it reads /metrics and nothing else).
    ``refused``: why a credential was presented but not accepted (a wrong bearer token).
    """

    role: Role
    via: Via | None = None
    user: str | None = None
    expires_at: datetime | None = None
    metrics: bool = False
    refused: str | None = None


NOBODY = Caller(Role.nobody)
CLIENT = web.RequestKey("client", Client)
CALLER = web.RequestKey("caller", Caller)

H = TypeVar("H", bound=Callable[..., object])


def requires(access: Access) -> Callable[[H], H]:
    """Mark a handler with what its caller needs (unmarked handlers need a viewer)."""

    def mark(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, access)
        return handler

    return mark


def access_of(handler: object) -> Access:
    """What a handler's caller needs (a viewer unless it says otherwise)."""
    access: Access = getattr(handler, _ATTRIBUTE, Access.viewer)
    return access


def needs(request: web.Request) -> Access | None:
    """What the matched route needs; None for aiohttp's own 404 and 405 answers."""
    if request.match_info.http_exception is not None:
        return None
    return access_of(request.match_info.handler)


@web.middleware
async def access_control(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Find the client and the caller, then let the request through only if it may pass."""
    app = request.app
    settings = app[appkeys.SETTINGS]
    client = request[CLIENT] = client_of(request, settings.trusted_proxies)
    caller = request[CALLER] = caller_of(request, client)
    need = needs(request)
    if need is not None:
        check(need, caller)
    if request.method not in _SAFE_METHODS and need is not None:
        check_same_origin(request, client, settings.public_url)
    return await handler(request)


def check(need: Access, caller: Caller) -> None:
    """Raise 401 (no credential) or 403 (not enough, or a wrong one) unless ``caller`` may."""
    if need is Access.public:
        return
    if caller.refused is not None:
        raise web.HTTPForbidden(reason=caller.refused)
    if need is Access.metrics and caller.metrics:
        return
    wanted = Role.admin if need is Access.admin else Role.viewer
    if caller.role >= wanted:
        return
    if caller.metrics:
        raise web.HTTPForbidden(reason="the metrics token may read /metrics and nothing else")
    if caller.role is Role.nobody or caller.via == "anonymous":
        raise web.HTTPUnauthorized(
            reason="sign in, or send a bearer token, to "
            + ("do this" if need is Access.admin else "see this"),
            headers={"WWW-Authenticate": "Bearer"},
        )
    raise web.HTTPForbidden(reason="this needs the admin role; you are signed in as a viewer")


def caller_of(request: web.Request, client: Client) -> Caller:
    """The caller of ``request`` (see the module's description for the order)."""
    app = request.app
    settings = app[appkeys.SETTINGS]
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        return _bearer(request, authorization)
    header = settings.auth_proxy_header
    if header is not None and client.proxied:
        user = request.headers.get(header, "").strip()
        if user:
            admin = user in settings.auth_proxy_admins
            return Caller(Role.admin if admin else Role.viewer, "proxy", user=user)
    cookie = request.cookies.get(COOKIE)
    if cookie:
        session = verify(app[appkeys.CREDENTIALS], cookie, app[appkeys.CLOCK]())
        if session is not None:
            return Caller(session.role, "session", expires_at=session.expires_at)
    anonymous = settings.allow_anonymous_viewers
    if anonymous is None:
        # settings.loopback_bind, without parsing the address at every request.
        anonymous = client.local and cached_is_loopback(settings.host)
    return Caller(Role.viewer, "anonymous") if anonymous else NOBODY


def _bearer(request: web.Request, authorization: str) -> Caller:
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return NOBODY
    credentials = request.app[appkeys.CREDENTIALS]
    role = credentials.role_of(token)
    if role is not None:
        return Caller(role, "token")
    if credentials.is_metrics_token(token):
        return Caller(Role.nobody, "token", metrics=True)
    return Caller(Role.nobody, refused="the bearer token is wrong")
