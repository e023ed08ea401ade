"""The store's contract (service/store/contract.py), one suite against both backends: SQLite and
a real PostgreSQL 15. Every answer, refusal and timestamp must be the same."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from service.store import (
    MAX_MESSAGE_LENGTH,
    Bucket,
    Database,
    DatabaseUnavailable,
    InvalidMessage,
    InvalidTransition,
    JobLogQuery,
    JobLogStore,
    LastError,
    NotFound,
    SqliteStore,
)
from service.store.postgres import PgDatabase, PostgresStore
from service.wire import JobLog, JobLogWithDetails, Status
from tests.support.clock import FakeClock
from tests.support.life_cycle import STEPS_TO
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.integration

_names = itertools.count(1)


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


# --- the reads of the pages, the API and the event stream ----------------------------------

# Lines whose JSON needs every escape: quotes, backslashes, control characters, and text that
# goes out as it is.
MESSAGES = [
    "Job started - SyncOpenOrdersJob",
    'Quotes " and \\ backslashes, a / slash, {"id":7,"name":"x"}',
    "Tabs\tand\nnew lines\r\n, \b\f \x01 \x1f \x7f \x85 controls",
    "WARNING: Löschsperre — 日本語 😀 \u2028 </script>",
]


async def _run(
    store: JobLogStore,
    clock: FakeClock,
    status: Status,
    messages: list[str] | tuple[str, ...] = (),
    took: timedelta = timedelta(0),
) -> JobLog:
    """A new run with ``messages`` as its lines, brought to ``status`` ``took`` after it was
    created (where the clock is left); the run as it ends."""
    log = await store.create_job_log()
    for message in messages:
        await store.add_detail(log.id, message)
    for step in STEPS_TO[status]:
        clock.now = log.created_at + took
        log = await store.set_status(log.id, step)
    return log


async def _with_details(store: JobLogStore, ref: str | int) -> str:
    """A run and its lines as the JSON of their models (lines by id)."""
    log = await store.job_log(ref)
    details = [d async for page in store.iter_details(log.id, page=2) for d in page]
    fields = log.model_dump(exclude={"duration_seconds"})
    return JobLogWithDetails(**fields, details=details).model_dump_json()


async def test_an_empty_store_answers_with_nothing(store: JobLogStore) -> None:
    assert await store.latest_job_log() is None
    assert await store.latest_with_details_json() is None
    assert await store.first_run_at() is None
    assert await store.last_success_at() is None
    assert await store.last_error() is None
    assert await store.open_job_logs() == []
    assert await store.previous_finished_status(1) is None
    assert await store.high_water_marks() == (0, 0)
    assert await store.logs_with_details_after(0) == []
    assert await store.changes_since(0, 0, [1, 2], 10) == ([], [])
    assert await store.last_detail_id(1) == 0
    assert await store.last_details(1, 5) == []
    assert [page async for page in store.iter_details(1)] == []
    assert (await store.detail_page_json(1, after=0, limit=5)).text() == (
        '{"items":[],"next_after":null}'
    )
    for query in (JobLogQuery(), JobLogQuery(q="failed", status=Status.error)):
        assert await store.list_job_logs_json(query) == (
            '{"items":[],"page":1,"per_page":25,"total":0,"total_is_lower_bound":false}'
        )
    since = datetime(2025, 12, 15, tzinfo=UTC)
    assert await store.buckets(since, timedelta(hours=1), 24) == []
    for ref in (1, "1", "20251215153022", "nope"):
        with pytest.raises(NotFound):
            await store.job_log_with_details_json(ref)
        with pytest.raises(NotFound):
            await store.neighbours(ref)


async def test_a_run_and_its_lines_as_json_are_their_models_json(
    store: JobLogStore, clock: FakeClock
) -> None:
    logs = [
        await _run(store, clock, Status.success, MESSAGES, timedelta(seconds=2, microseconds=500)),
        await _run(store, clock, Status.error, MESSAGES[:1], timedelta(microseconds=123_456)),
        await _run(store, clock, Status.processing, MESSAGES[1:], timedelta(seconds=1)),
        await _run(store, clock, Status.pending),
    ]
    for log in logs:
        expected = await _with_details(store, log.id)
        assert await store.job_log_with_details_json(log.id) == expected
        assert await store.job_log_with_details_json(log.name) == expected
        assert await store.job_log_with_details_json(str(log.id)) == expected
    first = await store.job_log_with_details_json(logs[0].id)
    assert first.endswith('"}],"duration_seconds":2.0005}')
    assert "\\u0001 \\u001f \x7f \x85 controls" in first
    assert '"duration_seconds":null}' in await store.job_log_with_details_json(logs[2].id)
    assert await store.latest_with_details_json() == await _with_details(store, logs[-1].id)


async def test_lines_come_by_time_then_id_and_the_latest_run_by_time_then_id(
    store: JobLogStore, clock: FakeClock
) -> None:
    first = await store.create_job_log()
    clock.advance(-10)
    earlier = await store.create_job_log()  # a higher id, created before the first
    assert await store.latest_job_log() == first
    assert await store.first_run_at() == earlier.created_at
    latest = await store.latest_with_details_json()
    assert latest is not None
    assert json.loads(latest)["id"] == first.id
    clock.advance(10)
    twin = await store.create_job_log()  # the first's time: the higher id is the latest
    assert await store.latest_job_log() == twin
    a = await store.add_detail(first.id, "a")
    clock.advance(-1)
    b = await store.add_detail(first.id, "b")
    c = await store.add_detail(first.id, "c")
    whole = json.loads(await store.job_log_with_details_json(first.id))
    assert [d["id"] for d in whole["details"]] == [b.id, c.id, a.id]
    # A page of lines follows ids, as the event stream does.
    page = await store.detail_page(first.id, after=0, limit=10)
    assert [d.id for d in page.items] == [a.id, b.id, c.id]


async def test_pages_of_runs_and_of_lines_as_json_are_their_models_json(
    store: JobLogStore, clock: FakeClock
) -> None:
    statuses = [Status.success, Status.error, Status.processing]
    for n in range(12):
        clock.advance(61)
        lines = [f"Batch {n} imported", "ERROR: Login failed" if n % 4 == 0 else "done"]
        await _run(store, clock, statuses[n % 3], lines, timedelta(milliseconds=1500 + n))
    since = clock.now - timedelta(minutes=8)
    queries = [
        JobLogQuery(),
        JobLogQuery(per_page=5, page=2),
        JobLogQuery(page=9),
        JobLogQuery(status=Status.error),
        JobLogQuery(q="login FAILED"),
        JobLogQuery(q="login failed", status=Status.success, per_page=2),
        JobLogQuery(q="nowhere"),
        JobLogQuery(since=since, until=clock.now),
    ]
    for query in queries:
        expected = (await store.list_job_logs(query)).model_dump_json()
        assert await store.list_job_logs_json(query) == expected
    log = await _run(store, clock, Status.success, MESSAGES * 2, timedelta(seconds=4))
    ids = [d.id for d in (await store.detail_page(log.id, after=0, limit=100)).items]
    pages: list[tuple[int, int, str | None]] = [(0, 3, None), (ids[2], 3, None), (ids[5], 5, None)]
    pages += [(0, 100, None), (ids[-1], 5, None)]
    pages += [(0, 1, "LÖSCHSPERRE"), (0, 1, "löschsperre"), (0, 5, "nowhere")]
    for after, limit, q in pages:
        page = await store.detail_page_json(log.id, after=after, limit=limit, q=q)
        model = await store.detail_page(log.id, after=after, limit=limit, q=q)
        assert page.text() == model.model_dump_json()
        assert page.next_after == model.next_after
    found = await store.detail_page_json(log.id, after=0, limit=1, q="löschsperre")
    assert found.next_after == ids[3]
    assert json.loads(found.items)[0]["message"] == MESSAGES[3]


async def test_a_runs_lines_are_read_whole_in_pages_and_from_the_end(store: JobLogStore) -> None:
    log, other, empty = [await store.create_job_log() for _ in range(3)]
    lines = []
    for n in range(7):
        lines.append(await store.add_detail(log.id, f"line {n}"))
        await store.add_detail(other.id, f"other {n}")
    pages = [page async for page in store.iter_details(log.id, page=3)]
    assert pages == [lines[:3], lines[3:6], lines[6:]]
    assert [page async for page in store.iter_details(log.id, page=7)] == [lines]
    assert [page async for page in store.iter_details(empty.id)] == []
    assert await store.last_details(log.id, 3) == lines[4:]
    assert await store.last_details(log.id, 100) == lines
    assert await store.last_details(log.id, 0) == []
    assert await store.last_detail_id(log.id) == lines[-1].id
    assert await store.last_detail_id(empty.id) == 0


async def test_the_latest_success_and_error_are_of_the_runs_created_last(
    store: JobLogStore, clock: FakeClock
) -> None:
    start = clock.now
    long_ok = await _run(store, clock, Status.success, [], timedelta(hours=2))
    clock.now = start + timedelta(minutes=5)
    ok = await _run(store, clock, Status.success, [], timedelta(minutes=1))
    # The run created last counts, though the other ended later.
    assert await store.last_success_at() == ok.updated_at
    clock.now = ok.created_at
    tie = await _run(store, clock, Status.success, [], timedelta(seconds=30))
    assert await store.last_success_at() == tie.updated_at
    clock.now = start + timedelta(minutes=10)
    trace = "ERROR: Fetch failed - [HYT00] Query timeout\nTraceback (most recent call last):"
    failed = await _run(store, clock, Status.error, ["Job started", trace], timedelta(seconds=3))
    clock.now = start + timedelta(minutes=9)
    await _run(store, clock, Status.error, ["ERROR: an older run, a higher id"])
    clock.now = start + timedelta(minutes=20)
    await _run(store, clock, Status.processing, ["Job started"])
    assert await store.last_error() == LastError(
        failed, "ERROR: Fetch failed - [HYT00] Query timeout"
    )
    assert await store.last_success_at() == tie.updated_at
    bare = await _run(store, clock, Status.error)
    assert await store.last_error() == LastError(bare, "")
    assert await store.first_run_at() == long_ok.created_at
    clock.now = start - timedelta(days=1, microseconds=1)
    oldest = await store.create_job_log()
    assert await store.first_run_at() == oldest.created_at


async def test_the_previous_finished_run_and_the_open_runs_go_by_id(store: JobLogStore) -> None:
    ok = await at_status(store, Status.success)
    pending = await at_status(store, Status.pending)
    failed = await at_status(store, Status.error)
    processing = await at_status(store, Status.processing)
    assert await store.previous_finished_status(ok) is None
    assert await store.previous_finished_status(pending) is Status.success
    assert await store.previous_finished_status(failed) is Status.success
    assert await store.previous_finished_status(processing) is Status.error
    assert await store.previous_finished_status(999_999) is Status.error
    assert [log.id for log in await store.open_job_logs()] == [pending, processing]


async def test_neighbours_follow_the_lists_order(store: JobLogStore, clock: FakeClock) -> None:
    a = await store.create_job_log()
    b = await store.create_job_log()  # a's second: after a, by id
    clock.advance(-60)
    c = await store.create_job_log()  # before both, though its id is higher
    clock.advance(120)
    d = await store.create_job_log()
    assert await store.neighbours(c.id) == (None, a)
    assert await store.neighbours(a.name) == (c, b)
    assert await store.neighbours(str(b.id)) == (a, d)
    assert await store.neighbours(d.name) == (b, None)
    for missing in (999_999, "20991231235959", "nope", "0"):
        with pytest.raises(NotFound):
            await store.neighbours(missing)


async def test_buckets_count_the_runs_each_started_and_name_its_latest(
    store: JobLogStore, clock: FakeClock
) -> None:
    since = datetime(2025, 12, 15, 14, 0, tzinfo=UTC)
    width = timedelta(minutes=10)
    clock.now = since
    await _run(store, clock, Status.success, ["Batch 1/1 imported"], timedelta(seconds=2.5))
    clock.now = since + timedelta(minutes=3)
    await _run(store, clock, Status.error, ["ERROR: Login failed"], timedelta(seconds=1.2))
    clock.now = since + timedelta(minutes=3)
    going = await _run(store, clock, Status.processing, ["Job started"])  # the tie's higher id
    clock.now = since + timedelta(minutes=25)
    late = await _run(store, clock, Status.success, [], timedelta(seconds=90))
    # Outside the window: just before it, and at its end.
    clock.now = since - timedelta(microseconds=1)
    await _run(store, clock, Status.error, ["ERROR: before"])
    clock.now = since + width * 3
    after = await _run(store, clock, Status.error, ["ERROR: after"])
    assert await store.buckets(since, width, 3) == [
        Bucket(0, 3, 1, 1, 1, 2.5, going.name, Status.processing, "Job started"),
        Bucket(2, 1, 1, 0, 0, 90.0, late.name, Status.success, None),
    ]
    assert await store.buckets(since + width * 3, width, 3) == [
        Bucket(0, 1, 0, 1, 0, 0.0, after.name, Status.error, "ERROR: after")
    ]


async def test_the_event_stream_reads_what_was_committed_after_its_cursors(
    store: JobLogStore,
) -> None:
    first, second, third = [await store.create_job_log() for _ in range(3)]
    lines = [
        await store.add_detail(log.id, f"{log.name} line {n}")
        for n in range(2)
        for log in (first, second)
    ]
    assert await store.high_water_marks() == (third.id, lines[-1].id)
    assert await store.logs_with_details_after(0) == [first, second]
    assert await store.logs_with_details_after(lines[2].id) == [second]
    assert await store.logs_with_details_after(lines[-1].id) == []
    moved = await store.set_status(first.id, Status.processing)
    logs, details = await store.changes_since(second.id, lines[0].id, [first.id], 2)
    assert logs == [moved, third]
    assert details == await store.details_after(lines[0].id, limit=2)
    assert [(d.id, d.job_log_name) for d in details] == [
        (lines[1].id, second.name),
        (lines[2].id, first.name),
    ]
    assert await store.changes_since(third.id, lines[-1].id, [], 10) == ([], [])
    logs, details = await store.changes_since(third.id, 0, [second.id, second.id, 999_999], 0)
    assert (logs, details) == ([second], [])


# --- the same rows, the same bytes on both backends ------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
Write = Callable[[JobLogStore], Awaitable[tuple[list[int], list[int]]]]


@pytest.fixture
async def both(
    tmp_path: Path, clock: FakeClock, postgres: PostgresServer
) -> AsyncIterator[tuple[JobLogStore, JobLogStore]]:
    """The contract on SQLite and on PostgreSQL side by side, on one clock."""
    sqlite = await Database.open(tmp_path / "joblog.sqlite3", clock=clock, zone=BERLIN)
    try:
        url = postgres.store_database(f"contract_{next(_names)}")
        pg = await PgDatabase.open(url, clock=clock, zone=BERLIN)
        try:
            yield SqliteStore(sqlite), PostgresStore(pg)
        finally:
            await pg.close()
    finally:
        await sqlite.close()


class Ids:
    """SQLite's ids of the same runs and lines on PostgreSQL (whose ids leave gaps)."""

    def __init__(
        self, sqlite: tuple[list[int], list[int]], pg: tuple[list[int], list[int]]
    ) -> None:
        self.logs = dict(zip(sqlite[0], pg[0], strict=True))
        self.details = dict(zip(sqlite[1], pg[1], strict=True))

    def on_postgres(self, text: str) -> str:
        """SQLite's JSON with PostgreSQL's ids (in JSON text a quote inside a string is
        escaped, so these patterns match keys only)."""
        text = re.sub(
            r'\{"id":(\d+),"job_log_id":(\d+),',
            lambda m: f'{{"id":{self.details[int(m[1])]},"job_log_id":{self.logs[int(m[2])]},',
            text,
        )
        text = re.sub(
            r'\{"id":(\d+),"name":', lambda m: f'{{"id":{self.logs[int(m[1])]},"name":', text
        )
        return re.sub(
            r'"next_after":(\d+)', lambda m: f'"next_after":{self.details[int(m[1])]}', text
        )


