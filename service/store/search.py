"""Pages of runs, most recent first: filtered by status and time, and searched by the text of
their lines.

A search answers with an exact total up to :data:`SEARCH_TOTAL_CAP` and says when there are
more; its page is exact whichever way the runs are found (see :func:`_search`). While the
trigram index of an adopted database is being built (``Database.search_ready`` False), a search
probes the runs' lines instead, with the same test of a match.
"""

from __future__ import annotations

import sqlite3

import aiosqlite

from service.wire import JobLogPage

from .database import Database
from .json_rows import log_json, row_json
from .models import JobLogQuery
from .rows import LOG_COLUMNS, fetch_all, fetch_one, job_log_from_row
from .timestamps import to_db_bound

_LOG_OF_L = "l.id, l.name, l.status, l.created_at, l.updated_at"
_JSON_OF_L = log_json("l.")
_LOG_AND_JSON = f"{LOG_COLUMNS}, {log_json()} AS j"
# The trigram index finds candidates only for a query of at least three characters.
_MIN_INDEXED_QUERY = 3
# Index entries a page may skip and still be read on the event loop (~1 ms at most). Sending
# deeper pages to the reader's thread from 1,000 entries on measured worse, not better: page
# 1,000 (25,000 entries) went from 0.86x to 0.6x the floor's rate at a year and a decade.
_SKIP_ON_LOOP = 50_000


def _filters(query: JobLogQuery, table: str = "job_logs") -> tuple[list[str], list[object]]:
    """The WHERE terms on ``table`` (job_logs or an alias of it) for a query's status and
    created_at range, and their parameters."""
    clauses: list[str] = []
    params: list[object] = []
    if query.status is not None:
        clauses.append(f"{table}.status = ?")
        params.append(int(query.status))
    if query.since is not None:
        clauses.append(f"{table}.created_at >= ?")
        params.append(to_db_bound(query.since))
    if query.until is not None:
        clauses.append(f"{table}.created_at < ?")
        params.append(to_db_bound(query.until))
    return clauses, params


def _where(clauses: list[str]) -> str:
    return f" WHERE {' AND '.join(clauses)}" if clauses else ""


async def list_job_logs(db: Database, query: JobLogQuery) -> JobLogPage:
    """One page of runs, most recent first, with the number of runs matching the filter.

    Without a time range or text, the total is read from the per-status counts the triggers
    keep; the page's ids come from an index alone, so a deep page skips index entries only.
    With text, see :func:`_search`.
    """
    rows, total, capped = await _runs_page(db, query)
    return JobLogPage(
        items=[job_log_from_row(row) for row in rows],
        page=query.page,
        per_page=query.per_page,
        total=total,
        total_is_lower_bound=capped,
    )


async def list_job_logs_json(db: Database, query: JobLogQuery) -> str:
    """:func:`list_job_logs` as the JSON of its :class:`service.wire.JobLogPage`, each run's
    written by SQLite (see :mod:`.json_rows`)."""
    rows, total, capped = await _runs_page(db, query)
    items = ",".join(row_json(row) for row in rows)
    return (
        f'{{"items":[{items}],"page":{query.page},"per_page":{query.per_page},'
        f'"total":{total},"total_is_lower_bound":{"true" if capped else "false"}}}'
    )


async def _runs_page(db: Database, query: JobLogQuery) -> tuple[list[sqlite3.Row], int, bool]:
    """The rows of a page of runs (their columns and ``j``, their JSON), the total, and
    whether the total is a lower bound."""
    if query.q is not None:
        return await _search(db, query, query.q)
    # A status filter reads the runs by status (their order is the page's): ids only.
    runs = "job_logs_by_status" if query.status is not None and db.by_status_ready else "job_logs"
    clauses, params = _filters(query, runs)
    where = _where(clauses)
    if query.since is None and query.until is None:
        total = "SELECT coalesce(sum(n), 0) FROM job_log_counts" + (
            " WHERE status = ?" if query.status is not None else ""
        )
    else:
        total = f"SELECT count(*) FROM {runs}{where}"
    # One statement (one snapshot): the total joined with the page, whose ids come from an
    # index alone; an empty page leaves one row of NULLs. Without a range to count, it reads
    # a few rows and the index entries it skips: on the loop unless it skips many.
    bounded = query.since is None and query.until is None and query.offset <= _SKIP_ON_LOOP
    rows = await (db.read_bounded if bounded else db.read)(
        f"WITH page AS (SELECT id FROM {runs}{where} "
        f"ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?) "
        f"SELECT ({total}) AS total, {_LOG_OF_L}, {_JSON_OF_L} AS j FROM (SELECT 1) "
        f"LEFT JOIN job_logs AS l ON l.id IN (SELECT id FROM page) "
        f"ORDER BY l.created_at DESC, l.id DESC",
        [*params, query.per_page, query.offset, *params],
    )
    return [row for row in rows if row["id"] is not None], rows[0]["total"] if rows else 0, False


