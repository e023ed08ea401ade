"""Every SQL statement on job_logs and job_log_details."""

from __future__ import annotations

import itertools
import re
import sqlite3
from datetime import datetime

import aiosqlite

from .database import Database
from .errors import InvalidMessage, InvalidTransition, NotFound
from .models import (
    JobLog,
    JobLogDetail,
    JobLogPage,
    JobLogQuery,
    JobLogWithDetails,
    Status,
    StatusCounts,
)
from .rows import LOG_COLUMNS, detail_from_row, fetch_all, fetch_one, is_status, job_log_from_row
from .timestamps import from_db, to_db, to_db_bound

MAX_MESSAGE_LENGTH = 5000
NAME_PATTERN = re.compile(r"[0-9]{14}(?:_[0-9]+)?")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# The life cycle: pending → processing → success | error, and pending → error.
_ALLOWED_FROM: dict[Status, frozenset[Status]] = {
    Status.processing: frozenset({Status.pending}),
    Status.success: frozenset({Status.processing}),
    Status.error: frozenset({Status.pending, Status.processing}),
}

_DETAIL = "id, job_log_id, message, created_at, updated_at"
_LOG_OF_L = "l.id, l.name, l.status, l.created_at, l.updated_at"


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
    allowed = _ALLOWED_FROM.get(status, frozenset())
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
                f"VALUES (?, ?, ?, ?) RETURNING {_DETAIL}",
                (job_log_id, text, stamp, stamp),
            )
        except sqlite3.IntegrityError as exc:
            if "FOREIGN KEY" not in str(exc):
                raise
            raise NotFound(f"job log {job_log_id} does not exist") from None
    assert row is not None
    return detail_from_row(row)


# The trigram index finds candidates only for a query of at least three characters.
_MIN_INDEXED_QUERY = 3
# A detail containing the text, ASCII letters folded: the one definition of a match.
_CONTAINS = "instr(lower(d.message), lower(?)) > 0"


def _filters(query: JobLogQuery) -> tuple[list[str], list[object], list[object]]:
    """The WHERE terms (on job_logs) and their parameters for a query's filters, and the
    parameters of the ``matched`` CTE (the logs the search index finds; empty if unused)."""
    clauses: list[str] = []
    params: list[object] = []
    matched: list[object] = []
    if query.status is not None:
        clauses.append("status = ?")
        params.append(int(query.status))
    if query.since is not None:
        clauses.append("created_at >= ?")
        params.append(to_db_bound(query.since))
    if query.until is not None:
        clauses.append("created_at < ?")
        params.append(to_db_bound(query.until))
    if query.q is not None and len(query.q) >= _MIN_INDEXED_QUERY:
        clauses.append("id IN (SELECT job_log_id FROM matched)")
        matched += [f"%{query.q}%", query.q]
    elif query.q is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM job_log_details AS d WHERE d.job_log_id = job_logs.id "
            f"AND {_CONTAINS})"
        )
        params.append(query.q)
    return clauses, params, matched


# The logs with a detail containing the text, found once per statement for the total and the
# page alike. The trigram index's LIKE narrows to candidate details (its % and _ only widen
# the match, its case folding covers ASCII's); the scan's own test decides.
_MATCHED = (
    "matched AS MATERIALIZED (SELECT DISTINCT d.job_log_id FROM job_log_details_search AS s "
    f"JOIN job_log_details AS d ON d.id = s.rowid WHERE s.message LIKE ? AND {_CONTAINS}), "
)


async def list_job_logs(db: Database, query: JobLogQuery) -> JobLogPage:
    """One page of logs, most recent first, with the number of logs matching the filter.

    Without a time range or text, the total is read from the per-status counts the triggers
    keep; the page's ids come from an index alone, so a deep page skips index entries only.
    """
    clauses, params, matched = _filters(query)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    if query.since is None and query.until is None and query.q is None:
        total = "SELECT coalesce(sum(n), 0) FROM job_log_counts" + (
            " WHERE status = ?" if query.status is not None else ""
        )
    else:
        total = f"SELECT count(*) FROM job_logs{where}"
    # One statement (one snapshot, one trip to the reader's thread): the total joined with the
    # page, whose ids come from an index alone; an empty page leaves one row of NULLs.
    rows = await db.read(
        f"WITH {_MATCHED if matched else ''}page AS (SELECT id FROM job_logs{where} "
        f"ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?) "
        f"SELECT ({total}) AS total, {_LOG_OF_L} FROM (SELECT 1) "
        f"LEFT JOIN job_logs AS l ON l.id IN (SELECT id FROM page) "
        f"ORDER BY l.created_at DESC, l.id DESC",
        [*matched, *params, query.per_page, query.offset, *params],
    )
    return JobLogPage(
        items=[job_log_from_row(row) for row in rows if row["id"] is not None],
        page=query.page,
        per_page=query.per_page,
        total=rows[0]["total"] if rows else 0,
    )


async def get_job_log(db: Database, job_log_id: int) -> JobLogWithDetails:
    """A log by id with its details in chronological order; NotFound if there is none."""
    return await _with_details(db, "id = ?", job_log_id, f"job log {job_log_id}")


async def get_job_log_by_name(db: Database, name: str) -> JobLogWithDetails:
    """A log by name (``20251215143022`` or ``20251215143022_1``) with its details."""
    if not NAME_PATTERN.fullmatch(name):
        raise NotFound(f"job log {name!r} does not exist")
    return await _with_details(db, "name = ?", name, f"job log {name}")


async def count_by_status(db: Database) -> StatusCounts:
    """How many logs there are in all and per status, as the triggers keep them."""
    async with db.snapshot() as conn:
        rows = await fetch_all(conn, "SELECT status, n FROM job_log_counts WHERE n > 0", ())
    per_status = {Status(row["status"]).name: row["n"] for row in rows if is_status(row["status"])}
    return StatusCounts(total=sum(row["n"] for row in rows), **per_status)


async def latest_job_log(db: Database) -> JobLog | None:
    """The most recently created log, or None when there is none."""
    rows = await db.read(
        f"SELECT {LOG_COLUMNS} FROM job_logs ORDER BY created_at DESC, id DESC LIMIT 1"
    )
    return job_log_from_row(rows[0]) if rows else None


async def _with_details(db: Database, where: str, key: object, label: str) -> JobLogWithDetails:
    # One statement, so the log and its details come from one snapshot in one trip.
    rows = await db.read(
        f"SELECT {_LOG_OF_L}, d.id AS d_id, d.job_log_id AS d_job_log_id, "
        "d.message AS d_message, d.created_at AS d_created_at, d.updated_at AS d_updated_at "
        f"FROM job_logs AS l LEFT JOIN job_log_details AS d ON d.job_log_id = l.id "
        f"WHERE l.{where} ORDER BY d.created_at, d.id",
        (key,),
    )
    if not rows:
        raise NotFound(f"{label} does not exist")
    log = job_log_from_row(rows[0])
    details = [
        JobLogDetail(
            id=row["d_id"],
            job_log_id=row["d_job_log_id"],
            message=row["d_message"],
            created_at=from_db(row["d_created_at"]),
            updated_at=from_db(row["d_updated_at"]),
        )
        for row in rows
        if row["d_id"] is not None
    ]
    return JobLogWithDetails(**log.model_dump(), details=details)


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
        f"VALUES (?, ?, ?, ?) RETURNING {_DETAIL}",
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
