"""Every write to job_logs and job_log_details: a run's log created, its lines appended, its
status moved along the life cycle, and runs a dead process left open closed."""

from __future__ import annotations

import itertools
import re
import sqlite3
from datetime import datetime

import aiosqlite

from service.wire import JobLog, JobLogDetail, Status

from .database import Database
from .errors import InvalidMessage, InvalidTransition, NotFound
from .rows import (
    DETAIL_COLUMNS,
    LOG_COLUMNS,
    detail_from_row,
    fetch_all,
    fetch_one,
    job_log_from_row,
)
from .timestamps import to_db

MAX_MESSAGE_LENGTH = 5000
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# The life cycle: pending → processing → success | error, and pending → error.
ALLOWED_FROM: dict[Status, frozenset[Status]] = {
    Status.processing: frozenset({Status.pending}),
    Status.success: frozenset({Status.processing}),
    Status.error: frozenset({Status.pending, Status.processing}),
}


def name_for(moment: datetime, suffix: int) -> str:
    """The job-log name for a start time (already in the naming zone) and a collision count."""
    stamp = moment.strftime("%Y%m%d%H%M%S")
    return stamp if suffix == 0 else f"{stamp}_{suffix}"


def fit_message(message: str) -> str:
    """The message as it can be stored: at most 5,000 characters, never refused for length.

    A longer message keeps its beginning and ends with a marker giving the original length.
    Characters that UTF-8 cannot carry (lone surrogates) become U+FFFD rather than failing.
    """
    if not message or message.isspace():
        raise InvalidMessage("a detail message must not be empty")
    message = _LONE_SURROGATE.sub("\ufffd", message)
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    marker = f"… [truncated from {len(message):,} characters]"
    return message[: MAX_MESSAGE_LENGTH - len(marker)] + marker


async def create_job_log(db: Database) -> JobLog:
    """Create a pending log named after the clock's current second, suffixed on collision.

    Names are claimed through the unique constraint inside one write transaction, so concurrent
    creators, in this process or another, always end up with distinct names.
    """
    now = db.clock()
    local = now.astimezone(db.zone)
    stamp = to_db(now)
    async with db.transaction() as conn:
        for suffix in itertools.count():
            try:
                row = await fetch_one(
                    conn,
                    f"INSERT INTO job_logs (name, status, created_at, updated_at) "
                    f"VALUES (?, ?, ?, ?) RETURNING {LOG_COLUMNS}",
                    (name_for(local, suffix), int(Status.pending), stamp, stamp),
                )
            except sqlite3.IntegrityError as exc:
                if "job_logs.name" not in str(exc):
                    raise
                continue
            assert row is not None
            return job_log_from_row(row)
    raise AssertionError("unreachable")  # pragma: no cover


async def set_status(db: Database, job_log_id: int, status: Status) -> JobLog:
    """Move a log to ``status``; refuses (InvalidTransition) what the life cycle forbids."""
    allowed = ALLOWED_FROM.get(status, frozenset())
    async with db.transaction() as conn:
        placeholders = ", ".join("?" for _ in allowed) or "NULL"
        row = await fetch_one(
            conn,
            f"UPDATE job_logs SET status = ?, updated_at = ? "
            f"WHERE id = ? AND status IN ({placeholders}) RETURNING {LOG_COLUMNS}",
            (int(status), to_db(db.clock()), job_log_id, *(int(s) for s in allowed)),
        )
        if row is not None:
            return job_log_from_row(row)
        current = await fetch_one(conn, "SELECT status FROM job_logs WHERE id = ?", (job_log_id,))
    if current is None:
        raise NotFound(f"job log {job_log_id} does not exist")
    raise InvalidTransition(
        f"job log {job_log_id} cannot go from {Status(current['status']).name} to {status.name}"
    )


async def add_detail(db: Database, job_log_id: int, message: str) -> JobLogDetail:
    """Append a message to a log, timestamped now; see :func:`fit_message` for its limits."""
    text = fit_message(message)
    stamp = to_db(db.clock())
    async with db.transaction() as conn:
        try:
            row = await fetch_one(
                conn,
                f"INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
                f"VALUES (?, ?, ?, ?) RETURNING {DETAIL_COLUMNS}",
                (job_log_id, text, stamp, stamp),
            )
        except sqlite3.IntegrityError as exc:
            if "FOREIGN KEY" not in str(exc):
                raise
            raise NotFound(f"job log {job_log_id} does not exist") from None
    assert row is not None
    return detail_from_row(row)


async def close_unfinished(db: Database, message: str) -> list[JobLog]:
    """End every pending or processing log as error with ``message`` as its last detail.

    For logs left open by a process that died; call only while holding the run lock.
    """
    text = fit_message(message)
    stamp = to_db(db.clock())
    async with db.transaction() as conn:
        open_ids = [
            row["id"]
            for row in await fetch_all(
                conn,
                "SELECT id FROM job_logs WHERE status IN (?, ?) ORDER BY id",
                (int(Status.pending), int(Status.processing)),
            )
        ]
        closed = [(await _end_as_error(conn, i, text, stamp))[0] for i in open_ids]
    return closed


async def fail_job_log(
    db: Database, job_log_id: int, message: str
) -> tuple[JobLog, JobLogDetail] | None:
    """Append ``message`` and end the log as error, in one transaction — unless it has ended
    already (a cancel racing the run's own end), in which case nothing is written (None)."""
    text = fit_message(message)
    stamp = to_db(db.clock())
    async with db.transaction() as conn:
        current = await fetch_one(conn, "SELECT status FROM job_logs WHERE id = ?", (job_log_id,))
        if current is None:
            raise NotFound(f"job log {job_log_id} does not exist")
        if Status(current["status"]).finished:
            return None
        return await _end_as_error(conn, job_log_id, text, stamp)


async def _end_as_error(
    conn: aiosqlite.Connection, job_log_id: int, text: str, stamp: str
) -> tuple[JobLog, JobLogDetail]:
    """Inside a transaction: the last detail, then the error status."""
    detail = await fetch_one(
        conn,
        "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
        f"VALUES (?, ?, ?, ?) RETURNING {DETAIL_COLUMNS}",
        (job_log_id, text, stamp, stamp),
    )
    row = await fetch_one(
        conn,
        f"UPDATE job_logs SET status = ?, updated_at = ? WHERE id = ? RETURNING {LOG_COLUMNS}",
        (int(Status.error), stamp, job_log_id),
    )
    assert row is not None
    assert detail is not None
    return job_log_from_row(row), detail_from_row(detail)
