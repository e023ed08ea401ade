"""Reads of job_logs and job_log_details on PostgreSQL but the pages of runs (:mod:`.search`)
and the buckets (:mod:`.timeline`): the twin of store/reads.py, same functions, same answers.

A run by reference (:func:`service.store.reads.log_key`), its neighbours, the latest runs by
status, pages of a run's lines, and what the event stream replays and follows. Each read is
one statement, so one snapshot; a run or a page of lines for the API comes as models or as
JSON written by PostgreSQL (:mod:`.json_rows`), the same text as SQLite mode's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from service.wire import (
    DetailPage,
    EventDetail,
    JobLog,
    JobLogDetail,
    Status,
    StatusCounts,
)

from ..errors import NotFound
from ..reads import DetailPageJson, LastError, log_key, paged
from ..rows import is_status
from .database import PgDatabase
from .json_rows import detail_json, log_json_head, log_json_tail
from .schema import SEARCH_INDEX
from .search import MATCHES, match_params
from .writes import aware, detail_fields, detail_from, job_log_from

_LOG = "id, name, status, created_at, updated_at"
_LOG_OF_L = "l.id, l.name, l.status, l.created_at, l.updated_at"
_DETAIL_OF_D = "d.id, d.job_log_id, d.message, d.created_at, d.updated_at"
_NEWEST_FIRST = "ORDER BY created_at DESC, id DESC"


# --- one run ---------------------------------------------------------------------------------


def _by_ref(ref: str | int, alias: str = "") -> tuple[str, str | int]:
    """The condition on the run ``ref`` names (its column from :func:`log_key`: ``id`` or
    ``name``), and its parameter; NotFound if ``ref`` is neither."""
    column, key = log_key(ref)
    return f"{alias}{column} = %s", key


async def job_log(db: PgDatabase, ref: str | int) -> JobLog:
    """A run (without its lines) as it is now; NotFound if there is none."""
    where, key = _by_ref(ref)
    rows = await db.read(f"SELECT {_LOG} FROM job_logs WHERE {where}", (key,))
    if not rows:
        raise NotFound(f"job log {ref} does not exist")
    return job_log_from(rows[0])


async def neighbours(db: PgDatabase, ref: str | int) -> tuple[JobLog | None, JobLog | None]:
    """The runs just before and just after ``ref`` in the list's order (created_at, then id);
    NotFound if there is no such run. One statement: the run, and one step each way."""
    where, key = _by_ref(ref)
    rows = await db.read(
        f"WITH this AS (SELECT {_LOG} FROM job_logs WHERE {where}) "
        f"SELECT 0 AS side, this.* FROM this "
        f"UNION ALL {_step(-1, '<', 'DESC')} UNION ALL {_step(1, '>', 'ASC')}",
        (key,),
    )
    found = {row["side"]: job_log_from(row) for row in rows}
    if 0 not in found:
        raise NotFound(f"job log {ref} does not exist")
    return found.get(-1), found.get(1)


def _step(side: int, compare: str, order: str) -> str:
    """The run next to ``this`` on one ``side`` of it, in the list's order."""
    return (
        f"SELECT {side} AS side, n.* FROM this CROSS JOIN LATERAL (SELECT {_LOG_OF_L} "
        f"FROM job_logs AS l WHERE (l.created_at, l.id) {compare} (this.created_at, this.id) "
        f"ORDER BY l.created_at {order}, l.id {order} LIMIT 1) AS n"
    )


def _with_details_json(where: str) -> str:
    """The statement of a run's JSON with all its lines (by created_at, then id) inside, for
    the run ``where`` picks (on ``l``)."""
    return (
        f"SELECT {_LOG_OF_L}, {log_json_head('l.')} || ',\"details\":[' || coalesce(("
        f"SELECT string_agg({detail_json('d.')}, ',' ORDER BY d.created_at, d.id) "
        "FROM job_log_details AS d WHERE d.job_log_id = l.id), '') || ']' || "
        f"{log_json_tail('l.')} AS j FROM job_logs AS l WHERE {where}"
    )


def _json_of(row: dict[str, Any]) -> str:
    """A row's ``j``; NULL for a status the enum does not know, refused as SQLite mode's
    model refuses it."""
    if row["j"] is None:
        raise ValueError(f"{row['status']!r} is not a valid Status")
    return str(row["j"])


async def job_log_with_details_json(db: PgDatabase, ref: str | int) -> str:
    """A run with all its lines as the JSON of :class:`service.wire.JobLogWithDetails`,
    written by PostgreSQL in one statement; NotFound if there is none."""
    where, key = _by_ref(ref, "l.")
    rows = await db.read(_with_details_json(where), (key,))
    if not rows:
        raise NotFound(f"job log {ref} does not exist")
    return _json_of(rows[0])


async def latest_with_details_json(db: PgDatabase) -> str | None:
    """The most recently created run with its lines as JSON (see
    :func:`job_log_with_details_json`), or None when there is none; one statement."""
    rows = await db.read(
        _with_details_json(f"l.id = (SELECT id FROM job_logs {_NEWEST_FIRST} LIMIT 1)")
    )
    return _json_of(rows[0]) if rows else None


