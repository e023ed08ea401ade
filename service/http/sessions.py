"""``/api/session``: who is asking, signing in with a token for a browser session, signing out.

The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Secure`` when the client came over https (as
a trusted proxy says), its ``Path`` the service's base path (a trusted proxy's
``X-Forwarded-Prefix``, else PUBLIC_URL's path), and it lasts SESSION_HOURS.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from service import appkeys
from service.credentials import Role
from service.http import payloads
from service.http.auth import CALLER, CLIENT, Access, Caller, requires
from service.http.params import InvalidParameter
from service.http.replies import NO_STORE, reply
from service.http.session_cookie import COOKIE, issue

# The most a sign-in body may hold.
MAX_BODY = 16 * 1024


class SignIn(BaseModel):
    """``POST /api/session``: the token to sign in with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: Annotated[SecretStr, Field(min_length=1, max_length=1000)]


@requires(Access.public)
async def whoami(request: web.Request) -> web.Response:
    """The caller: role (null when nobody), how it was proven, the proxy's user name."""
    return reply(_session_out(request[CALLER]), headers=NO_STORE)


@requires(Access.public)
async def sign_in(request: web.Request) -> web.Response:
    """A token for a session cookie (the role follows the token)."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason='send the token as JSON: {"token": "…"}')
    # Read here, not through request.read(): the app takes no other body over 1 KiB, and a
    # token's JSON (escapes included) may be longer.
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(MAX_BODY, len(raw))
    try:
        body = SignIn.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidParameter("token", _first_problem(exc)) from None
    app = request.app
    credentials = app[appkeys.CREDENTIALS]
    role = credentials.role_of(body.token.get_secret_value())
    if role is None:
        raise web.HTTPForbidden(reason="that token is not valid here")
    hours = app[appkeys.SETTINGS].session_hours
    value, session = issue(credentials, role, app[appkeys.CLOCK](), hours)
    caller = Caller(role, "session", expires_at=session.expires_at)
    response = reply(_session_out(caller), headers=NO_STORE)
    response.set_cookie(COOKIE, value, max_age=round(hours * 3600), **_cookie_flags(request))
    return response


@requires(Access.public)
async def sign_out(request: web.Request) -> web.Response:
    """Forget the session cookie (a session proven otherwise is not the browser's to end)."""
    response = web.Response(status=204, headers=NO_STORE)
    response.del_cookie(COOKIE, **_cookie_flags(request))
    return response


def _cookie_flags(request: web.Request) -> dict[str, Any]:
    client = request[CLIENT]
    public_url = request.app[appkeys.SETTINGS].public_url
    base = client.prefix or (urlsplit(public_url).path.rstrip("/") if public_url else "")
    return {
        "path": f"{base}/",
        "secure": client.scheme == "https",
        "httponly": True,
        "samesite": "Strict",
    }


def _session_out(caller: Caller) -> payloads.SessionOut:
    return payloads.SessionOut(
        role=caller.role.name if caller.role is not Role.nobody else None,
        via=caller.via if caller.role is not Role.nobody else None,
        user=caller.user,
        expires_at=caller.expires_at,
    )


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return "the body must be a JSON object"
    return str(first["msg"]).removeprefix("Value error, ")


def add_routes(app: web.Application) -> None:
    """Register the session routes."""
    app.router.add_get("/api/session", whoami)
    app.router.add_post("/api/session", sign_in)
    app.router.add_delete("/api/session", sign_out)
