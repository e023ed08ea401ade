"""The store's purge (service/store/contract.py: purgeable_after, purgeable_by_month,
delete_details_through, delete_logs) on both backends, SQLite and a real PostgreSQL: which
runs are due, by month, and deleting them — never a run that is open or changed since it was
read, even while a writer appends to it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.store import JobLogStore, MonthCount, NotFound
from service.store.postgres import PgDatabase, PostgresStore
from service.wire import Status
from tests.support.clock import FakeClock
from tests.support.life_cycle import STEPS_TO
from tests.support.wait import wait_for_async

pytestmark = pytest.mark.integration

LATER = datetime(2099, 1, 1, tzinfo=UTC)
"""A cutoff after every run of these tests."""
ONLY_POSTGRES = pytest.mark.parametrize("store", ["postgres"], indirect=True)


async def run_at(store: JobLogStore, status: Status, *, lines: int = 0) -> int:
    """A new run with ``lines`` lines, brought to ``status`` through allowed steps; its id."""
    log = await store.create_job_log()
    for n in range(lines):
        await store.add_detail(log.id, f"Batch {n + 1}/{lines} imported (500 records)")
    for step in STEPS_TO[status]:
        await store.set_status(log.id, step)
    return log.id


async def due(store: JobLogStore, cutoff: datetime = LATER) -> list[int]:
    """The ids of every run a purge at ``cutoff`` would take."""
    return [item.log.id for item in await store.purgeable_after(cutoff, after=0, limit=1000)]


async def line_ids(store: JobLogStore, job_log_id: int) -> list[int]:
    return [d.id for d in await store.details_after(0, limit=1000, job_log_id=job_log_id)]


async def test_only_runs_created_strictly_before_the_cutoff_are_due(
    store: JobLogStore, clock: FakeClock
) -> None:
    first = await run_at(store, Status.success)
    at_first = clock()
    clock.advance(0.000001)
    second = await run_at(store, Status.error)
    assert await due(store, at_first) == []
    assert await due(store, clock()) == [first]
    # The same instant in another zone is the same cutoff.
    assert await due(store, clock().astimezone(ZoneInfo("America/New_York"))) == [first]
    assert await due(store, clock() + timedelta(microseconds=1)) == [first, second]
    # A run on a whole second (Rails then writes no fraction in SQLite) against a bound on it.
    clock.now = datetime(2025, 12, 15, 15, 0, 0, tzinfo=UTC)
    whole = await run_at(store, Status.success)
    assert await due(store, clock()) == [first, second]
    assert await due(store, clock() + timedelta(microseconds=1)) == [first, second, whole]
    assert await store.purgeable_by_month(clock()) == [
        MonthCount(month="2025-12", logs=2, details=0)
    ]
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.purgeable_after(datetime(2026, 1, 1), after=0, limit=10)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.purgeable_by_month(datetime(2026, 1, 1))


async def test_open_runs_are_never_due_nor_deleted(store: JobLogStore) -> None:
    runs = {status: await run_at(store, status, lines=1) for status in Status}
    items = await store.purgeable_after(LATER, after=0, limit=10)
    assert [item.log for item in items] == [
        await store.job_log(runs[Status.error]),
        await store.job_log(runs[Status.success]),
    ]
    assert await store.purgeable_by_month(LATER) == [MonthCount(month="2025-12", logs=2, details=2)]
    # Asked to delete all four with their true marks, it deletes only the finished two.
    marks = {run: (1, (await line_ids(store, run))[0]) for run in runs.values()}
    assert await store.delete_logs(marks) == (2, 2)
    for status in (Status.pending, Status.processing):
        assert (await store.job_log(runs[status])).status is status
        assert len(await line_ids(store, runs[status])) == 1
    for status in (Status.error, Status.success):
        with pytest.raises(NotFound):
            await store.job_log(runs[status])
    assert await due(store) == []


async def test_due_runs_come_in_pages_of_ids_with_the_mark_of_their_lines(
    store: JobLogStore,
) -> None:
    finished = []
    for n in range(5):
        finished.append(await run_at(store, Status.success, lines=n))
        await run_at(store, Status.processing, lines=1)
    pages = []
    after = 0
    while page := await store.purgeable_after(LATER, after=after, limit=2):
        pages.append([item.log.id for item in page])
        after = page[-1].log.id
        for item in page:
            lines = await line_ids(store, item.log.id)
            assert item.mark == (len(lines), max(lines, default=0))
    assert pages == [finished[0:2], finished[2:4], finished[4:]]
    everything = await store.purgeable_after(LATER, after=0, limit=9)
    assert [item.detail_count for item in everything] == [0, 1, 2, 3, 4]
    assert await store.purgeable_after(LATER, after=finished[-1], limit=2) == []


async def test_due_runs_are_counted_per_month_of_their_start_in_utc(
    store: JobLogStore, clock: FakeClock
) -> None:
    # 23:30 UTC on 31 October is already 1 November in Berlin, where runs are named.
    clock.now = datetime(2025, 10, 31, 23, 30, tzinfo=UTC)
    october = await store.create_job_log()
    assert october.name.startswith("20251101")
    await store.add_detail(october.id, "ERROR: Fetch failed")
    await store.set_status(october.id, Status.error)
    clock.now = datetime(2025, 10, 1, 0, 0, tzinfo=UTC)
    await run_at(store, Status.success, lines=2)
    clock.now = datetime(2025, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)
    await run_at(store, Status.success, lines=4)
    await run_at(store, Status.processing, lines=8)
    clock.now = datetime(2025, 12, 1, tzinfo=UTC)
    await run_at(store, Status.error)
    clock.advance(1)
    await run_at(store, Status.success, lines=16)
    assert await store.purgeable_by_month(clock()) == [
        MonthCount(month="2025-10", logs=2, details=3),
        MonthCount(month="2025-11", logs=1, details=4),
        MonthCount(month="2025-12", logs=1, details=0),
    ]
    assert await store.purgeable_by_month(datetime(2025, 10, 1, tzinfo=UTC)) == []


async def test_a_long_runs_lines_are_deleted_in_chunks_through_an_id(store: JobLogStore) -> None:
    run = await run_at(store, Status.success, lines=7)
    other = await run_at(store, Status.success, lines=3)
    lines = await line_ids(store, run)
    kept_elsewhere = await line_ids(store, other)
    through = lines[4]
    deleted = [await store.delete_details_through(run, through=through, limit=2) for _ in range(4)]
    assert deleted == [2, 2, 1, 0]
    assert await line_ids(store, run) == lines[5:]
    assert await line_ids(store, other) == kept_elsewhere
    [item] = await store.purgeable_after(LATER, after=0, limit=1)
    assert item.mark == (2, lines[-1])
    assert await store.delete_details_through(999_999, through=through, limit=2) == 0


async def test_a_run_is_deleted_only_while_its_lines_match_the_mark(store: JobLogStore) -> None:
    quiet = await run_at(store, Status.success, lines=2)
    appended = await run_at(store, Status.error, lines=3)
    shortened = await run_at(store, Status.success, lines=3)
    empty = await run_at(store, Status.success)
    other = await run_at(store, Status.processing, lines=1)
    marks = {
        item.log.id: item.mark for item in await store.purgeable_after(LATER, after=0, limit=9)
    }
    assert marks[empty] == (0, 0)
    # After the mark was read (and the run archived): a line appended to a finished run, and
    # another run's first line gone (a purge stopped half-way).
    late = await another_writer_appends(store, appended, "WARNING: written after the run ended")
    first_of_shortened = (await line_ids(store, shortened))[0]
    assert await store.delete_details_through(shortened, through=first_of_shortened, limit=9) == 1
    assert await store.delete_logs({**marks, 999_999: (0, 0)}) == (2, 2)
    assert await due(store) == [appended, shortened]
    for gone in (quiet, empty):
        with pytest.raises(NotFound):
            await store.job_log(gone)
        assert await line_ids(store, gone) == []
    assert (await line_ids(store, appended))[-1] == late
    assert len(await line_ids(store, other)) == 1
    # The next purge reads their new marks and takes them.
    again = {
        item.log.id: item.mark for item in await store.purgeable_after(LATER, after=0, limit=9)
    }
    assert again == {appended: (4, late), shortened: (2, marks[shortened][1])}
    assert await store.delete_logs(again) == (2, 6)
    assert await due(store) == []
    assert await store.delete_logs({}) == (0, 0)


async def another_writer_appends(store: JobLogStore, job_log_id: int, message: str) -> int:
    """A line another writer (the Rails app) appends to a run, ended or not: the service's own
    add_detail refuses an ended run on PostgreSQL (a stale runner's fencing)."""
    if not isinstance(store, PostgresStore):
        return (await store.add_detail(job_log_id, message)).id
    async with store.db.transaction() as conn:
        cursor = await conn.execute(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (%s, %s, localtimestamp, localtimestamp) RETURNING id",
            (job_log_id, message),
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row["id"])


async def waiting_for_locks(db: PgDatabase, sessions: int) -> None:
    """Until ``sessions`` sessions of the test's database wait for a lock."""

    async def waiting() -> bool:
        rows = await db.read(
            "SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(rows[0]["n"] == sessions)

    await wait_for_async(waiting, f"{sessions} sessions waiting for a lock")


@ONLY_POSTGRES
async def test_a_line_committing_while_its_run_is_deleted_keeps_the_run(
    store: JobLogStore,
) -> None:
    assert isinstance(store, PostgresStore)
    run = await run_at(store, Status.success, lines=2)
    [item] = await store.purgeable_after(LATER, after=0, limit=1)
    # Another writer (the Rails app, say) appends a line in a transaction still open when the
    # delete starts: the delete waits for it, then sees the line and keeps the run.
    async with store.db.transaction() as conn:
        await conn.execute(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (%s, 'WARNING: late', localtimestamp, localtimestamp)",
            (run,),
        )
        deleting = asyncio.create_task(store.delete_logs({run: item.mark}))
        await waiting_for_locks(store.db, 1)
        assert not deleting.done()
    assert await deleting == (0, 0)
    lines = await line_ids(store, run)
    assert len(lines) == 3
    assert (await store.job_log(run)).status is Status.success


@ONLY_POSTGRES
async def test_a_line_appended_to_a_run_being_deleted_fails_cleanly(store: JobLogStore) -> None:
    assert isinstance(store, PostgresStore)
    run = await run_at(store, Status.success, lines=2)
    [item] = await store.purgeable_after(LATER, after=0, limit=1)
    # Holding the run's lines stops the delete after it has locked the run and checked its
    # mark, just before it deletes them; meanwhile a writer appends a line to the run.
    async with store.db.transaction() as conn:
        await conn.execute(
            "SELECT id FROM job_log_details WHERE job_log_id = %s FOR UPDATE", (run,)
        )
        deleting = asyncio.create_task(store.delete_logs({run: item.mark}))
        await waiting_for_locks(store.db, 1)
        appending = asyncio.create_task(store.add_detail(run, "WARNING: late"))
        await waiting_for_locks(store.db, 2)
        assert not appending.done()
    assert await deleting == (1, 2)
    with pytest.raises(NotFound):
        await appending
    with pytest.raises(NotFound):
        await store.job_log(run)
    assert await line_ids(store, run) == []
    # The writer's line is nowhere: no line outlives its run.
    assert await store.details_after(0, limit=10) == []
