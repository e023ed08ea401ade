"""The retention purge as the service runs it in SQLite mode, for tests that drive it directly."""

from __future__ import annotations

from service.retention.policy import purge_lock
from service.runlock import FileGate
from service.store import Database


def purge_gate(db: Database) -> FileGate:
    """The purge's lock beside ``db``'s file, as the service holds it."""
    return FileGate(purge_lock(db.path))
