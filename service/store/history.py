"""Reads for the API and the event stream: logs by reference, detail pages, replay, changes."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from .database import Database
from .errors import NotFound
from .job_logs import NAME_PATTERN, get_job_log, get_job_log_by_name
from .models import DetailPage, EventDetail, JobLog, JobLogDetail, JobLogWithDetails, Status
from .rows import LOG_COLUMNS, detail_from_row, fetch_all, fetch_one, job_log_from_row
from .timestamps import from_db

_DETAIL = "d.id, d.job_log_id, d.message, d.created_at, d.updated_at"
_MAX_ID = 2**63 - 1


def parse_ref(ref: str) -> tuple[str, str | int]:
    """``("name", ref)`` for ``20251215143022`` or ``…_1``, ``("id", n)`` for other digits.

    Anything else is not found.
    """
    if NAME_PATTERN.fullmatch(ref):
        return "name", ref
    if ref.isascii() and ref.isdigit() and 0 < int(ref) <= _MAX_ID:
        return "id", int(ref)
    raise NotFound(f"job log {ref!r} does not exist")


async def find_job_log(db: Database, ref: str) -> JobLog:
    """A log (without details) by name or id reference."""
    column, key = parse_ref(ref)
    return await _one_log(db, column, key, ref)


async def load_job_log(db: Database, job_log_id: int) -> JobLog:
    """A log (without details) as it is now, by id."""
    return await _one_log(db, "id", job_log_id, str(job_log_id))


async def _one_log(db: Database, column: str, key: str | int, label: str) -> JobLog:
    async with db.snapshot() as conn:
        row = await fetch_one(
            conn, f"SELECT {LOG_COLUMNS} FROM job_logs WHERE {column} = ?", (key,)
        )
    if row is None:
        raise NotFound(f"job log {label} does not exist")
    return job_log_from_row(row)


async def get_job_log_ref(db: Database, ref: str) -> JobLogWithDetails:
    """A log with all its details by name or id reference."""
    column, key = parse_ref(ref)
    if column == "name":
        return await get_job_log_by_name(db, str(key))
    return await get_job_log(db, int(key))


async def list_details(
    db: Database, job_log_id: int, *, after: int, limit: int, q: str | None = None
) -> DetailPage:
    """Up to ``limit`` details of a log with id > ``after``, in id order, optionally only
    those containing ``q`` (case-insensitive for ASCII letters)."""
    clauses = "job_log_id = ? AND id > ?"
    params: list[object] = [job_log_id, after]
    if q is not None:
        clauses += " AND instr(lower(message), lower(?)) > 0"
        params.append(q)
    async with db.snapshot() as conn:
        rows = await fetch_all(
            conn,
            f"SELECT id, job_log_id, message, created_at, updated_at FROM job_log_details "
            f"WHERE {clauses} ORDER BY id LIMIT ?",
            [*params, limit + 1],
        )
    items = [detail_from_row(row) for row in rows[:limit]]
    return DetailPage(items=items, next_after=items[-1].id if len(rows) > limit else None)


async def iter_details(
    db: Database, job_log_id: int, *, page: int = 1000
) -> AsyncIterator[list[JobLogDetail]]:
    """All details of a log in id order, a page at a time (for streaming very long logs)."""
    after = 0
    while True:
        chunk = await list_details(db, job_log_id, after=after, limit=page)
        if chunk.items:
            yield chunk.items
        if chunk.next_after is None:
            return
        after = chunk.next_after


async def last_success_at(db: Database) -> datetime | None:
    """When the latest successful run ended."""
    async with db.snapshot() as conn:
        row = await fetch_one(
            conn,
            "SELECT updated_at FROM job_logs WHERE status = ? "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            (int(Status.success),),
        )
    return from_db(row["updated_at"]) if row is not None else None


async def details_after(
    db: Database, after: int, *, limit: int, job_log_id: int | None = None
) -> list[EventDetail]:
    """Details with id > ``after`` in id order, with their log's name (replay and follow)."""
    where = "d.id > ?" + (" AND d.job_log_id = ?" if job_log_id is not None else "")
    params: list[object] = [after] if job_log_id is None else [after, job_log_id]
    async with db.snapshot() as conn:
        rows = await fetch_all(
            conn,
            f"SELECT {_DETAIL}, l.name AS job_log_name FROM job_log_details AS d "
            f"JOIN job_logs AS l ON l.id = d.job_log_id WHERE {where} ORDER BY d.id LIMIT ?",
            [*params, limit],
        )
    return [_event_detail(row) for row in rows]


