"""Reads of job_logs and job_log_details on PostgreSQL: the twin of store/reads.py, same
functions, same answers."""

from __future__ import annotations

from psycopg import sql

from service.wire import DetailPage, EventDetail, JobLog, JobLogPage, Status, StatusCounts

from ..errors import NotFound
from ..models import JobLogQuery
from ..reads import log_key
from ..rows import is_status
from ..search import SEARCH_TOTAL_CAP, like_pattern
from .database import PgDatabase
from .writes import aware, detail_from, job_log_from, stamp


async def job_log(db: PgDatabase, ref: str | int) -> JobLog:
    """A run (without its lines) as it is now; NotFound if there is none."""
    column, key = log_key(ref)
    rows = await db.read(
        sql.SQL(
            "SELECT id, name, status, created_at, updated_at FROM job_logs WHERE {} = %s"
        ).format(sql.Identifier(column)),
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


async def count_by_status(db: PgDatabase) -> StatusCounts:
    """How many runs there are in all and per status, as the triggers keep them."""
    rows = await db.read("SELECT status, n FROM job_log_counts WHERE n > 0")
    per_status = {Status(row["status"]).name: row["n"] for row in rows if is_status(row["status"])}
    return StatusCounts(total=sum(row["n"] for row in rows), **per_status)


# LIKE with ASCII letters folded and nothing else, as SQLite's LIKE (store/search.py): the one
# definition of a match in both backends. The trigram index narrows with ILIKE (it folds more
# letters, so it finds a superset); this decides.
_ASCII_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MATCHES = (
    "d.message ILIKE %(like)s AND translate(d.message, %(upper)s, %(lower)s) "
    "LIKE translate(%(like)s, %(upper)s, %(lower)s)"
)


async def list_job_logs(db: PgDatabase, query: JobLogQuery) -> JobLogPage:
    """One page of runs, most recent first, and how many match: exactly, or with text up to
    SEARCH_TOTAL_CAP and a lower bound past it — as store/search.py answers."""
    params: dict[str, object] = {
        "status": None if query.status is None else int(query.status),
        "since": None if query.since is None else stamp(query.since),
        "until": None if query.until is None else stamp(query.until),
        "limit": query.per_page,
        "offset": query.offset,
        "cap": SEARCH_TOTAL_CAP + 1,
        "like": None if query.q is None else like_pattern(query.q),
        "upper": _ASCII_UPPER,
        "lower": _ASCII_UPPER.lower(),
    }
    filters = (
        "(%(status)s::int IS NULL OR l.status = %(status)s) "
        "AND (%(since)s::timestamp IS NULL OR l.created_at >= %(since)s) "
        "AND (%(until)s::timestamp IS NULL OR l.created_at < %(until)s)"
    )
    if query.q is None:
        if query.since is None and query.until is None:
            counted = await db.read(
                "SELECT coalesce(sum(n), 0) AS n FROM job_log_counts "
                "WHERE %(status)s::int IS NULL OR status = %(status)s",
                params,
            )
        else:
            counted = await db.read(
                "SELECT count(*) AS n FROM job_logs AS l WHERE " + filters, params
            )
        total, capped = int(counted[0]["n"]), False
        where = filters
    else:
        match = (
            f"EXISTS (SELECT 1 FROM job_log_details AS d WHERE d.job_log_id = l.id AND {_MATCHES})"
        )
        where = f"{filters} AND {match}"
        counted = await db.read(
            "SELECT count(*) AS n FROM (SELECT DISTINCT d.job_log_id FROM job_log_details AS d "
            f"JOIN job_logs AS l ON l.id = d.job_log_id WHERE {filters} AND {_MATCHES} "
            "LIMIT %(cap)s) AS found",
            params,
        )
        found = int(counted[0]["n"])
        total, capped = min(found, SEARCH_TOTAL_CAP), found > SEARCH_TOTAL_CAP
    rows = await db.read(
        "SELECT l.id, l.name, l.status, l.created_at, l.updated_at FROM job_logs AS l "
        f"WHERE {where} ORDER BY l.created_at DESC, l.id DESC LIMIT %(limit)s OFFSET %(offset)s",
        params,
    )
    return JobLogPage(
        items=[job_log_from(row) for row in rows],
        page=query.page,
        per_page=query.per_page,
        total=total,
        total_is_lower_bound=capped,
    )


async def detail_page(
    db: PgDatabase, job_log_id: int, *, after: int, limit: int, q: str | None = None
) -> DetailPage:
    """Up to ``limit`` lines of a run with id > ``after``, in id order, optionally only those
    containing ``q`` (ASCII letters in any case, as everywhere)."""
    params = {
        "log": job_log_id,
        "after": after,
        "limit": limit + 1,
        "like": None if q is None else like_pattern(q),
        "upper": _ASCII_UPPER,
        "lower": _ASCII_UPPER.lower(),
    }
    rows = await db.read(
        "SELECT d.id, d.job_log_id, d.message, d.created_at, d.updated_at "
        "FROM job_log_details AS d WHERE d.job_log_id = %(log)s AND d.id > %(after)s "
        f"AND (%(like)s::text IS NULL OR ({_MATCHES})) ORDER BY d.id LIMIT %(limit)s",
        params,
    )
    items = [detail_from(row) for row in rows[:limit]]
    return DetailPage(items=items, next_after=items[-1].id if len(rows) > limit else None)