# A search counts the runs it finds up to this many; past it, ``total`` is this and says it is
# a lower bound. Counting every run that carries a common text ("Login failed", a server
# name) is what made a search slow: 240 ms for a text in every run of a year.
SEARCH_TOTAL_CAP = 1000


def like_pattern(q: str) -> str:
    """``q`` as a LIKE pattern (``ESCAPE '\\'``) for a message containing it: LIKE folds
    ASCII letters and nothing else, as ``lower()`` does, so this is the one definition of a
    match (and 3x cheaper than ``instr(lower(message), lower(q))``)."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


LIKE = "LIKE ? ESCAPE '\\'"
_ORDER = " ORDER BY created_at DESC, id DESC"


def _found_by_index(filters: list[str]) -> str:
    """The runs with a line that matches, as the trigram index yields the lines, newest first:
    the index's own LIKE narrows to candidate lines (its % and _ only widen the match, its
    case folding covers ASCII's), the escaped LIKE decides. Streamed, so a LIMIT stops it."""
    runs = " JOIN job_logs AS f ON f.id = d.job_log_id" if filters else ""
    return (
        "SELECT DISTINCT d.job_log_id AS id FROM job_log_details_search AS s "
        f"JOIN job_log_details AS d ON d.id = s.rowid{runs} "
        f"WHERE {' AND '.join(['s.message LIKE ?', f'd.message {LIKE}', *filters])} "
        "ORDER BY s.rowid DESC"
    )


def _found_by_probing(
    query: JobLogQuery, by_status: bool, columns: str = "id"
) -> tuple[str, list[object]]:
    """The runs with a line that matches, most recent first, each run's lines probed; and
    the parameters of its filters (the LIKE pattern follows them). A status filter walks
    the runs by status, when they are complete (``by_status``)."""
    probe = (
        "EXISTS (SELECT 1 FROM job_log_details AS d WHERE d.job_log_id = job_logs.id "
        f"AND d.message {LIKE})"
    )
    if query.status is not None and by_status:
        clauses, params = _filters(query, "job_logs_by_status")
        return (
            f"SELECT {columns} FROM (SELECT id AS o_id, created_at AS o_at "
            f"FROM job_logs_by_status{_where(clauses)}) AS o "
            f"JOIN job_logs ON job_logs.id = o.o_id WHERE {probe} "
            "ORDER BY o.o_at DESC, o.o_id DESC",
            params,
        )
    clauses, params = _filters(query)
    return f"SELECT {columns} FROM job_logs WHERE {' AND '.join([*clauses, probe])}{_ORDER}", params