async def latest_job_log(db: PgDatabase) -> JobLog | None:
    """The most recently created run (ties by id), or None when there is none."""
    rows = await db.read(f"SELECT {_LOG} FROM job_logs {_NEWEST_FIRST} LIMIT 1")
    return job_log_from(rows[0]) if rows else None


async def first_run_at(db: PgDatabase) -> datetime | None:
    """When the oldest run kept started; None when there is none."""
    rows = await db.read("SELECT min(created_at) AS first FROM job_logs")
    return aware(rows[0]["first"]) if rows[0]["first"] is not None else None


async def last_success_at(db: PgDatabase) -> datetime | None:
    """When the latest successful run ended: the updated_at of the successful run created last
    (ties by id), through the (status, created_at) index."""
    rows = await db.read(
        f"SELECT updated_at FROM job_logs WHERE status = %s {_NEWEST_FIRST} LIMIT 1",
        (int(Status.success),),
    )
    return aware(rows[0]["updated_at"]) if rows else None


async def last_error(db: PgDatabase) -> LastError | None:
    """The run that ended in error created last, with its last line's first line; None if
    none."""
    rows = await db.read(
        f"SELECT {_LOG_OF_L}, (SELECT d.message FROM job_log_details AS d "
        "WHERE d.job_log_id = l.id ORDER BY d.id DESC LIMIT 1) AS message "
        f"FROM job_logs AS l WHERE l.status = %s ORDER BY l.created_at DESC, l.id DESC LIMIT 1",
        (int(Status.error),),
    )
    if not rows:
        return None
    message = rows[0]["message"] or ""
    return LastError(job_log_from(rows[0]), message.splitlines()[0] if message else "")


async def previous_finished_status(db: PgDatabase, job_log_id: int) -> Status | None:
    """How the last finished run before this one (highest id below it) ended; None if none."""
    rows = await db.read(
        "SELECT status FROM job_logs WHERE id < %s AND status = ANY(%s) ORDER BY id DESC LIMIT 1",
        (job_log_id, [int(Status.error), int(Status.success)]),
    )
    return Status(rows[0]["status"]) if rows else None


async def open_job_logs(db: PgDatabase) -> list[JobLog]:
    """Runs still pending or processing, oldest first."""
    rows = await db.read(
        f"SELECT {_LOG} FROM job_logs WHERE status = ANY(%s) ORDER BY id",
        ([int(Status.pending), int(Status.processing)],),
    )
    return [job_log_from(row) for row in rows]


async def count_by_status(db: PgDatabase) -> StatusCounts:
    """How many runs there are in all and per status, as the triggers keep them."""
    rows = await db.read("SELECT status, n FROM job_log_counts WHERE n > 0")
    per_status = {Status(row["status"]).name: row["n"] for row in rows if is_status(row["status"])}
    return StatusCounts(total=sum(row["n"] for row in rows), **per_status)


# --- a run's lines ---------------------------------------------------------------------------

# A page of a run's lines after a cursor, only those matching the text if there is one.
_PAGE_OF_LINES = (
    f"d.job_log_id = %(log)s AND d.id > %(after)s AND (%(like)s::text IS NULL OR ({MATCHES}))"
)


def _page_params(job_log_id: int, after: int, limit: int, q: str | None) -> dict[str, object]:
    return {"log": job_log_id, "after": after, "limit": limit, **match_params(q)}


async def detail_page(
    db: PgDatabase, job_log_id: int, *, after: int, limit: int, q: str | None = None
) -> DetailPage:
    """Up to ``limit`` lines of a run with id > ``after``, in id order, optionally only those
    containing ``q`` (ASCII letters in any case, as everywhere)."""
    rows = await db.read(
        f"SELECT {_DETAIL_OF_D} FROM job_log_details AS d WHERE {_PAGE_OF_LINES} "
        "ORDER BY d.id LIMIT %(limit)s",
        _page_params(job_log_id, after, limit + 1, q),
    )
    items = [detail_from(row) for row in rows[:limit]]
    return DetailPage(items=items, next_after=items[-1].id if len(rows) > limit else None)


async def detail_page_json(
    db: PgDatabase, job_log_id: int, *, after: int, limit: int, q: str | None = None
) -> DetailPageJson:
    """:func:`detail_page` as JSON written by PostgreSQL: one statement reads the page and
    whether a line follows it."""
    rows = await db.read(
        f"WITH p AS (SELECT d.id, {detail_json('d.')} AS j FROM job_log_details AS d "
        f"WHERE {_PAGE_OF_LINES} ORDER BY d.id LIMIT %(limit)s), "
        "a AS (SELECT '[' || coalesce(string_agg(j, ',' ORDER BY id), '') || ']' AS items, "
        "max(id) AS last FROM p) "
        f"SELECT a.items, a.last, EXISTS (SELECT 1 FROM job_log_details AS d "
        f"WHERE {_PAGE_OF_LINES} AND d.id > a.last) AS more FROM a",
        _page_params(job_log_id, after, limit, q),
    )
    row = rows[0]  # an aggregate always has its row
    return DetailPageJson(items=row["items"], next_after=row["last"] if row["more"] else None)


