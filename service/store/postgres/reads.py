"""Reads of job_logs and job_log_details on PostgreSQL: the twin of store/reads.py, same
functions, same answers."""

from __future__ import annotations

from service.wire import EventDetail, JobLog

from ..errors import NotFound
from ..reads import log_key
from .database import PgDatabase
from .writes import aware, job_log_from


async def job_log(db: PgDatabase, ref: str | int) -> JobLog:
    """A run (without its lines) as it is now; NotFound if there is none."""
    column, key = log_key(ref)
    if column == "name":
        rows = await db.read(
            "SELECT id, name, status, created_at, updated_at FROM job_logs WHERE name = %s",
            (key,),
        )
    else:
        rows = await db.read(
            "SELECT id, name, status, created_at, updated_at FROM job_logs WHERE id = %s",
            (key,),
        )
    if not rows:
        raise NotFound(f"job log {ref} does not exist")
    return job_log_from(rows[0])


async def details_after(
    db: PgDatabase, after: int, *, limit: int, job_log_id: int | None = None
) -> list[EventDetail]:
    """Lines with id > ``after`` in id order, with their run's name (replay and follow). Ids are
    in commit order (schema.sql), so a reader that follows them misses none."""
    rows = await db.read(
        "SELECT d.id, d.job_log_id, d.message, d.created_at, d.updated_at, "
        "l.name AS job_log_name FROM job_log_details AS d "
        "JOIN job_logs AS l ON l.id = d.job_log_id "
        "WHERE d.id > %s AND (%s::bigint IS NULL OR d.job_log_id = %s) ORDER BY d.id LIMIT %s",
        (after, job_log_id, job_log_id, limit),
    )
    return [
        EventDetail(
            id=row["id"],
            job_log_id=row["job_log_id"],
            message=row["message"],
            created_at=aware(row["created_at"]),
            updated_at=aware(row["updated_at"]),
            job_log_name=row["job_log_name"],
        )
        for row in rows
    ]
