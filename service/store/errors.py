"""What the store refuses, as exceptions the edges map to answers."""

from __future__ import annotations

import sqlite3

# SQLite's result codes for a database another connection holds, and for a full disk.
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_FULL = {sqlite3.SQLITE_FULL}


class StoreError(Exception):
    """Base of every refusal by the store."""


class NotFound(StoreError):
    """The job log named or numbered does not exist."""


class InvalidTransition(StoreError):
    """A status change that the job-log life cycle does not allow."""


class RunEnded(StoreError):
    """A line for a run that has ended (PostgreSQL mode refuses it: a stale runner's)."""


class InvalidMessage(StoreError, ValueError):
    """A detail message that cannot be stored (empty or blank)."""


class IncompatibleSchema(StoreError):
    """The database file holds tables that do not match the job-log schema."""


class DatabaseFailure(StoreError):
    """A database server refused or failed a statement (PostgreSQL mode): its one-line reason,
    with no password or URL, and its SQLSTATE when the server gave one."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DatabaseBusy(DatabaseFailure):
    """Another session held what the statement needed (a lock past its timeout, a deadlock, a
    serialization conflict); nothing was written, and trying again may go through."""


class DatabaseFull(DatabaseFailure):
    """The database server's disk has no room for the write."""


class DatabaseGone(DatabaseFailure):
    """The session to the database was lost, or none could be had (a restart, a cut network);
    whatever the statement's transaction was doing was not committed, unless at its COMMIT."""


def is_busy(exc: BaseException) -> bool:
    """The write waited its busy timeout for another connection's lock."""
    if isinstance(exc, DatabaseBusy):
        return True
    return isinstance(exc, sqlite3.Error) and _primary(exc) in _BUSY


def is_full(exc: BaseException) -> bool:
    """The disk (or SQLite's page limit) has no room for the write."""
    if isinstance(exc, DatabaseFull):
        return True
    return isinstance(exc, sqlite3.Error) and _primary(exc) in _FULL


def is_gone(exc: BaseException) -> bool:
    """The database server cannot be reached now (SQLite, a file, is never gone)."""
    return isinstance(exc, DatabaseGone)


def _primary(exc: sqlite3.Error) -> int:
    """The primary result code (extended codes carry it in their low byte)."""
    return getattr(exc, "sqlite_errorcode", -1) & 0xFF
