"""The readiness write: one row rewritten and committed on the file DATABASE_PATH names now.

A probe opens the file afresh by its path (read-write, never creating it), so it sees what a
restarted service would: a file made read-only, removed, or replaced by another one (another
inode than the one the service's connections hold) fails, as does a full disk or a lock held
longer than the probe may wait. ``BEGIN IMMEDIATE; ROLLBACK`` would pass on a full disk; a
committed write does not. It runs in a worker thread with its own short busy timeout, and at
most one probe runs at a time: a probe that finds one under way waits for that one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from .database import Database
from .timestamps import to_db

# Below this much free space the file system counts as full: a write may still squeeze into
# SQLite's free pages, but the next run's import will not.
MIN_FREE_BYTES = 1 << 20

_BEAT = (
    "INSERT INTO service_heartbeat (id, beat_at) VALUES (1, ?) "
    "ON CONFLICT (id) DO UPDATE SET beat_at = excluded.beat_at"
)


class Unready(Exception):
    """Why the database cannot take a write now (one line, no secrets)."""


class Heartbeat:
    """Probes one database's file for a real, committed write."""

    def __init__(self, db: Database, *, timeout_seconds: float = 1.0) -> None:
        self._db = db
        self._timeout = timeout_seconds
        self._probe: asyncio.Future[None] | None = None

    async def check(self) -> None:
        """Return once a write was committed within the timeout; raise Unready otherwise."""
        if self._probe is None or self._probe.done():
            stamp = to_db(self._db.clock())
            self._probe = asyncio.ensure_future(
                asyncio.to_thread(_write, self._db.path, self._db.file_id, stamp, self._timeout)
            )
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(self._probe)
        except TimeoutError:
            raise Unready(f"a write did not finish within {self._timeout:g} s") from None

    async def close(self) -> None:
        """Wait for a probe still under way (it ends within its busy timeout)."""
        if self._probe is not None:
            with contextlib.suppress(Exception):
                await self._probe


def _write(path: Path, file_id: tuple[int, int], stamp: str, timeout: float) -> None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise Unready(f"the database file {path} is gone") from None
    except OSError as exc:
        raise Unready(f"the database file {path} cannot be read: {exc.strerror}") from None
    if (stat.st_dev, stat.st_ino) != file_id:
        raise Unready(f"the database file {path} was replaced since the service opened it")
    try:
        space = os.statvfs(path.parent)
    except OSError as exc:
        raise Unready(f"the folder of {path} cannot be read: {exc.strerror}") from None
    free = space.f_bavail * space.f_frsize
    if free < MIN_FREE_BYTES:
        raise Unready(f"the file system holding {path} is full ({free:,} bytes free)")
    # SQLite hands a new connection a descriptor it kept from an earlier one to the same file
    # (opened read-write before a chmod), so the file's mode is checked by itself too.
    if not os.access(path, os.W_OK):
        raise Unready(f"the database file {path} is read-only")
    uri = f"file:{quote(str(path.resolve()))}?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise Unready(f"cannot open the database file {path}: {exc}") from None
    try:
        conn.execute(_BEAT, (stamp,))
    except sqlite3.Error as exc:
        raise Unready(f"a write to the database failed: {exc}") from None
    finally:
        conn.close()