async def _on_both(both: tuple[JobLogStore, JobLogStore], clock: FakeClock, write: Write) -> Ids:
    """``write`` on each backend from the same moment; the ids each gave."""
    start = clock.now
    on_sqlite = await write(both[0])
    clock.now = start
    return Ids(on_sqlite, await write(both[1]))


# Every form SQLite's JSON gives a duration: 0.0, 1.0e-06 … 9.9e-05 below 0.0001 (where a
# model's JSON says 1e-6), decimals up to 15 significant digits.
DURATIONS = [
    timedelta(0),
    timedelta(microseconds=1),
    timedelta(microseconds=9),
    timedelta(microseconds=10),
    timedelta(microseconds=15),
    timedelta(microseconds=99),
    timedelta(microseconds=100),
    timedelta(microseconds=-1),
    timedelta(microseconds=-15),
    timedelta(seconds=-1.5),
    timedelta(microseconds=123_456),
    timedelta(seconds=2),
    timedelta(days=1, microseconds=1),
    timedelta(days=4000, seconds=1.25),
]


async def test_both_backends_write_a_run_and_pages_as_the_same_json(
    both: tuple[JobLogStore, JobLogStore], clock: FakeClock
) -> None:
    async def write(store: JobLogStore) -> tuple[list[int], list[int]]:
        logs, details = [], []
        for n, took in enumerate(DURATIONS):
            log = await store.create_job_log()
            logs.append(log.id)
            for message in MESSAGES[n % 4 :]:
                details.append((await store.add_detail(log.id, message)).id)
            await store.set_status(log.id, Status.processing)
            clock.now = log.created_at + took
            await store.set_status(log.id, Status.success if n % 2 else Status.error)
            clock.now = log.created_at + timedelta(seconds=61)
        for status in (Status.processing, Status.pending):
            logs.append(await at_status(store, status))
            details.append((await store.add_detail(logs[-1], MESSAGES[2])).id)
        return logs, details

    ids = await _on_both(both, clock, write)
    sqlite, pg = both
    for log_id, pg_id in ids.logs.items():
        text = await sqlite.job_log_with_details_json(log_id)
        assert await pg.job_log_with_details_json(pg_id) == ids.on_postgres(text)
        for after, limit, q in [(0, 2, None), (0, 10, None), (0, 1, "löschsperre"), (0, 3, "\\")]:
            page = await sqlite.detail_page_json(log_id, after=after, limit=limit, q=q)
            pg_page = await pg.detail_page_json(pg_id, after=after, limit=limit, q=q)
            assert pg_page.text() == ids.on_postgres(page.text())
    latest = await sqlite.latest_with_details_json()
    assert latest is not None
    assert await pg.latest_with_details_json() == ids.on_postgres(latest)
    for query in [
        JobLogQuery(per_page=100),
        JobLogQuery(per_page=3, page=2),
        JobLogQuery(status=Status.success),
        JobLogQuery(q="LÖSCHSPERRE"),
        JobLogQuery(q="job STARTED", per_page=4),
    ]:
        text = await sqlite.list_job_logs_json(query)
        assert await pg.list_job_logs_json(query) == ids.on_postgres(text)
    everything = await pg.list_job_logs_json(JobLogQuery(per_page=100))
    for form in (
        "0.0",
        "1.0e-06",
        "9.0e-06",
        "1.0e-05",
        "1.5e-05",
        "9.9e-05",
        "0.0001",
        "-1.0e-06",
    ):
        assert f'"duration_seconds":{form}}}' in everything
    for form in ("-1.5e-05", "-1.5", "0.123456", "2.0", "86400.000001", "345600001.25"):
        assert f'"duration_seconds":{form}}}' in everything


