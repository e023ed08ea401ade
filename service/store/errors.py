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


class InvalidMessage(StoreError, ValueError):
    """A detail message that cannot be stored (empty or blank)."""


class IncompatibleSchema(StoreError):
    """The database file holds tables that do not match the job-log schema."""


def is_busy(exc: BaseException) -> bool:
    """The write waited its busy timeout for another connection's lock."""
    return isinstance(exc, sqlite3.Error) and _primary(exc) in _BUSY


def is_full(exc: BaseException) -> bool:
    """The disk (or SQLite's page limit) has no room for the write."""
    return isinstance(exc, sqlite3.Error) and _primary(exc) in _FULL


def _primary(exc: sqlite3.Error) -> int:
    """The primary result code (extended codes carry it in their low byte)."""
    return getattr(exc, "sqlite_errorcode", -1) & 0xFF
