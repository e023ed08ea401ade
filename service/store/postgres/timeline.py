"""Runs per time bucket over a window on PostgreSQL: the twin of store/timeline.py, same
buckets, same numbers.

SQLite puts a run in its bucket, and measures the longest, with ``julianday``: each timestamp
rounded to the millisecond (half up), as a Julian day in a double, and the differences in
doubles. So does this (:func:`_julian_day`): a run on a bucket's edge, which those doubles
often put in the bucket before, lands where SQLite lands it, and a bucket's longest is the
same to the millisecond. One statement: the buckets, each one's latest run (created_at, then
id) and its last line.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.wire import Status

from ..timeline import Bucket
from .database import PgDatabase
from .writes import stamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The Unix epoch as a Julian day in milliseconds (2440587.5 days).
_EPOCH_JD_MS = 210_866_760_000_000
_DAY_MS = 86_400_000


def _julian_day(moment: datetime) -> float:
    """SQLite's ``julianday()`` of ``moment`` as store/timestamps.py writes it, as SQLite 3.40
    computes it: the seconds a double, times 1000, plus 0.5, truncated to whole milliseconds;
    the Julian day in milliseconds over 86.4e6."""
    minute = moment.replace(second=0, microsecond=0)
    seconds = float(moment.second) + float(moment.microsecond) / 1_000_000.0
    ms = (minute - _EPOCH) // timedelta(milliseconds=1) + int(seconds * 1000.0 + 0.5)
    return (_EPOCH_JD_MS + ms) / _DAY_MS


def _julian_day_sql(column: str) -> str:
    """PostgreSQL's expression for :func:`_julian_day` of a timestamp(6) ``column``: the same
    double operations, so the same double."""
    micros = f"extract(microseconds FROM {column})::bigint"
    seconds = f"(({micros} / 1000000)::float8 + mod({micros}, 1000000)::float8 / 1000000::float8)"
    return (
        f"(((extract(epoch FROM date_trunc('minute', {column})) * 1000)::bigint + {_EPOCH_JD_MS} "
        f"+ trunc({seconds} * 1000::float8 + 0.5::float8)::bigint)::float8 / {_DAY_MS}::float8)"
    )


_STATEMENT = (
    "WITH r AS (SELECT id, name, status, created_at, "
    f"trunc(({_julian_day_sql('created_at')} - %(since_jd)s::float8) * 86400::float8 "
    "/ %(width)s::float8) AS b, "
    f"CASE WHEN status = ANY(%(finished)s) THEN ({_julian_day_sql('updated_at')} "
    f"- {_julian_day_sql('created_at')}) * 86400::float8 END AS took "
    "FROM job_logs WHERE created_at >= %(since)s AND created_at < %(until)s), "
    "g AS (SELECT b, count(*) AS runs, count(*) FILTER (WHERE status = %(success)s) AS succeeded, "
    "count(*) FILTER (WHERE status = %(error)s) AS failed, "
    "count(*) FILTER (WHERE status = ANY(%(going)s)) AS going, max(took) AS longest "
    "FROM r GROUP BY b), "
    "latest AS (SELECT DISTINCT ON (b) b, id, name, status FROM r "
    "ORDER BY b, created_at DESC, id DESC) "
    "SELECT g.*, latest.name, latest.status, (SELECT d.message FROM job_log_details AS d "
    "WHERE d.job_log_id = latest.id ORDER BY d.id DESC LIMIT 1) AS last_line "
    "FROM g JOIN latest USING (b) ORDER BY g.b"
)


async def buckets(db: PgDatabase, since: datetime, width: timedelta, count: int) -> list[Bucket]:
    """The non-empty buckets of ``count`` buckets of ``width`` from ``since``, in order."""
    if since.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    until = since + width * count
    rows = await db.read(
        _STATEMENT,
        {
            "since_jd": _julian_day(since.astimezone(UTC)),
            "width": width.total_seconds(),
            "since": stamp(since),
            "until": stamp(until),
            "success": int(Status.success),
            "error": int(Status.error),
            "going": [int(Status.pending), int(Status.processing)],
            "finished": [int(Status.error), int(Status.success)],
        },
    )
    out = []
    for row in rows:
        longest = row["longest"]
        out.append(
            Bucket(
                index=min(max(int(row["b"]), 0), count - 1),
                runs=row["runs"],
                succeeded=row["succeeded"],
                failed=row["failed"],
                going=row["going"],
                longest_seconds=None if longest is None else max(0.0, round(float(longest), 3)),
                latest_name=row["name"],
                latest_status=Status(row["status"]),
                latest_last_line=row["last_line"],
            )
        )
    return out
