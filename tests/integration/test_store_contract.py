"""The store's contract (service/store/contract.py), one suite against both backends: SQLite and
a real PostgreSQL 15. Every answer, refusal and timestamp must be the same."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from service.store import (
    MAX_MESSAGE_LENGTH,
    Database,
    DatabaseUnavailable,
    InvalidMessage,
    InvalidTransition,
    JobLogQuery,
    JobLogStore,
    NotFound,
    SqliteStore,
)
from service.store.postgres import PgDatabase, PostgresStore
from service.wire import Status
from tests.support.clock import FakeClock
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.integration

_names = itertools.count(1)
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[JobLogStore]:
    """The contract on one backend; the runs are named in Europe/Berlin."""
    if request.param == "sqlite":
        db = await Database.open(tmp_path / "joblog.sqlite3", clock=clock, zone=BERLIN)
        try:
            yield SqliteStore(db)
        finally:
            await db.close()
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    url = postgres.store_database(f"contract_{next(_names)}")
    pg = await PgDatabase.open(url, clock=clock, zone=BERLIN)
    try:
        yield PostgresStore(pg)
    finally:
        await pg.close()


async def test_runs_are_named_after_their_second_with_a_suffix_on_collision(
    store: JobLogStore, clock: FakeClock
) -> None:
    # 14:30:22.25 UTC is 15:30:22 in Berlin.
    names = [(await store.create_job_log()).name for _ in range(3)]
    assert names == ["20251215153022", "20251215153022_1", "20251215153022_2"]
    clock.advance(1)
    log = await store.create_job_log()
    assert log.name == "20251215153023"
    assert log.status is Status.pending
    assert log.created_at == log.updated_at == clock()
    assert log.duration_seconds is None


async def test_concurrent_creators_get_distinct_names(store: JobLogStore) -> None:
    logs = await asyncio.gather(*(store.create_job_log() for _ in range(20)))
    names = sorted(log.name for log in logs)
    assert names == sorted(["20251215153022"] + [f"20251215153022_{n}" for n in range(1, 20)])
    assert len({log.id for log in logs}) == 20


ALLOWED = {
    (Status.pending, Status.processing),
    (Status.pending, Status.error),
    (Status.processing, Status.success),
    (Status.processing, Status.error),
}


async def at_status(store: JobLogStore, status: Status) -> int:
    """A new run brought to ``status`` through allowed steps; its id."""
    log = await store.create_job_log()
    path = {
        Status.pending: [],
        Status.processing: [Status.processing],
        Status.error: [Status.error],
        Status.success: [Status.processing, Status.success],
    }[status]
    for step in path:
        await store.set_status(log.id, step)
    return log.id


async def test_the_life_cycle_allows_four_moves_and_refuses_the_rest(
    store: JobLogStore, clock: FakeClock
) -> None:
    for start in Status:
        for goal in Status:
            log_id = await at_status(store, start)
            clock.advance(0.5)
            if (start, goal) in ALLOWED:
                moved = await store.set_status(log_id, goal)
                assert moved.status is goal
                assert moved.updated_at == clock()
            else:
                with pytest.raises(InvalidTransition, match=f"from {start.name} to {goal.name}"):
                    await store.set_status(log_id, goal)
                assert (await store.job_log(log_id)).status is start
    with pytest.raises(NotFound):
        await store.set_status(999_999, Status.processing)


async def test_lines_are_kept_as_written_within_the_limits(
    store: JobLogStore, clock: FakeClock
) -> None:
    log = await store.create_job_log()
    clock.advance(0.000001)
    first = await store.add_detail(log.id, "Job started - SyncOpenOrdersJob")
    assert (first.message, first.created_at) == ("Job started - SyncOpenOrdersJob", clock())
    long = await store.add_detail(log.id, "x" * 6000)
    assert len(long.message) == MAX_MESSAGE_LENGTH
    assert long.message.endswith("… [truncated from 6,000 characters]")
    odd = await store.add_detail(log.id, "Löschsperre \ud800 — 日本語")
    assert odd.message == "Löschsperre \ufffd — 日本語"
    for blank in ("", "   \n"):
        with pytest.raises(InvalidMessage):
            await store.add_detail(log.id, blank)
    with pytest.raises(NotFound):
        await store.add_detail(999_999, "nobody's")
    read = await store.details_after(0, limit=10)
    assert [d.id for d in read] == [first.id, long.id, odd.id]
    assert [d.message for d in read] == [first.message, long.message, odd.message]
    assert {d.job_log_name for d in read} == {log.name}


async def test_a_run_fails_once_with_its_error_line(store: JobLogStore, clock: FakeClock) -> None:
    log_id = await at_status(store, Status.processing)
    clock.advance(2)
    failed = await store.fail_job_log(log_id, "ERROR: Fetch failed - [HYT00] Query timeout")
    assert failed is not None
    log, line = failed
    assert (log.status, log.updated_at, log.duration_seconds) == (Status.error, clock(), 2.0)
    assert line.message == "ERROR: Fetch failed - [HYT00] Query timeout"
    # A second end (a cancel racing the run's own) writes nothing.
    assert await store.fail_job_log(log_id, "ERROR: Interrupted") is None
    assert [d.message for d in await store.details_after(0, limit=10)] == [line.message]
    with pytest.raises(NotFound):
        await store.fail_job_log(999_999, "ERROR: nobody's")


async def test_runs_left_open_are_closed_and_ended_ones_kept(store: JobLogStore) -> None:
    pending = await at_status(store, Status.pending)
    processing = await at_status(store, Status.processing)
    succeeded = await at_status(store, Status.success)
    closed = await store.close_unfinished("ERROR: Interrupted - service restarted")
    assert sorted(log.id for log in closed) == [pending, processing]
    assert all(log.status is Status.error for log in closed)
    assert (await store.job_log(succeeded)).status is Status.success
    lines = await store.details_after(0, limit=10)
    assert sorted(d.job_log_id for d in lines) == [pending, processing]
    assert await store.close_unfinished("ERROR: again") == []


async def test_runs_are_read_by_id_or_name_and_lines_followed_by_id(store: JobLogStore) -> None:
    first, second = await store.create_job_log(), await store.create_job_log()
    assert await store.job_log(first.id) == first
    assert await store.job_log(str(first.id)) == first
    assert await store.job_log(second.name) == second
    for missing in (999_999, "20991231235959", "nope", "-1", "0"):
        with pytest.raises(NotFound):
            await store.job_log(missing)
    lines = [
        await store.add_detail(log.id, f"line {n}") for n in range(3) for log in (first, second)
    ]
    ids = [line.id for line in lines]
    assert ids == sorted(ids)
    assert [d.id for d in await store.details_after(ids[1], limit=3)] == ids[2:5]
    mine = await store.details_after(0, limit=10, job_log_id=second.id)
    assert [d.message for d in mine] == ["line 0", "line 1", "line 2"]
    assert {d.job_log_name for d in mine} == {second.name}
    assert await store.details_after(ids[-1], limit=10) == []


async def test_timestamps_keep_their_microseconds(store: JobLogStore, clock: FakeClock) -> None:
    clock.now = datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC)
    log = await store.create_job_log()
    # 01:59:59 in Berlin, the last second before the clocks go forward.
    assert log.name == "20260329015959"
    clock.advance(0.000002)
    moved = await store.set_status(log.id, Status.processing)
    assert moved.updated_at - log.created_at == timedelta(microseconds=2)
    assert (await store.job_log(log.id)).updated_at == moved.updated_at


async def test_a_postgresql_database_that_cannot_be_opened_is_named_without_its_password(
    postgres: PostgresServer,
) -> None:
    url = postgres.store_database(f"contract_{next(_names)}")
    secret = "Wr0ng-S3cret pass"
    wrong = url.replace(url.split(":")[2].split("@")[0], "Wr0ng-S3cret%20pass")
    with pytest.raises(DatabaseUnavailable) as refused:
        await PgDatabase.open(wrong, connect_seconds=5)
    assert "password authentication failed" in str(refused.value)
    assert secret not in str(refused.value)
    assert "S3cret" not in str(refused.value)
    # A URL the driver cannot even parse: neither the URL nor its password is quoted back.
    bad = "postgresql://joblog:Wr0ng-S3cret%20pass@127.0.0.1:1/x?sslmode=sometimes"
    with pytest.raises(DatabaseUnavailable) as unparsed:
        await PgDatabase.open(bad, connect_seconds=2)
    assert "S3cret" not in str(unparsed.value)
    assert "sslmode" in str(unparsed.value)


async def test_pages_of_runs_newest_first_with_exact_totals(
    store: JobLogStore, clock: FakeClock
) -> None:
    ids = []
    for n in range(30):
        # Every third run shares its second with the one before (created_at ties: by id).
        if n % 3:
            clock.advance(60)
        log = await store.create_job_log()
        ids.append(log.id)
        if n % 4 == 0:
            await store.set_status(log.id, Status.error)
    newest_first = [
        log.id
        for log in sorted(
            [await store.job_log(i) for i in ids], key=lambda x: (x.created_at, x.id), reverse=True
        )
    ]
    first = await store.list_job_logs(JobLogQuery(per_page=10))
    assert [log.id for log in first.items] == newest_first[:10]
    assert (first.total, first.total_is_lower_bound) == (30, False)
    third = await store.list_job_logs(JobLogQuery(page=3, per_page=10))
    assert [log.id for log in third.items] == newest_first[20:]
    assert (await store.list_job_logs(JobLogQuery(page=4, per_page=10))).items == []
    errors = await store.list_job_logs(JobLogQuery(status=Status.error, per_page=100))
    assert errors.total == 8
    assert [log.id for log in errors.items] == [i for i in newest_first if ids.index(i) % 4 == 0]
    since = (await store.job_log(ids[10])).created_at
    until = (await store.job_log(ids[20])).created_at
    ranged = await store.list_job_logs(JobLogQuery(since=since, until=until, per_page=100))
    expected = [i for i in newest_first if since <= (await store.job_log(i)).created_at < until]
    assert [log.id for log in ranged.items] == expected
    assert ranged.total == len(expected)
    counts = await store.count_by_status()
    assert (counts.total, counts.pending, counts.error) == (30, 22, 8)


async def test_a_search_matches_ascii_letters_in_any_case_and_nothing_else(
    store: JobLogStore, clock: FakeClock
) -> None:
    texts = {
        "a": "ERROR: Connection failed - [28000] Login failed for user 'sync'",
        "b": "error: connection failed - [28000] LOGIN FAILED for user 'sync'",
        "c": "WARNING: Löschsperre on order 7",
        "d": "WARNING: LÖSCHSPERRE on order 8",
        "e": "Batch 1/1 imported (100% of 500 records)",
        "f": "Batch 1/1 imported (1000 of 500_records)",
    }
    runs = {}
    for key, text in texts.items():
        clock.advance(1)
        log = await store.create_job_log()
        await store.add_detail(log.id, "Job started - SyncOpenOrdersJob")
        await store.add_detail(log.id, text)
        runs[key] = log.id

    async def found(q: str) -> list[int]:
        page = await store.list_job_logs(JobLogQuery(q=q, per_page=100))
        assert page.total == len(page.items)
        assert not page.total_is_lower_bound
        return sorted(log.id for log in page.items)

    assert await found("login FAILED") == sorted([runs["a"], runs["b"]])
    # Letters beyond ASCII are matched as written, in both backends.
    assert await found("Löschsperre") == [runs["c"]]
    assert await found("LÖSCHSPERRE") == [runs["d"]]
    # LIKE's wildcards are text.
    assert await found("100%") == [runs["e"]]
    assert await found("500_records") == [runs["f"]]
    assert await found("Job started") == sorted(runs.values())
    assert await found("nowhere at all") == []
    errors = await store.list_job_logs(JobLogQuery(q="failed", status=Status.pending))
    assert errors.total == 2


async def test_a_search_counts_to_a_thousand_then_says_more(
    store: JobLogStore, clock: FakeClock
) -> None:
    for n in range(1_003):
        if n:
            clock.advance(1)
        log = await store.create_job_log()
        await store.add_detail(log.id, f"ERROR: Fetch failed - deadlock victim {n}")
    page = await store.list_job_logs(JobLogQuery(q="deadlock victim", per_page=100, page=11))
    assert (page.total, page.total_is_lower_bound) == (1_000, True)
    # The page itself is exact: the last three runs of 1,003.
    assert [log.name for log in page.items] == [
        "20251215153024",
        "20251215153023",
        "20251215153022",
    ]


async def test_a_runs_lines_come_in_pages_and_can_be_searched(store: JobLogStore) -> None:
    log = await store.create_job_log()
    other = await store.create_job_log()
    lines = [
        await store.add_detail(log.id, f"Batch {n}/7 imported (500 records)") for n in range(7)
    ]
    await store.add_detail(other.id, "Batch 0/1 imported (500 records)")
    await store.add_detail(log.id, "ERROR: Import failed - LOGIN FAILED")
    first = await store.detail_page(log.id, after=0, limit=3)
    assert [d.id for d in first.items] == [d.id for d in lines[:3]]
    assert first.next_after == lines[2].id
    rest = await store.detail_page(log.id, after=lines[5].id, limit=3)
    assert [d.message for d in rest.items] == [
        lines[6].message,
        "ERROR: Import failed - LOGIN FAILED",
    ]
    assert rest.next_after is None
    found = await store.detail_page(log.id, after=0, limit=10, q="login failed")
    assert [d.message for d in found.items] == ["ERROR: Import failed - LOGIN FAILED"]
    some = await store.detail_page(log.id, after=0, limit=2, q="/7 IMPORTED")
    assert [d.id for d in some.items] == [d.id for d in lines[:2]]
    assert some.next_after == lines[1].id
    assert (await store.detail_page(999_999, after=0, limit=5)).items == []
