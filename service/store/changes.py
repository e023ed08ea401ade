"""A cheap test for "has anything been committed since I last looked?", for the event hub.

``PRAGMA data_version`` on a connection of its own changes whenever another connection — this
process's writer, a ``run-once``, the Rails app — commits to the file. It reads the WAL index
in shared memory, no table, so it costs microseconds: the hub can ask every few milliseconds
and run its real query only when the answer changed.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

logger = logging.getLogger(__name__)


class ChangeWatch:
    """Tells whether the database file has had a commit since the last :meth:`changed`.

    Runs on the caller's thread (the event loop's): the statement never waits for a lock
    (busy_timeout 0); should it fail for any reason, the answer is "changed", so the caller
    falls back to its query and misses nothing.
    """

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout=0")
        self._conn.execute("PRAGMA query_only=ON")
        self._version: int | None = None

    def changed(self) -> bool:
        """True when a commit landed since the previous call (and on the first call)."""
        try:
            row = self._conn.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error as exc:
            logger.debug("data_version failed (%s); reading anyway", exc)
            return True
        version = int(row[0])
        if version == self._version:
            return False
        self._version = version
        return True

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
