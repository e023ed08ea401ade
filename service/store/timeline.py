"""Runs per time bucket over a window: what the overview's chart draws, one row per bucket.

A window of 30 days at 288 runs a day is 8,640 runs; the page asks for a few hundred buckets,
so it draws a few hundred bars whatever the window. One ``GROUP BY`` over the created_at
index's range, each run's duration from its two timestamps (``julianday`` reads both of
Rails' forms).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from service.wire import Status

from .database import Database
from .timestamps import to_db_bound


@dataclass(frozen=True)
class Bucket:
    """The runs that started in [start, start + width): how many ended how, the longest
    finished one, and the latest run's name (what a click opens) and last line."""

    index: int
    runs: int
    succeeded: int
    failed: int
    going: int
    longest_seconds: float | None
    latest_name: str
    latest_status: Status
    latest_last_line: str | None


async def buckets(db: Database, since: datetime, width: timedelta, count: int) -> list[Bucket]:
    """The non-empty buckets of ``count`` buckets of ``width`` from ``since``, in order."""
    until = since + width * count
    rows = await db.read(
        "SELECT b, count(*) AS runs, sum(status = ?) AS succeeded, sum(status = ?) AS failed, "
        "sum(status IN (?, ?)) AS going, "
        "max(CASE WHEN status IN (?, ?) "
        "THEN (julianday(updated_at) - julianday(created_at)) * 86400 END) AS longest, "
        "max(created_at || ' ' || printf('%020d', id)) AS newest "
        "FROM (SELECT CAST((julianday(created_at) - julianday(?)) * 86400 / ? AS INTEGER) AS b, "
        "status, created_at, updated_at, id FROM job_logs "
        "WHERE created_at >= ? AND created_at < ?) GROUP BY b ORDER BY b",
        (
            int(Status.success),
            int(Status.error),
            int(Status.pending),
            int(Status.processing),
            int(Status.success),
            int(Status.error),
            to_db_bound(since),
            width.total_seconds(),
            to_db_bound(since),
            to_db_bound(until),
        ),
    )
    ids = [int(row["newest"].rsplit(" ", 1)[1]) for row in rows]
    latest = {}
    if ids:
        marks = ", ".join("?" * len(ids))
        # Each latest run's last line, from the end of its run in the job_log_id index.
        found = await db.read(
            "SELECT id, name, status, (SELECT message FROM job_log_details AS d "
            "WHERE d.job_log_id = job_logs.id ORDER BY d.id DESC LIMIT 1) AS last_line "
            f"FROM job_logs WHERE id IN ({marks})",
            ids,
        )
        latest = {
            row["id"]: (row["name"], Status(row["status"]), row["last_line"]) for row in found
        }
    out = []
    for row, newest in zip(rows, ids, strict=True):
        name, status, last_line = latest.get(newest, ("", Status.pending, None))
        index = min(max(int(row["b"]), 0), count - 1)
        longest = row["longest"]
        out.append(
            Bucket(
                index=index,
                runs=row["runs"],
                succeeded=row["succeeded"],
                failed=row["failed"],
                going=row["going"],
                longest_seconds=None if longest is None else max(0.0, round(float(longest), 3)),
                latest_name=name,
                latest_status=status,
                latest_last_line=last_line,
            )
        )
    return out
