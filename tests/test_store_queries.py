"""Listing, filtering, paging, counting and finding job logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from service.store import (
    Database,
    JobLogQuery,
    NotFound,
    count_by_status,
    create_job_log,
    job_log_with_details,
    latest_job_log,
    list_job_logs,
    set_status,
)
from service.wire import JobLog, Status
from tests.support.clock import FakeClock


async def _history(db: Database, clock: FakeClock, statuses: list[Status]) -> list[JobLog]:
    """One log per status, five minutes apart, oldest first."""
    logs = []
    for status in statuses:
        log = await create_job_log(db)
        if status is not Status.pending:
            if status is not Status.error:
                log = await set_status(db, log.id, Status.processing)
            if status is not Status.processing:
                log = await set_status(db, log.id, status)
        logs.append(log)
        clock.advance(300)
    return logs


async def test_most_recent_first(db: Database, clock: FakeClock) -> None:
    logs = await _history(db, clock, [Status.success] * 5)
    page = await list_job_logs(db, JobLogQuery())
    assert [log.id for log in page.items] == [log.id for log in reversed(logs)]
    assert page.total == 5
    assert (page.page, page.per_page) == (1, 25)


async def test_same_second_ties_break_by_id(db: Database) -> None:
    logs = [await create_job_log(db) for _ in range(3)]
    page = await list_job_logs(db, JobLogQuery())
    assert [log.name for log in page.items] == [log.name for log in reversed(logs)]


async def test_filter_by_status(db: Database, clock: FakeClock) -> None:
    await _history(
        db, clock, [Status.success, Status.error, Status.success, Status.processing, Status.error]
    )
    for status, expected in (
        (Status.success, 2),
        (Status.error, 2),
        (Status.processing, 1),
        (Status.pending, 0),
    ):
        page = await list_job_logs(db, JobLogQuery(status=status))
        assert page.total == expected
        assert {log.status for log in page.items} <= {status}
        assert len(page.items) == expected


async def test_created_at_range_is_since_inclusive_until_exclusive(
    db: Database, clock: FakeClock
) -> None:
    logs = await _history(db, clock, [Status.success] * 4)
    second, third = logs[1].created_at, logs[2].created_at
    page = await list_job_logs(db, JobLogQuery(since=second, until=third))
    assert [log.id for log in page.items] == [logs[1].id]
    page = await list_job_logs(db, JobLogQuery(since=second))
    assert [log.id for log in page.items] == [logs[3].id, logs[2].id, logs[1].id]
    page = await list_job_logs(db, JobLogQuery(until=second + timedelta(microseconds=1)))
    assert [log.id for log in page.items] == [logs[1].id, logs[0].id]


async def test_range_bounds_in_other_offsets_and_naive_mean_utc(
    db: Database, clock: FakeClock
) -> None:
    logs = await _history(db, clock, [Status.success] * 2)
    berlin = logs[1].created_at.astimezone(timezone(timedelta(hours=1)))
    assert berlin.hour != logs[1].created_at.hour
    naive = logs[1].created_at.replace(tzinfo=None)
    for since in (berlin, naive):
        page = await list_job_logs(db, JobLogQuery(since=since))
        assert [log.id for log in page.items] == [logs[1].id]


async def test_pagination_edges(db: Database, clock: FakeClock) -> None:
    logs = await _history(db, clock, [Status.success] * 7)
    newest_first = [log.id for log in reversed(logs)]
    pages = [await list_job_logs(db, JobLogQuery(page=n, per_page=3)) for n in (1, 2, 3)]
    assert [[log.id for log in p.items] for p in pages] == [
        newest_first[0:3],
        newest_first[3:6],
        newest_first[6:7],
    ]
    past_the_end = await list_job_logs(db, JobLogQuery(page=4, per_page=3))
    assert past_the_end.items == []
    assert past_the_end.total == 7
    far_past = await list_job_logs(db, JobLogQuery(page=10**9, per_page=100))
    assert far_past.items == []
    one_each = await list_job_logs(db, JobLogQuery(page=7, per_page=1))
    assert [log.id for log in one_each.items] == [logs[0].id]
    everything = await list_job_logs(db, JobLogQuery(per_page=100))
    assert len(everything.items) == 7


async def test_empty_history(db: Database) -> None:
    page = await list_job_logs(db, JobLogQuery())
    assert (page.items, page.total) == ([], 0)
    assert await latest_job_log(db) is None
    counts = await count_by_status(db)
    assert counts.model_dump() == {
        "total": 0,
        "pending": 0,
        "processing": 0,
        "error": 0,
        "success": 0,
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("page", 0),
        ("page", -1),
        ("page", 10**9 + 1),
        ("per_page", 0),
        ("per_page", 101),
        ("per_page", 1000),
        ("status", 7),
        ("status", "finished"),
        ("since", "yesterday"),
    ],
)
def test_invalid_queries_name_their_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        JobLogQuery.model_validate({field: value})
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


def test_since_after_until_is_refused() -> None:
    later = datetime(2025, 12, 15, tzinfo=UTC)
    with pytest.raises(ValidationError, match="since must not be later than until"):
        JobLogQuery(since=later, until=later - timedelta(days=1))


async def test_counts_per_status(db: Database, clock: FakeClock) -> None:
    await _history(
        db,
        clock,
        [Status.success, Status.success, Status.error, Status.processing, Status.pending],
    )
    counts = await count_by_status(db)
    assert counts.model_dump() == {
        "total": 5,
        "pending": 1,
        "processing": 1,
        "error": 1,
        "success": 2,
    }


async def test_latest(db: Database, clock: FakeClock) -> None:
    logs = await _history(db, clock, [Status.success, Status.error, Status.processing])
    latest = await latest_job_log(db)
    assert latest == logs[-1]


async def test_find_by_id_and_name(db: Database, clock: FakeClock) -> None:
    logs = await _history(db, clock, [Status.success, Status.error])
    assert (await job_log_with_details(db, logs[0].id)).name == logs[0].name
    assert (await job_log_with_details(db, logs[1].name)).id == logs[1].id


@pytest.mark.parametrize(
    "name", ["20251215143022", "2025121514302", "20251215143022_", "x", "20251215143022\n"]
)
async def test_unknown_or_malformed_names_are_not_found(db: Database, name: str) -> None:
    with pytest.raises(NotFound):
        await job_log_with_details(db, name)


async def test_unknown_id_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound, match="job log 12 does not exist"):
        await job_log_with_details(db, 12)
