"""Who may see and who may act: the roles, their tokens, and the keys that sign browser sessions.

There is always an admin token: ADMIN_TOKEN, or one the service makes at its first start and
keeps in ``admin-token`` beside the database (mode 0600), so that acting never depends on where
a request seems to come from. VIEW_TOKEN and METRICS_TOKEN are optional. Tokens are compared in
constant time; a session key is derived from its role's token, so a changed token ends every
session signed with the old one.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from service.settings import Settings, is_strong_token

logger = logging.getLogger(__name__)

ADMIN_TOKEN_FILE = "admin-token"
_SESSION_KEY_LABEL = b"joblog browser session v1"


class Role(enum.IntEnum):
    """What a caller may do; each role may do everything the ones below it may."""

    nobody = 0
    viewer = 1
    admin = 2


class CredentialsUnavailable(Exception):
    """The admin token file cannot be read or made (one line, never the token)."""


@dataclass(frozen=True)
class Credentials:
    """The tokens of each role, and where a generated admin token lives (None when set)."""

    admin: str
    view: str | None = None
    metrics: str | None = None
    admin_token_path: Path | None = None
    _keys: dict[Role, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = {Role.admin: _derive(self.admin)}
        if self.view is not None:
            keys[Role.viewer] = _derive(self.view)
        object.__setattr__(self, "_keys", keys)

    def role_of(self, token: str) -> Role | None:
        """The role a bearer token gives (None for the metrics token or a wrong one).

        Every configured token is compared, in constant time, whatever matches first.
        """
        given = token.encode()
        admin = hmac.compare_digest(given, self.admin.encode())
        view = self.view is not None and hmac.compare_digest(given, self.view.encode())
        if admin:
            return Role.admin
        return Role.viewer if view else None

    def is_metrics_token(self, token: str) -> bool:
        """True for METRICS_TOKEN (which may read /metrics and nothing else)."""
        return self.metrics is not None and hmac.compare_digest(
            token.encode(), self.metrics.encode()
        )

    def session_key(self, role: Role) -> bytes | None:
        """The key that signs sessions of ``role`` (None when the role has no token)."""
        return self._keys.get(role)


def _derive(token: str) -> bytes:
    return hmac.new(token.encode(), _SESSION_KEY_LABEL, hashlib.sha256).digest()


def load_credentials(settings: Settings) -> Credentials:
    """The tokens from the settings; without ADMIN_TOKEN, the generated one (made if needed)."""
    view = settings.view_token.get_secret_value() if settings.view_token else None
    metrics = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    if settings.admin_token is not None:
        return Credentials(settings.admin_token.get_secret_value(), view, metrics)
    path = settings.database_path.with_name(ADMIN_TOKEN_FILE)
    return Credentials(admin_token_file(path), view, metrics, admin_token_path=path)


def admin_token_file(path: Path) -> str:
    """The token kept in ``path``, made (random, 43 characters, mode 0600) when it is missing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return _read_token(path)
    except OSError as exc:
        raise CredentialsUnavailable(
            f"cannot make the admin token file {path}: {exc.strerror or exc}"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise CredentialsUnavailable(
            f"cannot write the admin token file {path}: {exc.strerror or exc}"
        ) from None
    logger.info("made an admin token in %s (set ADMIN_TOKEN to choose one)", path)
    return token


def _read_token(path: Path) -> str:
    try:
        with path.open(encoding="ascii") as file:
            token = file.read(1001).strip()
        mode = os.stat(path).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not ASCII text"
        if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
            reason = "it vanished while being read"
        raise CredentialsUnavailable(f"cannot read the admin token file {path}: {reason}") from None
    if not is_strong_token(token):
        raise CredentialsUnavailable(
            f"the admin token file {path} does not hold a token of 16 to 1,000 printable "
            "characters; remove it to have a new one made"
        )
    if mode & 0o077:
        logger.warning("the admin token file %s can be read by other users (chmod 600 it)", path)
    return token
