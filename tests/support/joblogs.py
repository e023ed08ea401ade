"""Reading the job-log database from a test, as another process would."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path


def details(database: Path, name: str | None = None) -> list[str]:
    """The messages of the log ``name`` (the latest log when None), in order."""
    with closing(sqlite3.connect(database, timeout=10)) as conn:
        row = conn.execute(
            "SELECT id FROM job_logs WHERE name = ?"
            if name
            else "SELECT id FROM job_logs ORDER BY id DESC LIMIT 1",
            (name,) if name else (),
        ).fetchone()
        if row is None:
            return []
        return [
            message
            for (message,) in conn.execute(
                "SELECT message FROM job_log_details WHERE job_log_id = ? ORDER BY id", row
            )
        ]


def statuses(database: Path) -> list[tuple[str, int]]:
    """Every log's name and status, oldest first."""
    with closing(sqlite3.connect(database, timeout=10)) as conn:
        return list(conn.execute("SELECT name, status FROM job_logs ORDER BY id"))


def wait_for_detail(database: Path, text: str, timeout: float = 20.0) -> None:
    """Return once the latest log has a detail starting with ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(message.startswith(text) for message in details(database)):
                return
        except sqlite3.OperationalError:
            pass  # the file or its tables are not there yet
        time.sleep(0.05)
    raise AssertionError(f"no detail starting with {text!r} after {timeout} s")
