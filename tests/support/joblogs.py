"""The job-log database read and written from a test, as another process (Rails, ``run-once``)
would: its own connection, one short transaction at a time."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .wait import wait_for


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


def wait_for_detail(database: Path, text: str, within: float = 20.0) -> None:
    """Return once the latest log has a detail starting with ``text``."""

    def written() -> bool:
        try:
            return any(message.startswith(text) for message in details(database))
        except sqlite3.OperationalError:
            return False  # the file or its tables are not there yet

    wait_for(written, f"a detail starting with {text!r}", within=within)


def detail_rows(database: Path, name: str) -> list[tuple[int, str, str]]:
    """The details of the log ``name`` as (id, message, created_at), in order."""
    with closing(sqlite3.connect(database, timeout=10)) as conn:
        return list(
            conn.execute(
                "SELECT d.id, d.message, d.created_at FROM job_log_details d "
                "JOIN job_logs l ON l.id = d.job_log_id WHERE l.name = ? ORDER BY d.id",
                (name,),
            )
        )


def status_of(database: Path, name: str) -> int:
    """The status of the log ``name`` (0 pending, 1 processing, 2 error, 3 success)."""
    with closing(sqlite3.connect(database, timeout=10)) as conn:
        (status,) = conn.execute("SELECT status FROM job_logs WHERE name = ?", (name,)).fetchone()
        return int(status)


def stamp(moment: datetime) -> str:
    """A timestamp as stored: UTC text ``YYYY-MM-DD HH:MM:SS.ffffff``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def add_detail(database: Path, name: str, message: str) -> int:
    """Append ``message`` to the log ``name``, now; its detail id."""
    now = stamp(datetime.now(UTC))
    with closing(sqlite3.connect(database, timeout=10)) as conn, conn:
        (log_id,) = conn.execute("SELECT id FROM job_logs WHERE name = ?", (name,)).fetchone()
        cursor = conn.execute(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (?, ?, ?, ?)",
            (log_id, message, now, now),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid


def add_run(database: Path, started: datetime, status: int, messages: Sequence[str]) -> str:
    """A finished run written straight into the database (as the Rails app could); its name."""
    name = started.strftime("%Y%m%d%H%M%S")
    ended = started + timedelta(seconds=2 + started.minute % 7)
    with closing(sqlite3.connect(database, timeout=10)) as conn, conn:
        cursor = conn.execute(
            "INSERT INTO job_logs (name, status, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (name, status, stamp(started), stamp(ended)),
        )
        conn.executemany(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (?, ?, ?, ?)",
            [(cursor.lastrowid, message, stamp(started), stamp(started)) for message in messages],
        )
    return name
