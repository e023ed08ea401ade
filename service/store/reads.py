"""Every read of job_logs and job_log_details but the pages of runs (:mod:`.search`): a run by
reference, pages of lines, the counts, and what the event stream replays and follows.

A run is looked up by a *ref*: its name (``20251215143022``, ``…_1``), or its id as an int or as
digits. Each read is one statement where it can be (one snapshot, one trip to the reader's
thread, or none: small indexed reads run on the event loop, see ``Database.read_bounded``). A
page of lines, or a run for the API, comes as models or as JSON written by SQLite itself.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from service.wire import (
    NAME_PATTERN,
    DetailPage,
    EventDetail,
    JobLog,
    JobLogDetail,
    JobLogWithDetails,
    Status,
    StatusCounts,
    sql_iso_z,
)

from .database import Database
from .errors import NotFound
from .json_rows import log_json, row_json
from .rows import (
    DETAIL_COLUMNS,
    LOG_COLUMNS,
    detail_fields,
    detail_from_row,
    fetch_all,
    is_status,
    job_log_from_row,
)
from .search import LIKE, like_pattern
from .timestamps import from_db

_MAX_ID = 2**63 - 1
# Lines a run may have and still be read whole on the event loop.
_LINES_ON_LOOP = 1000
_LOG_OF_L = "l.id, l.name, l.status, l.created_at, l.updated_at"
_JSON_OF_L = log_json("l.")
_DETAIL_OF_D = "d.id, d.job_log_id, d.message, d.created_at, d.updated_at"


# --- one run ---------------------------------------------------------------------------------


def log_key(ref: str | int) -> tuple[str, str | int]:
    """``("name", …)`` for a name, ``("id", n)`` for an id; anything else is not found."""
    if isinstance(ref, int):
        return "id", ref
    if NAME_PATTERN.fullmatch(ref):
        return "name", ref
    if ref.isascii() and ref.isdigit() and 0 < int(ref) <= _MAX_ID:
        return "id", int(ref)
    raise NotFound(f"job log {ref!r} does not exist")


async def job_log(db: Database, ref: str | int) -> JobLog:
    """A run (without its lines) as it is now; NotFound if there is none."""
    column, key = log_key(ref)
    rows = await db.read_bounded(f"SELECT {LOG_COLUMNS} FROM job_logs WHERE {column} = ?", (key,))
    if not rows:
        raise NotFound(f"job log {ref} does not exist")
    return job_log_from_row(rows[0])


async def neighbours(db: Database, ref: str | int) -> tuple[JobLog | None, JobLog | None]:
    """The runs just before and just after ``ref`` in the list's order (created_at, then id);
    NotFound if there is no such run."""
    log = await job_log(db, ref)
    this = "(SELECT created_at, id FROM job_logs WHERE id = ?)"
    rows = await db.read_bounded(
        f"SELECT * FROM (SELECT {LOG_COLUMNS}, 0 AS after FROM job_logs "
        f"WHERE (created_at, id) < {this} ORDER BY created_at DESC, id DESC LIMIT 1) "
        f"UNION ALL SELECT * FROM (SELECT {LOG_COLUMNS}, 1 AS after FROM job_logs "
        f"WHERE (created_at, id) > {this} ORDER BY created_at, id LIMIT 1)",
        (log.id, log.id),
    )
    found = {row["after"]: job_log_from_row(row) for row in rows}
    return found.get(0), found.get(1)


async def job_log_with_details(db: Database, ref: str | int) -> JobLogWithDetails:
    """A run with all its lines in chronological order; NotFound if there is none."""
    column, key = log_key(ref)
    rows = await db.read(
        f"SELECT {_LOG_OF_L}, d.id AS d_id, d.job_log_id AS d_job_log_id, "
        "d.message AS d_message, d.created_at AS d_created_at, d.updated_at AS d_updated_at "
        f"FROM job_logs AS l LEFT JOIN job_log_details AS d ON d.job_log_id = l.id "
        f"WHERE l.{column} = ? ORDER BY d.created_at, d.id",
        (key,),
    )
    if not rows:
        raise NotFound(f"job log {ref} does not exist")
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
    log = job_log_from_row(rows[0])
    return JobLogWithDetails(**log.model_dump(exclude={"duration_seconds"}), details=details)


async def job_log_with_details_json(db: Database, ref: str | int) -> str:
    """:func:`job_log_with_details` as the JSON of its model, written by SQLite."""
    column, key = log_key(ref)
    text = await _with_details_json(db, f"l.{column} = ?", [key])
    if text is None:
        raise NotFound(f"job log {ref} does not exist")
    return text


async def latest_with_details_json(db: Database) -> str | None:
    """The most recently created run with its lines as JSON (see
    :func:`job_log_with_details_json`), or None when there is none; one statement."""
    return await _with_details_json(
        db, "l.id = (SELECT id FROM job_logs ORDER BY created_at DESC, id DESC LIMIT 1)", []
    )


_DETAIL_OF_D_JSON = (
    f"CASE WHEN ({sql_iso_z('d.created_at')}) IS NOT NULL THEN json_object('id', d.id, "
    "'job_log_id', d.job_log_id, 'message', d.message, "
    f"'created_at', {sql_iso_z('d.created_at')}) END"
)


async def _with_details_json(db: Database, where: str, params: list[object]) -> str | None:
    found = await db.read_bounded(
        "SELECT l.id, (SELECT count(*) FROM (SELECT 1 FROM job_log_details AS d "
        f"WHERE d.job_log_id = l.id LIMIT {_LINES_ON_LOOP + 1})) AS lines "
        f"FROM job_logs AS l WHERE {where}",
        params,
    )
    if not found:
        return None
    small = found[0]["lines"] <= _LINES_ON_LOOP
    rows = await (db.read_bounded if small else db.read)(
        f"SELECT {_LOG_OF_L}, {_JSON_OF_L} AS j, d.id AS d_id, d.job_log_id AS d_job_log_id, "
        "d.message AS d_message, d.created_at AS d_created_at, d.updated_at AS d_updated_at, "
        f"{_DETAIL_OF_D_JSON} AS dj "
        f"FROM job_logs AS l LEFT JOIN job_log_details AS d ON d.job_log_id = l.id "
        "WHERE l.id = ? ORDER BY d.created_at, d.id",
        [found[0]["id"]],
    )
    if not rows:  # deleted since
        return None
    details = ",".join(
        row["dj"]
        if row["dj"] is not None
        else JobLogDetail(
            id=row["d_id"],
            job_log_id=row["d_job_log_id"],
            message=row["d_message"],
            created_at=from_db(row["d_created_at"]),
            updated_at=from_db(row["d_updated_at"]),
        ).model_dump_json()
        for row in rows
        if row["d_id"] is not None
    )
    log = row_json(rows[0])
    # duration_seconds, a computed field, comes last in the model's JSON: the lines go before.
    cut = log.rindex(',"duration_seconds":')
    return f'{log[:cut]},"details":[{details}]{log[cut:]}'


async def latest_job_log(db: Database) -> JobLog | None:
    """The most recently created run, or None when there is none."""
    rows = await db.read_bounded(
        f"SELECT {LOG_COLUMNS} FROM job_logs ORDER BY created_at DESC, id DESC LIMIT 1"
    )
    return job_log_from_row(rows[0]) if rows else None


async def first_run_at(db: Database) -> datetime | None:
    """When the oldest run kept started; None when there is none."""
    rows = await db.read_bounded("SELECT min(created_at) AS first FROM job_logs")
    return from_db(rows[0]["first"]) if rows and rows[0]["first"] is not None else None


def _newest_with_status(db: Database) -> str:
    """SQL for the id of the newest run with the status given as its parameter: one entry of
    the runs by status; before they are built (an adopted database), the status index and a
    sort of every run with that status."""
    runs = "job_logs_by_status" if db.by_status_ready else "job_logs"
    return f"SELECT id FROM {runs} WHERE status = ? ORDER BY created_at DESC, id DESC LIMIT 1"


async def last_success_at(db: Database) -> datetime | None:
    """When the latest successful run ended."""
    rows = await db.read(
        f"SELECT updated_at FROM job_logs WHERE id = ({_newest_with_status(db)})",
        (int(Status.success),),
    )
    return from_db(rows[0]["updated_at"]) if rows else None


@dataclass(frozen=True)
class LastError:
    """The latest failed run and the first line of its last message (its ERROR line)."""

    job_log: JobLog
    line: str


async def last_error(db: Database) -> LastError | None:
    """The latest run that ended in error, with its last line's first line; None if none."""
    rows = await db.read(
        f"SELECT {_LOG_OF_L}, (SELECT d.message FROM job_log_details AS d "
        "WHERE d.job_log_id = l.id ORDER BY d.id DESC LIMIT 1) AS message "
        f"FROM job_logs AS l WHERE l.id = ({_newest_with_status(db)})",
        (int(Status.error),),
    )
    if not rows:
        return None
    message = rows[0]["message"] or ""
    return LastError(job_log_from_row(rows[0]), message.splitlines()[0] if message else "")


