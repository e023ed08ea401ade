"""Every SQL statement of the retention purge (service/retention/): which logs are due, and
deleting them in batches.

Only finished logs (error, success) are ever selected or deleted. Each delete is its own short
write transaction, so a writer (the sync, the Rails app) waits a few milliseconds at most.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from service.wire import JobLog, Status

from .database import Database
from .rows import fetch_all, job_log_from_row
from .timestamps import to_db_bound

_FINISHED = (int(Status.error), int(Status.success))
# A log's details as the purge saw them: how many, and the largest id (0, 0 when none).
DetailMark = tuple[int, int]

_MARK = (
    "(SELECT count(*) FROM job_log_details AS d WHERE d.job_log_id = l.id) AS detail_count, "
    "(SELECT coalesce(max(d.id), 0) FROM job_log_details AS d WHERE d.job_log_id = l.id) "
    "AS last_detail_id"
)


class Purgeable(BaseModel):
    """A finished log older than the cutoff, with the mark of its details."""

    model_config = ConfigDict(frozen=True)

    log: JobLog
    detail_count: int
    last_detail_id: int

    @property
    def mark(self) -> DetailMark:
        """What its details must still be for the log to be deleted."""
        return self.detail_count, self.last_detail_id


class MonthCount(BaseModel):
    """How many purgeable logs (and their details) were created in one month (UTC)."""

    model_config = ConfigDict(frozen=True)

    month: str
    logs: int
    details: int


async def purgeable_after(
    db: Database, cutoff: datetime, *, after: int, limit: int
) -> list[Purgeable]:
    """Up to ``limit`` finished logs created before ``cutoff`` with id > ``after``, in id order."""
    # Unary + keeps SQLite on the rowid range: old logs have the lowest ids, so each batch reads
    # a few rows instead of sorting every remaining candidate again.
    async with db.snapshot() as conn:
        rows = await fetch_all(
            conn,
            f"SELECT l.id, l.name, l.status, l.created_at, l.updated_at, {_MARK} "
            "FROM job_logs AS l WHERE l.id > ? AND +l.status IN (?, ?) AND +l.created_at < ? "
            "ORDER BY l.id LIMIT ?",
            (after, *_FINISHED, to_db_bound(cutoff), limit),
        )
    return [
        Purgeable(
            log=job_log_from_row(row),
            detail_count=row["detail_count"],
            last_detail_id=row["last_detail_id"],
        )
        for row in rows
    ]


async def purgeable_by_month(db: Database, cutoff: datetime) -> list[MonthCount]:
    """What a purge at ``cutoff`` would delete, per month of created_at, oldest first."""
    async with db.snapshot() as conn:
        rows = await fetch_all(
            conn,
            "SELECT substr(l.created_at, 1, 7) AS month, count(*) AS logs, "
            "coalesce(sum((SELECT count(*) FROM job_log_details AS d "
            "WHERE d.job_log_id = l.id)), 0) AS details "
            "FROM job_logs AS l WHERE l.status IN (?, ?) AND l.created_at < ? "
            "GROUP BY month ORDER BY month",
            (*_FINISHED, to_db_bound(cutoff)),
        )
    return [
        MonthCount(month=row["month"], logs=row["logs"], details=row["details"]) for row in rows
    ]


async def delete_details_through(db: Database, job_log_id: int, *, through: int, limit: int) -> int:
    """Delete up to ``limit`` of a log's oldest details with id <= ``through``; how many went.

    For a log too long to delete in one short transaction: its details go a chunk at a time.
    """
    async with db.transaction() as conn:
        rows = await fetch_all(
            conn,
            "DELETE FROM job_log_details WHERE id IN (SELECT id FROM job_log_details "
            "WHERE job_log_id = ? AND id <= ? ORDER BY id LIMIT ?) RETURNING id",
            (job_log_id, through, limit),
        )
    return len(rows)


async def delete_logs(db: Database, expected: Mapping[int, DetailMark]) -> tuple[int, int]:
    """Delete finished logs and their details in one transaction; (logs, details) deleted.

    A log goes only if it is still finished and its details still match ``expected`` (what
    was archived); one that changed since stays for the next purge.
    """
    ids: Sequence[int] = list(expected)
    if not ids:
        return 0, 0
    marks = ", ".join("?" * len(ids))
    async with db.transaction() as conn:
        rows = await fetch_all(
            conn,
            f"SELECT l.id, {_MARK} FROM job_logs AS l WHERE l.id IN ({marks}) "
            "AND l.status IN (?, ?)",
            [*ids, *_FINISHED],
        )
        keep = [
            row["id"]
            for row in rows
            if (row["detail_count"], row["last_detail_id"]) == expected[row["id"]]
        ]
        kept = ", ".join("?" * len(keep)) or "NULL"
        await fetch_all(conn, f"DELETE FROM job_log_details WHERE job_log_id IN ({kept})", keep)
        await fetch_all(conn, f"DELETE FROM job_logs WHERE id IN ({kept})", keep)
    return len(keep), sum(expected[i][0] for i in keep)
