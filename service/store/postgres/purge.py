"""Every SQL statement of the retention purge on PostgreSQL: the twin of store/purge.py, same
functions, same answers.

Only finished runs (error, success) are ever selected or deleted, and each delete is its own
short transaction. Deletes send no :func:`~.wakeups.notify`: the readers it wakes follow new
ids and changed runs, and a deleted run or line is neither — a NOTIFY would only take its
global lock at every purge commit to wake every node for nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from service.wire import Status

from ..purge import DetailMark, MonthCount, Purgeable
from .database import PgDatabase
from .writes import job_log_from, stamp

_FINISHED = [int(Status.error), int(Status.success)]

# A run's lines as the purge sees them: how many, and the largest id (0, 0 when none). One
# index scan per run, joined to each row of ``l``.
_MARK = (
    "CROSS JOIN LATERAL (SELECT count(*) AS detail_count, coalesce(max(d.id), 0) "
    "AS last_detail_id FROM job_log_details AS d WHERE d.job_log_id = l.id) AS m"
)


def _bound(cutoff: datetime) -> datetime:
    """``cutoff`` as created_at holds it (naive UTC); refused naive, as store/timestamps.py does."""
    if cutoff.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return stamp(cutoff)


async def purgeable_after(
    db: PgDatabase, cutoff: datetime, *, after: int, limit: int
) -> list[Purgeable]:
    """Up to ``limit`` finished runs created before ``cutoff`` with id > ``after``, in id order."""
    rows = await db.read(
        "SELECT l.id, l.name, l.status, l.created_at, l.updated_at, m.detail_count, "
        f"m.last_detail_id FROM job_logs AS l {_MARK} "
        "WHERE l.id > %s AND l.status = ANY(%s) AND l.created_at < %s ORDER BY l.id LIMIT %s",
        (after, _FINISHED, _bound(cutoff), limit),
    )
    return [
        Purgeable(
            log=job_log_from(row),
            detail_count=row["detail_count"],
            last_detail_id=row["last_detail_id"],
        )
        for row in rows
    ]


async def purgeable_by_month(db: PgDatabase, cutoff: datetime) -> list[MonthCount]:
    """What a purge at ``cutoff`` would delete, per month of created_at (UTC), oldest first."""
    rows = await db.read(
        "SELECT to_char(l.created_at, 'YYYY-MM') AS month, count(*) AS logs, "
        "coalesce(sum(m.detail_count), 0)::bigint AS details "
        f"FROM job_logs AS l {_MARK} WHERE l.status = ANY(%s) AND l.created_at < %s "
        "GROUP BY month ORDER BY month",
        (_FINISHED, _bound(cutoff)),
    )
    return [
        MonthCount(month=row["month"], logs=row["logs"], details=row["details"]) for row in rows
    ]


async def delete_details_through(
    db: PgDatabase, job_log_id: int, *, through: int, limit: int
) -> int:
    """Delete up to ``limit`` of a run's oldest lines with id <= ``through``; how many went.

    For a run too long to delete in one short transaction: its lines go a chunk at a time.
    """
    async with db.transaction() as conn:
        cursor = await conn.execute(
            "DELETE FROM job_log_details WHERE id IN (SELECT id FROM job_log_details "
            "WHERE job_log_id = %s AND id <= %s ORDER BY id LIMIT %s)",
            (job_log_id, through, limit),
        )
        return cursor.rowcount


async def delete_logs(db: PgDatabase, expected: Mapping[int, DetailMark]) -> tuple[int, int]:
    """Delete finished runs and their lines in one transaction; (runs, lines) deleted.

    A run goes only if it is still finished and its lines still match ``expected`` (what was
    archived); one that changed since stays for the next purge.
    """
    ids = list(expected)
    if not ids:
        return 0, 0
    async with db.transaction() as conn:
        # The runs' rows first: FOR UPDATE waits for every writer whose line references one of
        # them (its foreign-key check holds a KEY SHARE lock to its commit) and keeps out every
        # later one (whose check then finds the run gone: ForeignKeyViolation, NotFound). The
        # marks come from the next statement, whose snapshot is taken after the wait: read in
        # this one, they would miss the line just committed and delete it unarchived.
        cursor = await conn.execute(
            "SELECT id FROM job_logs WHERE id = ANY(%s::bigint[]) AND status = ANY(%s) "
            "ORDER BY id FOR UPDATE",
            (ids, _FINISHED),
        )
        locked = [row["id"] for row in await cursor.fetchall()]
        cursor = await conn.execute(
            f"SELECT l.id, m.detail_count, m.last_detail_id FROM job_logs AS l {_MARK} "
            "WHERE l.id = ANY(%s::bigint[])",
            (locked,),
        )
        keep = [
            row["id"]
            for row in await cursor.fetchall()
            if (row["detail_count"], row["last_detail_id"]) == expected[row["id"]]
        ]
        if keep:
            await conn.execute(
                "DELETE FROM job_log_details WHERE job_log_id = ANY(%s::bigint[])", (keep,)
            )
            await conn.execute("DELETE FROM job_logs WHERE id = ANY(%s::bigint[])", (keep,))
    return len(keep), sum(expected[i][0] for i in keep)