async def test_both_backends_put_runs_in_the_same_buckets(
    both: tuple[JobLogStore, JobLogStore], clock: FakeClock
) -> None:
    origin = datetime(2025, 12, 15, 13, 0, 0, 236_000, tzinfo=UTC)
    widths = [
        timedelta(hours=1),
        timedelta(seconds=12.5),
        timedelta(seconds=37),
        timedelta(milliseconds=250),
        timedelta(days=30) / 500,
    ]
    # On an edge, a microsecond either side, and either side of SQLite's half millisecond.
    offsets = [timedelta(microseconds=us) for us in (0, 1, -1, 499, 500, -500, 999_500)]
    created: list[datetime] = []

    async def write(store: JobLogStore) -> tuple[list[int], list[int]]:
        logs: list[int] = []
        for n, (width, k, offset) in enumerate(itertools.product(widths, (1, 2, 7, 40), offsets)):
            clock.now = origin + width * k + offset
            status = [Status.success, Status.error, Status.processing][n % 3]
            took = timedelta(seconds=n % 5, microseconds=250 * n)
            log = await _run(store, clock, status, [f"Batch {n}"] if n % 2 else [], took)
            logs.append(log.id)
            if store is both[0]:
                created.append(log.created_at)
        return logs, []

    await _on_both(both, clock, write)
    sqlite, pg = both
    exact_differs = False
    for width in widths:
        for since in (origin, origin + timedelta(microseconds=123), origin + width / 3):
            count = 60
            expected = await sqlite.buckets(since, width, count)
            assert expected, "no run in the window"
            assert await pg.buckets(since, width, count) == expected
            # SQLite's milliseconds and doubles, not an exact division: a run on an edge
            # may count in the bucket before (the test's runs do reach the edges).
            exact: dict[int, int] = {}
            for at in created:
                if since <= at < since + width * count:
                    exact[(at - since) // width] = exact.get((at - since) // width, 0) + 1
            exact_differs |= exact != {b.index: b.runs for b in expected}
    assert exact_differs


async def test_searches_say_their_index_is_ready_in_a_new_database(store: JobLogStore) -> None:
    assert await store.search_progress() is None
