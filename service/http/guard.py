"""Who may change things (POST): a bearer token, or loopback clients; never a cross-site page.

With ADMIN_TOKEN set, ``Authorization: Bearer <token>`` is required (401 without, 403 wrong,
compared in constant time); unset, only loopback clients may POST. Either way the ``Host`` must
be a loopback name or PUBLIC_URL's host (no DNS rebinding) and an ``Origin``, when sent, must
match the ``Host`` (no cross-site form or fetch).
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from service.settings import Settings

_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def check_may_post(request: web.Request, settings: Settings) -> None:
    """Raise 401/403 unless ``request`` may change state."""
    host = request.headers.get("Host", "")
    if not _allowed_host(_hostname(host), settings):
        raise web.HTTPForbidden(reason="requests to this host name are not accepted")
    origin = request.headers.get("Origin")
    if origin is not None and not _same_origin(origin, host):
        raise web.HTTPForbidden(reason="cross-origin requests are not accepted")
    if settings.admin_token is not None:
        _check_token(request, settings.admin_token.get_secret_value())
    elif not _is_loopback(request.remote):
        raise web.HTTPForbidden(reason="only local clients may do this (or set ADMIN_TOKEN)")


def _check_token(request: web.Request, token: str) -> None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise web.HTTPUnauthorized(
            reason="a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise web.HTTPForbidden(reason="the bearer token is wrong")


def _hostname(host: str) -> str:
    try:
        name = urlsplit(f"//{host}").hostname
    except ValueError:
        return ""
    return (name or "").lower()


def _allowed_host(name: str, settings: Settings) -> bool:
    return name in _LOOPBACK_NAMES or _is_loopback(name) or name == settings.public_host


def _same_origin(origin: str, host: str) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
