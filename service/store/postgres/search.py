"""Pages of runs on PostgreSQL, most recent first: filtered by status and time, and searched by
the text of their lines. The twin of store/search.py, same functions, same answers.

A match is SQLite's LIKE: ASCII letters folded and nothing else. The trigram index narrows with
ILIKE (it folds more letters, so it finds a superset); an ASCII-folding LIKE decides
(:data:`MATCHES`, also what a page of a run's lines is searched with).
"""

from __future__ import annotations

from typing import Any

from service.wire import JobLogPage

from ..models import JobLogQuery
from ..search import SEARCH_TOTAL_CAP, like_pattern
from .database import PgDatabase
from .json_rows import log_json, row_json
from .writes import job_log_from, stamp

_ASCII_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Whether line ``d`` holds the text of :func:`match_params`.
MATCHES = (
    "d.message ILIKE %(like)s AND translate(d.message, %(upper)s, %(lower)s) "
    "LIKE translate(%(like)s, %(upper)s, %(lower)s)"
)


def match_params(q: str | None) -> dict[str, object]:
    """The parameters :data:`MATCHES` takes for text ``q`` (``like`` None without one)."""
    return {
        "like": None if q is None else like_pattern(q),
        "upper": _ASCII_UPPER,
        "lower": _ASCII_UPPER.lower(),
    }


async def list_job_logs(db: PgDatabase, query: JobLogQuery) -> JobLogPage:
    """One page of runs, most recent first, and how many match: exactly, or with text up to
    SEARCH_TOTAL_CAP and a lower bound past it — as store/search.py answers."""
    rows, total, capped = await _runs_page(db, query)
    return JobLogPage(
        items=[job_log_from(row) for row in rows],
        page=query.page,
        per_page=query.per_page,
        total=total,
        total_is_lower_bound=capped,
    )


async def list_job_logs_json(db: PgDatabase, query: JobLogQuery) -> str:
    """:func:`list_job_logs` as the JSON of its :class:`service.wire.JobLogPage`, each run's
    written by PostgreSQL (see :mod:`.json_rows`): the text SQLite mode answers with."""
    rows, total, capped = await _runs_page(db, query)
    items = ",".join(row_json(row) for row in rows)
    return (
        f'{{"items":[{items}],"page":{query.page},"per_page":{query.per_page},'
        f'"total":{total},"total_is_lower_bound":{"true" if capped else "false"}}}'
    )


async def _runs_page(db: PgDatabase, query: JobLogQuery) -> tuple[list[dict[str, Any]], int, bool]:
    """The rows of a page of runs (their columns and ``j``, their JSON), the total, and
    whether the total is a lower bound."""
    params: dict[str, object] = {
        "status": None if query.status is None else int(query.status),
        "since": None if query.since is None else stamp(query.since),
        "until": None if query.until is None else stamp(query.until),
        "limit": query.per_page,
        "offset": query.offset,
        "cap": SEARCH_TOTAL_CAP + 1,
        **match_params(query.q),
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
            f"EXISTS (SELECT 1 FROM job_log_details AS d WHERE d.job_log_id = l.id AND {MATCHES})"
        )
        where = f"{filters} AND {match}"
        counted = await db.read(
            "SELECT count(*) AS n FROM (SELECT DISTINCT d.job_log_id FROM job_log_details AS d "
            f"JOIN job_logs AS l ON l.id = d.job_log_id WHERE {filters} AND {MATCHES} "
            "LIMIT %(cap)s) AS found",
            params,
        )
        found = int(counted[0]["n"])
        total, capped = min(found, SEARCH_TOTAL_CAP), found > SEARCH_TOTAL_CAP
    # The JSON is written for the page's rows only, after the OFFSET has skipped the others.
    rows = await db.read(
        f"SELECT p.*, {log_json('p.')} AS j FROM (SELECT l.id, l.name, l.status, l.created_at, "
        f"l.updated_at FROM job_logs AS l WHERE {where} "
        "ORDER BY l.created_at DESC, l.id DESC LIMIT %(limit)s OFFSET %(offset)s) AS p "
        "ORDER BY p.created_at DESC, p.id DESC",
        params,
    )
    return rows, total, capped
