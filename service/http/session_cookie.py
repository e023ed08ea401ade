"""Browser sessions: a signed cookie that carries a role until it expires.

``EventSource`` cannot send an ``Authorization`` header, so a browser signs in once with a token
and gets a cookie: ``<role>.<expires>.<nonce>.<mac>``, the MAC an HMAC-SHA256 under a key derived
from that role's token (see :mod:`service.credentials`). Nothing is kept on the server: a changed
token invalidates every session of its role, and the expiry is inside the signed value, so a
cookie kept past its ``Max-Age`` is refused all the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from service.credentials import Credentials, Role

COOKIE = "joblog_session"
_SIGNED_ROLES = {"viewer": Role.viewer, "admin": Role.admin}


@dataclass(frozen=True, slots=True)
class Session:
    """A verified session: its role and when it ends."""

    role: Role
    expires_at: datetime


def issue(credentials: Credentials, role: Role, now: datetime, hours: float) -> tuple[str, Session]:
    """A new cookie value for ``role`` valid ``hours`` from ``now``, and what it holds."""
    key = credentials.session_key(role)
    if key is None:
        raise ValueError(f"the {role.name} role has no token to sign sessions with")
    expires = int((now + timedelta(hours=hours)).timestamp())
    payload = f"{role.name}.{expires}.{secrets.token_urlsafe(12)}"
    value = f"{payload}.{_mac(key, payload)}"
    return value, Session(role, datetime.fromtimestamp(expires, UTC))


def verify(credentials: Credentials, value: str, now: datetime) -> Session | None:
    """The session a cookie value proves, or None (forged, for a changed token, expired)."""
    payload, _, mac = value.rpartition(".")
    role_name, _, rest = payload.partition(".")
    expires_text, _, _nonce = rest.partition(".")
    role = _SIGNED_ROLES.get(role_name)
    if role is None or not (expires_text.isascii() and expires_text.isdigit()):
        return None
    key = credentials.session_key(role)
    if key is None or not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    try:
        expires_at = datetime.fromtimestamp(int(expires_text), UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return Session(role, expires_at) if expires_at > now else None


def _mac(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
