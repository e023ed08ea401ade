"""A page of a log's details as the API's JSON, built by SQLite itself.

A run of 100,000 lines is read by the page in 100 pages of 1,000; a model per row and its
serializer cost ~10 ms a page, SQLite's ``json_group_array`` well under 1. The items are
exactly what :class:`service.http.payloads.DetailOut` would give: ``id``, ``job_log_id``,
``message``, ``created_at`` in ISO 8601 UTC with microseconds and ``Z``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC

from .database import Database
from .rows import fetch_all, fetch_one
from .timestamps import from_db

_D = "[0-9]"
_DATE = f"{_D * 4}-{_D * 2}-{_D * 2} {_D * 2}:{_D * 2}:{_D * 2}"
# Rails' two stored forms, with microseconds or (when zero) without; anything else is NULL and
# the page is built in Python instead.
_ISO = (
    f"CASE WHEN created_at GLOB '{_DATE}.{_D * 6}' "
    "THEN substr(created_at, 1, 10) || 'T' || substr(created_at, 12) || 'Z' "
    f"WHEN created_at GLOB '{_DATE}' "
    "THEN substr(created_at, 1, 10) || 'T' || substr(created_at, 12) || '.000000Z' END"
)


@dataclass(frozen=True)
class DetailPageJson:
    """``items``: the page's details as a JSON array; ``next_after`` as in a ``DetailPage``."""

    items: str
    next_after: int | None


async def detail_page_json(
    db: Database, job_log_id: int, *, after: int, limit: int, q: str | None = None
) -> DetailPageJson:
    """Up to ``limit`` details of a log with id > ``after``, in id order, optionally only those
    containing ``q`` (case-insensitive for ASCII letters), as JSON."""
    clauses = "job_log_id = ? AND id > ?"
    params: list[object] = [job_log_id, after]
    if q is not None:
        clauses += " AND instr(lower(message), lower(?)) > 0"
        params.append(q)
    page = (
        f"SELECT id, job_log_id, message, created_at, {_ISO} AS iso FROM job_log_details "
        f"WHERE {clauses} ORDER BY id LIMIT ?"
    )
    async with db.snapshot() as conn:
        row = await fetch_one(
            conn,
            "SELECT json_group_array(json_object('id', id, 'job_log_id', job_log_id, "
            "'message', message, 'created_at', iso)) AS items, count(*) AS n, "
            f"max(id) AS last, count(*) - count(iso) AS odd FROM ({page})",
            [*params, limit],
        )
        assert row is not None  # an aggregate always has its row
        items, last = str(row["items"]), row["last"]
        if row["odd"]:
            rows = await fetch_all(conn, page, [*params, limit])
            items = json.dumps([_item(r) for r in rows], ensure_ascii=False, separators=(",", ":"))
        more = row["n"] == limit and (
            await fetch_one(
                conn,
                f"SELECT 1 FROM job_log_details WHERE {clauses} AND id > ? LIMIT 1",
                [*params, last],
            )
            is not None
        )
    return DetailPageJson(items=items, next_after=last if more else None)


def _item(row: sqlite3.Row) -> dict[str, object]:
    moment = from_db(row["created_at"]).astimezone(UTC).replace(tzinfo=None)
    return {
        "id": row["id"],
        "job_log_id": row["job_log_id"],
        "message": row["message"],
        "created_at": moment.isoformat(timespec="microseconds") + "Z",
    }