async def logs_with_details_after(db: Database, after: int) -> list[JobLog]:
    """The logs that have a detail with id > ``after``, oldest first."""
    async with db.snapshot() as conn:
        rows = await fetch_all(
            conn,
            f"SELECT {LOG_COLUMNS} FROM job_logs WHERE id IN "
            f"(SELECT DISTINCT job_log_id FROM job_log_details WHERE id > ?) ORDER BY id",
            (after,),
        )
    return [job_log_from_row(row) for row in rows]


async def open_job_logs(db: Database) -> list[JobLog]:
    """Logs still pending or processing, oldest first."""
    async with db.snapshot() as conn:
        rows = await fetch_all(
            conn,
            f"SELECT {LOG_COLUMNS} FROM job_logs WHERE status IN (?, ?) ORDER BY id",
            (int(Status.pending), int(Status.processing)),
        )
    return [job_log_from_row(row) for row in rows]


async def high_water_marks(db: Database) -> tuple[int, int]:
    """The largest job-log id and the largest detail id (0 when empty)."""
    async with db.snapshot() as conn:
        row = await fetch_one(
            conn,
            "SELECT (SELECT coalesce(max(id), 0) FROM job_logs) AS logs, "
            "(SELECT coalesce(max(id), 0) FROM job_log_details) AS details",
            (),
        )
    assert row is not None
    return int(row["logs"]), int(row["details"])


async def last_detail_id(db: Database, job_log_id: int) -> int:
    """The id of a log's last detail (0 when it has none)."""
    async with db.snapshot() as conn:
        row = await fetch_one(
            conn,
            "SELECT coalesce(max(id), 0) AS last FROM job_log_details WHERE job_log_id = ?",
            (job_log_id,),
        )
    return int(row["last"]) if row is not None else 0


async def changes_since(
    db: Database, log_cursor: int, detail_cursor: int, watched: Sequence[int], limit: int
) -> tuple[list[JobLog], list[EventDetail]]:
    """In one snapshot: logs created after ``log_cursor`` or ``watched``, and up to ``limit``
    details after ``detail_cursor`` with their log's name, both in id order."""
    marks = ", ".join("?" * len(watched)) or "NULL"
    async with db.snapshot() as conn:
        logs = await fetch_all(
            conn,
            f"SELECT {LOG_COLUMNS} FROM job_logs WHERE id > ? OR id IN ({marks}) ORDER BY id",
            [log_cursor, *watched],
        )
        details = await fetch_all(
            conn,
            f"SELECT {_DETAIL}, l.name AS job_log_name FROM job_log_details AS d "
            f"JOIN job_logs AS l ON l.id = d.job_log_id WHERE d.id > ? ORDER BY d.id LIMIT ?",
            (detail_cursor, limit),
        )
    return [job_log_from_row(row) for row in logs], [_event_detail(row) for row in details]


def _event_detail(row: sqlite3.Row) -> EventDetail:
    return EventDetail(**detail_from_row(row).model_dump(), job_log_name=row["job_log_name"])


async def previous_finished_status(db: Database, job_log_id: int) -> Status | None:
    """How the last finished run before this one (highest id below it) ended; None if none."""
    async with db.snapshot() as conn:
        row = await fetch_one(
            conn,
            "SELECT status FROM job_logs WHERE id < ? AND status IN (?, ?) "
            "ORDER BY id DESC LIMIT 1",
            (job_log_id, int(Status.error), int(Status.success)),
        )
    return Status(row["status"]) if row is not None else None


async def last_details(db: Database, job_log_id: int, count: int) -> list[JobLogDetail]:
    """The last ``count`` details of a log, in the order they were written."""
    async with db.snapshot() as conn:
        rows = await fetch_all(
            conn,
            "SELECT id, job_log_id, message, created_at, updated_at FROM job_log_details "
            "WHERE job_log_id = ? ORDER BY id DESC LIMIT ?",
            (job_log_id, count),
        )
    return [detail_from_row(row) for row in reversed(rows)]