async def previous_finished_status(db: Database, job_log_id: int) -> Status | None:
    """How the last finished run before this one (highest id below it) ended; None if none."""
    rows = await db.read(
        "SELECT status FROM job_logs WHERE id < ? AND status IN (?, ?) ORDER BY id DESC LIMIT 1",
        (job_log_id, int(Status.error), int(Status.success)),
    )
    return Status(rows[0]["status"]) if rows else None


async def open_job_logs(db: Database) -> list[JobLog]:
    """Runs still pending or processing, oldest first."""
    rows = await db.read(
        f"SELECT {LOG_COLUMNS} FROM job_logs WHERE status IN (?, ?) ORDER BY id",
        (int(Status.pending), int(Status.processing)),
    )
    return [job_log_from_row(row) for row in rows]


async def count_by_status(db: Database) -> StatusCounts:
    """How many runs there are in all and per status, as the triggers keep them."""
    rows = await db.read_bounded("SELECT status, n FROM job_log_counts WHERE n > 0")
    per_status = {Status(row["status"]).name: row["n"] for row in rows if is_status(row["status"])}
    return StatusCounts(total=sum(row["n"] for row in rows), **per_status)


# --- a run's lines ---------------------------------------------------------------------------


def _page_of_lines(job_log_id: int, after: int, q: str | None) -> tuple[str, list[object]]:
    """The WHERE clause and parameters of a page of a run's lines after a cursor."""
    if q is None:
        return "job_log_id = ? AND id > ?", [job_log_id, after]
    return (
        f"job_log_id = ? AND id > ? AND message {LIKE}",
        [job_log_id, after, like_pattern(q)],
    )


