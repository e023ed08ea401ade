"""Turning rows into models, and the two ways every store module runs a query."""

from __future__ import annotations

import sqlite3
from typing import Any

import aiosqlite

from service.wire import JobLog, JobLogDetail, Status

from .timestamps import from_db

LOG_COLUMNS = "id, name, status, created_at, updated_at"
DETAIL_COLUMNS = "id, job_log_id, message, created_at, updated_at"


def is_status(value: object) -> bool:
    """True for the integers the status enum knows."""
    return isinstance(value, int) and value in Status._value2member_map_


def job_log_from_row(row: sqlite3.Row) -> JobLog:
    """A job_logs row as a model."""
    return JobLog(
        id=row["id"],
        name=row["name"],
        status=Status(row["status"]),
        created_at=from_db(row["created_at"]),
        updated_at=from_db(row["updated_at"]),
    )


def detail_from_row(row: sqlite3.Row) -> JobLogDetail:
    """A job_log_details row as a model."""
    return JobLogDetail(**detail_fields(row))


def detail_fields(row: sqlite3.Row) -> dict[str, Any]:
    """The fields of a detail in a row that has its columns (and maybe more)."""
    return {
        "id": row["id"],
        "job_log_id": row["job_log_id"],
        "message": row["message"],
        "created_at": from_db(row["created_at"]),
        "updated_at": from_db(row["updated_at"]),
    }


async def fetch_one(
    conn: aiosqlite.Connection, sql: str, params: tuple[object, ...] | list[object]
) -> sqlite3.Row | None:
    """The first row of ``sql``; see :func:`fetch_all`."""
    rows = await fetch_all(conn, sql, params)
    return rows[0] if rows else None


async def fetch_all(
    conn: aiosqlite.Connection, sql: str, params: tuple[object, ...] | list[object] = ()
) -> list[sqlite3.Row]:
    """Every row of ``sql``, run to its end in one call on the connection's thread.

    One call, not execute-then-fetch: a cancel between the two would leave the statement
    half-stepped ("SQL statements in progress"), blocking COMMIT and DROP on the connection.
    """
    return list(await conn.execute_fetchall(sql, params))
