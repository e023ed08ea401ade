"""Every write to job_logs and job_log_details on PostgreSQL: the twin of store/writes.py, same
functions, same answers. Each writing transaction ends with a :func:`notify` that wakes every
node's readers at its commit."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import psycopg

from service.wire import JobLog, JobLogDetail, Status

from ..errors import InvalidTransition, NotFound, RunEnded
from ..writes import ALLOWED_FROM, fit_message, name_for
from .database import Connection, PgDatabase
from .wakeups import notify


def stamp(moment: datetime) -> datetime:
    """A timestamp as the columns hold it: naive UTC, to the microsecond."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def aware(moment: datetime) -> datetime:
    """A column's naive UTC timestamp as an aware datetime."""
    return moment.replace(tzinfo=UTC)


def job_log_from(row: dict[str, Any]) -> JobLog:
    return JobLog(
        id=row["id"],
        name=row["name"],
        status=Status(row["status"]),
        created_at=aware(row["created_at"]),
        updated_at=aware(row["updated_at"]),
    )


def detail_fields(row: dict[str, Any]) -> dict[str, Any]:
    """A job_log_details row's fields, its times aware (for JobLogDetail and EventDetail)."""
    return {
        "id": row["id"],
        "job_log_id": row["job_log_id"],
        "message": row["message"],
        "created_at": aware(row["created_at"]),
        "updated_at": aware(row["updated_at"]),
    }


def detail_from(row: dict[str, Any]) -> JobLogDetail:
    return JobLogDetail(**detail_fields(row))


async def create_job_log(db: PgDatabase) -> JobLog:
    """Create a pending log named after the clock's current second, suffixed on collision.

    The unique index on name decides between concurrent creators on any node: a name taken
    meanwhile inserts nothing (ON CONFLICT DO NOTHING), and the next suffix is tried.
    """
    now = db.clock()
    local = now.astimezone(db.zone)
    at = stamp(now)
    async with db.transaction() as conn:
        for suffix in itertools.count():
            row = await _one(
                conn,
                "INSERT INTO job_logs (name, status, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING "
                "RETURNING id, name, status, created_at, updated_at",
                (name_for(local, suffix), int(Status.pending), at, at),
            )
            if row is not None:
                await notify(conn, log_id=row["id"])
                return job_log_from(row)
    raise AssertionError("unreachable")  # pragma: no cover


async def set_status(db: PgDatabase, job_log_id: int, status: Status) -> JobLog:
    """Move a log to ``status``; refuses (InvalidTransition) what the life cycle forbids."""
    allowed = [int(s) for s in ALLOWED_FROM.get(status, frozenset())]
    async with db.transaction() as conn:
        row = await _one(
            conn,
            "UPDATE job_logs SET status = %s, updated_at = %s "
            "WHERE id = %s AND status = ANY(%s) "
            "RETURNING id, name, status, created_at, updated_at",
            (int(status), stamp(db.clock()), job_log_id, allowed),
        )
        if row is not None:
            await notify(conn, log_id=job_log_id)
            return job_log_from(row)
        current = await _one(conn, "SELECT status FROM job_logs WHERE id = %s", (job_log_id,))
    if current is None:
        raise NotFound(f"job log {job_log_id} does not exist")
    raise InvalidTransition(
        f"job log {job_log_id} cannot go from {Status(current['status']).name} to {status.name}"
    )


async def add_detail(db: PgDatabase, job_log_id: int, message: str) -> JobLogDetail:
    """Append a message to a log, timestamped now; see :func:`fit_message` for its limits."""
    text = fit_message(message)
    at = stamp(db.clock())
    async with db.transaction() as conn:
        # FOR SHARE: the run cannot end until this line is in. A run that has ended takes no
        # more lines: a runner that lost its node's lease (its run closed as node lost by
        # another node) can write nothing that counts.
        found = await _one(
            conn, "SELECT status FROM job_logs WHERE id = %s FOR SHARE", (job_log_id,)
        )
        if found is None:
            raise NotFound(f"job log {job_log_id} does not exist")
        if Status(found["status"]).finished:
            raise RunEnded(f"job log {job_log_id} has ended and takes no more lines")
        try:
            row = await _insert_detail(conn, job_log_id, text, at)
        except psycopg.errors.ForeignKeyViolation:
            # Raised inside: the transaction turns psycopg's errors into the store's.
            raise NotFound(f"job log {job_log_id} does not exist") from None
        await notify(conn, detail_id=row["id"])
    return detail_from(row)


async def close_unfinished(db: PgDatabase, message: str) -> list[JobLog]:
    """End every pending or processing log as error with ``message`` as its last detail."""
    text = fit_message(message)
    at = stamp(db.clock())
    closed = []
    async with db.transaction() as conn:
        cursor = await conn.execute(
            "SELECT id FROM job_logs WHERE status = ANY(%s) ORDER BY id FOR UPDATE",
            ([int(Status.pending), int(Status.processing)],),
        )
        for row in await cursor.fetchall():
            log, detail = await _end_as_error(conn, row["id"], text, at)
            closed.append((log, detail))
        if closed:
            await notify(conn, log_id=closed[-1][0].id, detail_id=closed[-1][1].id)
    return [log for log, _ in closed]


async def fail_job_log(
    db: PgDatabase, job_log_id: int, message: str
) -> tuple[JobLog, JobLogDetail] | None:
    """Append ``message`` and end the log as error, in one transaction — unless it has ended
    already (a cancel racing the run's own end), in which case nothing is written (None)."""
    text = fit_message(message)
    at = stamp(db.clock())
    async with db.transaction() as conn:
        # FOR UPDATE: a status change racing this one waits, then sees the end.
        current = await _one(
            conn, "SELECT status FROM job_logs WHERE id = %s FOR UPDATE", (job_log_id,)
        )
        if current is None:
            raise NotFound(f"job log {job_log_id} does not exist")
        if Status(current["status"]).finished:
            return None
        log, detail = await _end_as_error(conn, job_log_id, text, at)
        await notify(conn, log_id=log.id, detail_id=detail.id)
        return log, detail


async def _end_as_error(
    conn: Connection, job_log_id: int, text: str, at: datetime
) -> tuple[JobLog, JobLogDetail]:
    """Inside a transaction: the last detail, then the error status."""
    detail = await _insert_detail(conn, job_log_id, text, at)
    row = await _one(
        conn,
        "UPDATE job_logs SET status = %s, updated_at = %s WHERE id = %s "
        "RETURNING id, name, status, created_at, updated_at",
        (int(Status.error), at, job_log_id),
    )
    assert row is not None
    return job_log_from(row), detail_from(detail)


async def _insert_detail(
    conn: Connection, job_log_id: int, text: str, at: datetime
) -> dict[str, Any]:
    row = await _one(
        conn,
        "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
        "VALUES (%s, %s, %s, %s) RETURNING id, job_log_id, message, created_at, updated_at",
        (job_log_id, text, at, at),
    )
    assert row is not None
    return row


async def _one(conn: Connection, sql: Any, params: tuple[object, ...]) -> dict[str, Any] | None:
    cursor = await conn.execute(sql, params)
    return await cursor.fetchone()