async def detail_page(
    db: Database, job_log_id: int, *, after: int, limit: int, q: str | None = None
) -> DetailPage:
    """Up to ``limit`` lines of a run with id > ``after``, in id order, optionally only those
    containing ``q`` (case-insensitive for ASCII letters)."""
    where, params = _page_of_lines(job_log_id, after, q)
    rows = await db.read(
        f"SELECT {DETAIL_COLUMNS} FROM job_log_details WHERE {where} ORDER BY id LIMIT ?",
        [*params, limit + 1],
    )
    items = [detail_from_row(row) for row in rows[:limit]]
    return DetailPage(items=items, next_after=items[-1].id if len(rows) > limit else None)


@dataclass(frozen=True)
class DetailPageJson:
    """A :class:`service.wire.DetailPage` as JSON: ``items`` its array, ``next_after``."""

    items: str
    next_after: int | None

    def text(self) -> str:
        """The whole page as JSON."""
        return f'{{"items":{self.items},"next_after":{json.dumps(self.next_after)}}}'


async def detail_page_json(
    db: Database, job_log_id: int, *, after: int, limit: int, q: str | None = None
) -> DetailPageJson:
    """:func:`detail_page` as JSON written by SQLite (a run of 100,000 lines is read in 100
    pages: a model per line and its serializer cost ~10 ms a page, ``json_group_array`` well
    under 1). A stored time outside Rails' two forms gives the page from the models instead.

    One statement reads the page and whether a line follows it; without text it reads at
    most ``limit`` + 1 entries of an index, so it runs on the loop's thread
    (:meth:`Database.read_bounded`); with text it may scan a long run's lines, so it does not.
    """
    where, params = _page_of_lines(job_log_id, after, q)
    rows = await (db.read_bounded if q is None else db.read)(
        f"WITH p AS (SELECT id, job_log_id, message, {sql_iso_z('created_at')} AS iso "
        f"FROM job_log_details WHERE {where} ORDER BY id LIMIT ?), "
        "a AS (SELECT json_group_array(json_object('id', id, 'job_log_id', job_log_id, "
        "'message', message, 'created_at', iso)) AS items, max(id) AS last, "
        "count(*) - count(iso) AS odd FROM p) "
        f"SELECT a.*, EXISTS (SELECT 1 FROM job_log_details WHERE {where} AND id > a.last) "
        "AS more FROM a",
        [*params, limit, *params],
    )
    row = rows[0]  # an aggregate always has its row
    items, last = str(row["items"] or "[]"), row["last"]
    if row["odd"]:
        models = await db.read(
            f"SELECT {DETAIL_COLUMNS} FROM job_log_details WHERE {where} ORDER BY id LIMIT ?",
            [*params, limit],
        )
        items = f"[{','.join(detail_from_row(r).model_dump_json() for r in models)}]"
    return DetailPageJson(items=items, next_after=last if row["more"] else None)


