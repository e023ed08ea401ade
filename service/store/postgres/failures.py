"""psycopg's errors as the store's: what leaves the PostgreSQL dialect is a StoreError.

The service above the store never sees a driver's exception. :func:`translating` turns one
into the :class:`~service.store.errors.DatabaseFailure` that says what the caller can do about
it: :class:`DatabaseBusy` (another session held a lock — try again), :class:`DatabaseFull`
(no room on the server's disk), :class:`DatabaseGone` (the session was lost or none could be
had — try again once the server is back), or a plain DatabaseFailure (the statement was
refused). Its message is one line, without the URL or its password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolClosed

from ..errors import DatabaseBusy, DatabaseFailure, DatabaseFull, DatabaseGone
from .lease import one_line

# lock_not_available ("canceling statement due to lock timeout", NOWAIT), deadlock_detected,
# serialization_failure.
_BUSY = {"55P03", "40P01", "40001"}
_FULL = {"53100"}
# admin_shutdown (pg_terminate_backend, a fast stop), crash_shutdown, cannot_connect_now (the
# server starting or stopping), idle_session_timeout; and class 08, connection exceptions.
_GONE = {"57P01", "57P02", "57P03", "57P05"}


def translated(exc: psycopg.Error, url: str) -> DatabaseFailure:
    """``exc`` as the store's failure, its message one line without ``url``'s secrets."""
    state = exc.sqlstate
    message = scrubbed(one_line(exc), url)
    if state in _BUSY:
        return DatabaseBusy(message, state)
    if state in _FULL:
        return DatabaseFull(message, state)
    if state in _GONE or (state is not None and state.startswith("08")):
        return DatabaseGone(message, state)
    if isinstance(exc, PoolClosed):
        # The process is stopping: nothing will come back to wait for.
        return DatabaseFailure(message)
    # No SQLSTATE: the client's own failure — a session lost, a connection refused, the pool
    # waited its timeout for a session (psycopg_pool.PoolTimeout is an OperationalError).
    if state is None and isinstance(exc, psycopg.OperationalError):
        return DatabaseGone(message)
    return DatabaseFailure(message, state)


@contextmanager
def translating(url: str) -> Iterator[None]:
    """Raise a psycopg error of the block as the store's failure (see :func:`translated`)."""
    try:
        yield
    except psycopg.Error as exc:
        raise translated(exc, url) from None


def scrubbed(text: str, url: str) -> str:
    """``text`` without the URL's password, nor the URL itself (a driver may quote either when
    it cannot parse it)."""
    hidden = [url]
    with suppress(ValueError):
        password = urlsplit(url).password
        if password:
            hidden += [password, unquote(password)]
    with suppress(psycopg.Error):
        found = conninfo_to_dict(url).get("password")
        if isinstance(found, str) and found:
            hidden.append(found)
    for secret in sorted((s for s in hidden if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