async def _search(db: Database, query: JobLogQuery, q: str) -> tuple[list[sqlite3.Row], int, bool]:
    """A page of the runs with a line containing ``q``, exact whatever the strategy.

    First the runs found, up to one past :data:`SEARCH_TOTAL_CAP`: from the trigram index,
    newest line first; or, while the index is not ready (an adopted database, built in the
    background) or ``q`` is too short for trigrams, by probing runs most recent first. All
    found and at most the cap: they are the whole answer (total exact, the page taken from
    them, in the same statement). More: the total is the cap, a lower bound, and the page
    comes from whichever exact query costs less for how common the text is: probing runs
    most recent first (a common text fills a page after a few runs) or every match from the
    index (a rare one has few).
    """
    clauses, params = _filters(query)
    like = like_pattern(q)
    indexed = db.search_ready and len(q) >= _MIN_INDEXED_QUERY
    end = query.offset + query.per_page
    if indexed:
        f_clauses, f_params = _filters(query, "f")
        found, found_params = _found_by_index(f_clauses), [f"%{q}%", like, *f_params]
    else:
        found, found_params = _found_by_probing(query, db.by_status_ready)
        found_params = [*found_params, like]
    # Runs found by probing come in page order: the first cap + 1 hold any page within them.
    in_found = not indexed and end <= SEARCH_TOTAL_CAP + 1
    page_of = [query.per_page, query.offset]
    rest_of = [SEARCH_TOTAL_CAP, indexed, SEARCH_TOTAL_CAP, indexed, like]
    async with db.snapshot() as conn:
        rows = await fetch_all(
            conn,
            f"WITH found AS MATERIALIZED ({found} LIMIT ?), "
            "n AS (SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM found), "
            "page AS (SELECT id FROM job_logs WHERE ((SELECT n FROM n) <= ? OR ?) "
            f"AND id IN (SELECT id FROM found){_ORDER} LIMIT ? OFFSET ?) "
            f"SELECT n.n AS found, n.lo, n.hi, {_LOG_OF_L}, {_JSON_OF_L} AS j, "
            # Past the cap, for the index's page (_rest): the runs found, and the newest
            # matching line of the oldest of them (the index was read down to it, or lower).
            "CASE WHEN n.n > ? AND ? THEN (SELECT json_group_array(id) FROM found) END AS ids, "
            "CASE WHEN n.n > ? AND ? THEN (SELECT max(d.id) FROM job_log_details AS d "
            f"WHERE d.job_log_id = n.lo AND d.message {LIKE}) END AS upto FROM n "
            "LEFT JOIN job_logs AS l ON l.id IN (SELECT id FROM page) "
            "ORDER BY l.created_at DESC, l.id DESC",
            [*found_params, SEARCH_TOTAL_CAP + 1, SEARCH_TOTAL_CAP, in_found, *page_of, *rest_of],
        )
        head = rows[0]
        capped = head["found"] > SEARCH_TOTAL_CAP
        page = [row for row in rows if row["id"] is not None]
        if capped and not in_found:
            density = head["found"] / (head["hi"] - head["lo"] + 1)
            if not indexed or await _probing_is_cheaper(conn, density, end):
                sql, found_params = _found_by_probing(query, db.by_status_ready, _LOG_AND_JSON)
                found_params = [*found_params, like]
            else:
                sql, found_params = _rest(clauses), [head["ids"], f"%{q}%", head["upto"], like]
                found_params += params
            page = await fetch_all(conn, f"{sql} LIMIT ? OFFSET ?", [*found_params, *page_of])
    return page, min(head["found"], SEARCH_TOTAL_CAP), capped


def _rest(filters: list[str]) -> str:
    """Every run that matches, in page order: the runs found (a JSON array), and those of the
    matching lines the index has not yielded yet (rowid up to a bound): reading those is
    reading the index once, not twice."""
    return (
        "WITH ids AS (SELECT value AS id FROM json_each(?) UNION "
        "SELECT d.job_log_id FROM job_log_details_search AS s "
        "JOIN job_log_details AS d ON d.id = s.rowid "
        f"WHERE s.message LIKE ? AND s.rowid <= ? AND d.message {LIKE}) "
        f"SELECT {_LOG_AND_JSON} FROM job_logs "
        f"WHERE {' AND '.join([*filters, 'id IN (SELECT id FROM ids)'])}{_ORDER}"
    )


async def _probing_is_cheaper(conn: aiosqlite.Connection, density: float, end: int) -> bool:
    """Whether probing runs most recent first until ``end`` of them match costs less than
    reading every match from the index, for a text in ``density`` of the runs.

    Measured at a year of runs: probing a run (~20 lines) ~4 µs, a match from the index ~7."""
    row = await fetch_one(conn, "SELECT coalesce(max(id), 0) AS last FROM job_logs", ())
    runs = int(row["last"]) if row is not None else 0
    return 4 * end / density <= 7 * density * runs