def iter_details(
    db: Database, job_log_id: int, *, page: int = 1000
) -> AsyncIterator[list[JobLogDetail]]:
    """All lines of a run in id order, a page at a time (for streaming very long runs)."""
    return paged(partial(detail_page, db, job_log_id), page)


async def paged(
    read: Callable[..., Awaitable[DetailPage]], page: int
) -> AsyncIterator[list[JobLogDetail]]:
    """Every page ``read(after=…, limit=page)`` gives, from the start, until the last."""
    after = 0
    while True:
        chunk = await read(after=after, limit=page)
        if chunk.items:
            yield chunk.items
        if chunk.next_after is None:
            return
        after = chunk.next_after


async def last_details(db: Database, job_log_id: int, count: int) -> list[JobLogDetail]:
    """The last ``count`` lines of a run, in the order they were written."""
    rows = await db.read(
        f"SELECT {DETAIL_COLUMNS} FROM job_log_details WHERE job_log_id = ? "
        "ORDER BY id DESC LIMIT ?",
        (job_log_id, count),
    )
    return [detail_from_row(row) for row in reversed(rows)]


async def last_detail_id(db: Database, job_log_id: int) -> int:
    """The id of a run's last line (0 when it has none)."""
    rows = await db.read(
        "SELECT coalesce(max(id), 0) AS last FROM job_log_details WHERE job_log_id = ?",
        (job_log_id,),
    )
    return int(rows[0]["last"])


# --- what the event stream replays and follows -----------------------------------------------


async def details_after(
    db: Database, after: int, *, limit: int, job_log_id: int | None = None
) -> list[EventDetail]:
    """Lines with id > ``after`` in id order, with their run's name (replay and follow)."""
    where = "d.id > ?" + (" AND d.job_log_id = ?" if job_log_id is not None else "")
    params: list[object] = [after] if job_log_id is None else [after, job_log_id]
    rows = await db.read(
        f"SELECT {_DETAIL_OF_D}, l.name AS job_log_name FROM job_log_details AS d "
        f"JOIN job_logs AS l ON l.id = d.job_log_id WHERE {where} ORDER BY d.id LIMIT ?",
        [*params, limit],
    )
    return [_event_detail(row) for row in rows]


async def logs_with_details_after(db: Database, after: int) -> list[JobLog]:
    """The runs that have a line with id > ``after``, oldest first."""
    rows = await db.read(
        f"SELECT {LOG_COLUMNS} FROM job_logs WHERE id IN "
        f"(SELECT DISTINCT job_log_id FROM job_log_details WHERE id > ?) ORDER BY id",
        (after,),
    )
    return [job_log_from_row(row) for row in rows]


async def high_water_marks(db: Database) -> tuple[int, int]:
    """The largest run id and the largest line id (0 when empty)."""
    rows = await db.read(
        "SELECT (SELECT coalesce(max(id), 0) FROM job_logs) AS logs, "
        "(SELECT coalesce(max(id), 0) FROM job_log_details) AS details"
    )
    return int(rows[0]["logs"]), int(rows[0]["details"])


async def changes_since(
    db: Database, log_cursor: int, detail_cursor: int, watched: Sequence[int], limit: int
) -> tuple[list[JobLog], list[EventDetail]]:
    """In one snapshot: runs created after ``log_cursor`` or ``watched``, and up to ``limit``
    lines after ``detail_cursor`` with their run's name, both in id order."""
    marks = ", ".join("?" * len(watched)) or "NULL"
    async with db.snapshot() as conn:
        logs = await fetch_all(
            conn,
            f"SELECT {LOG_COLUMNS} FROM job_logs WHERE id > ? OR id IN ({marks}) ORDER BY id",
            [log_cursor, *watched],
        )
        details = await fetch_all(
            conn,
            f"SELECT {_DETAIL_OF_D}, l.name AS job_log_name FROM job_log_details AS d "
            f"JOIN job_logs AS l ON l.id = d.job_log_id WHERE d.id > ? ORDER BY d.id LIMIT ?",
            (detail_cursor, limit),
        )
    return [job_log_from_row(row) for row in logs], [_event_detail(row) for row in details]


def _event_detail(row: sqlite3.Row) -> EventDetail:
    return EventDetail(**detail_fields(row), job_log_name=row["job_log_name"])