def iter_details(
    db: PgDatabase, job_log_id: int, *, page: int = 1000
) -> AsyncIterator[list[JobLogDetail]]:
    """All lines of a run in id order, a page at a time (for streaming very long runs)."""
    return paged(partial(detail_page, db, job_log_id), page)


async def last_details(db: PgDatabase, job_log_id: int, count: int) -> list[JobLogDetail]:
    """The last ``count`` lines of a run, in the order they were written."""
    rows = await db.read(
        f"SELECT {_DETAIL_OF_D} FROM job_log_details AS d WHERE d.job_log_id = %s "
        "ORDER BY d.id DESC LIMIT %s",
        # SQLite's LIMIT takes a negative count as no limit, PostgreSQL's takes NULL.
        (job_log_id, count if count >= 0 else None),
    )
    return [detail_from(row) for row in reversed(rows)]


async def last_detail_id(db: PgDatabase, job_log_id: int) -> int:
    """The id of a run's last line (0 when it has none)."""
    rows = await db.read(
        "SELECT coalesce(max(id), 0) AS last FROM job_log_details WHERE job_log_id = %s",
        (job_log_id,),
    )
    return int(rows[0]["last"])


# --- what the event stream replays and follows -----------------------------------------------


async def details_after(
    db: PgDatabase, after: int, *, limit: int, job_log_id: int | None = None
) -> list[EventDetail]:
    """Lines with id > ``after`` in id order, with their run's name (replay and follow). Ids are
    in commit order (schema.sql), so a reader that follows them misses none."""
    rows = await db.read(
        f"SELECT {_DETAIL_OF_D}, l.name AS job_log_name FROM job_log_details AS d "
        "JOIN job_logs AS l ON l.id = d.job_log_id "
        "WHERE d.id > %s AND (%s::bigint IS NULL OR d.job_log_id = %s) ORDER BY d.id LIMIT %s",
        (after, job_log_id, job_log_id, limit),
    )
    return [_event_detail(row) for row in rows]


async def logs_with_details_after(db: PgDatabase, after: int) -> list[JobLog]:
    """The runs that have a line with id > ``after``, oldest first."""
    rows = await db.read(
        f"SELECT {_LOG} FROM job_logs WHERE id IN "
        "(SELECT job_log_id FROM job_log_details WHERE id > %s) ORDER BY id",
        (after,),
    )
    return [job_log_from(row) for row in rows]


async def high_water_marks(db: PgDatabase) -> tuple[int, int]:
    """The largest run id and the largest line id (0 when empty)."""
    rows = await db.read(
        "SELECT (SELECT coalesce(max(id), 0) FROM job_logs) AS logs, "
        "(SELECT coalesce(max(id), 0) FROM job_log_details) AS details"
    )
    return int(rows[0]["logs"]), int(rows[0]["details"])


async def changes_since(
    db: PgDatabase, log_cursor: int, detail_cursor: int, watched: Sequence[int], limit: int
) -> tuple[list[JobLog], list[EventDetail]]:
    """In one snapshot (one statement): runs created after ``log_cursor`` or ``watched``, and
    up to ``limit`` lines after ``detail_cursor`` with their run's name, both in id order."""
    rows = await db.read(
        "SELECT 0 AS kind, id, NULL::bigint AS job_log_id, name, status, NULL::text AS message, "
        "created_at, updated_at FROM job_logs WHERE id > %s OR id = ANY(%s::bigint[]) "
        "UNION ALL (SELECT 1, d.id, d.job_log_id, l.name, NULL, d.message, d.created_at, "
        "d.updated_at FROM job_log_details AS d JOIN job_logs AS l ON l.id = d.job_log_id "
        "WHERE d.id > %s ORDER BY d.id LIMIT %s) ORDER BY kind, id",
        (log_cursor, list(watched), detail_cursor, limit),
    )
    logs = [job_log_from(row) for row in rows if row["kind"] == 0]
    details = [
        _event_detail({**row, "job_log_name": row["name"]}) for row in rows if row["kind"] == 1
    ]
    return logs, details


def _event_detail(row: dict[str, Any]) -> EventDetail:
    return EventDetail(**detail_fields(row), job_log_name=row["job_log_name"])


async def search_progress(db: PgDatabase) -> float | None:
    """None once the trigram index is valid; else how far its build is (0 to 1, from
    pg_stat_progress_create_index; 0 before it starts). Searches work meanwhile, slower."""
    rows = await db.read(
        "SELECT i.indisvalid AS valid, (SELECT CASE WHEN p.blocks_total > 0 "
        "THEN p.blocks_done::float8 / p.blocks_total END FROM pg_stat_progress_create_index "
        "AS p WHERE p.index_relid = c.oid LIMIT 1) AS done FROM pg_class AS c "
        "JOIN pg_index AS i ON i.indexrelid = c.oid "
        "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
        (SEARCH_INDEX,),
    )
    if rows and rows[0]["valid"]:
        return None
    done = rows[0]["done"] if rows else None
    return round(min(1.0, float(done)), 4) if done is not None else 0.0
