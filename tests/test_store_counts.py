"""The per-status counts and the trigram search index stay right for every writer.

The counts (``total`` and the stats) and the search index are kept by triggers, so what the
service writes, what another program writes straight into the file (the Rails app), and what
the retention purge deletes all keep them in step; a database adopted without them gets them
filled once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.retention import purge
from service.store import (
    Database,
    JobLogQuery,
    SqliteStore,
    add_detail,
    close_unfinished,
    count_by_status,
    create_job_log,
    list_job_logs,
    set_status,
)
from service.wire import Status, StatusCounts
from tests.support.clock import FakeClock
from tests.support.purging import purge_gate
from tests.support.rails import raw, seed_database


def counted(path: Path) -> StatusCounts:
    """What counting every row says, the slow way the counts replace."""
    with raw(path) as conn:
        rows = conn.execute("SELECT status, count(*) FROM job_logs GROUP BY status").fetchall()
    per_status = {Status(status).name: n for status, n in rows}
    return StatusCounts(total=sum(n for _, n in rows), **per_status)


async def assert_counts_right(db: Database, path: Path) -> StatusCounts:
    counts = await count_by_status(db)
    assert counts == counted(path)
    assert (await list_job_logs(db, JobLogQuery())).total == counts.total
    for status in Status:
        page = await list_job_logs(db, JobLogQuery(status=status))
        assert page.total == getattr(counts, status.name)
    return counts


async def test_counts_follow_the_services_own_writes(
    db: Database, database_path: Path, clock: FakeClock
) -> None:
    assert await assert_counts_right(db, database_path) == StatusCounts()
    first = await create_job_log(db)
    second = await create_job_log(db)
    await set_status(db, first.id, Status.processing)
    await set_status(db, first.id, Status.success)
    await set_status(db, second.id, Status.error)
    third = await create_job_log(db)
    await set_status(db, third.id, Status.processing)
    counts = await assert_counts_right(db, database_path)
    assert (counts.total, counts.success, counts.error, counts.processing) == (3, 1, 1, 1)
    await close_unfinished(db, "the process died")
    counts = await assert_counts_right(db, database_path)
    assert (counts.total, counts.error, counts.processing) == (3, 2, 0)


async def test_counts_follow_writes_by_another_program(
    db: Database, database_path: Path, clock: FakeClock
) -> None:
    await create_job_log(db)
    with raw(database_path) as conn:
        conn.execute(
            "INSERT INTO job_logs (name, status, created_at, updated_at) VALUES "
            "('20241215143022', 1, '2024-12-15 14:30:22', '2024-12-15 14:30:22'), "
            "('20241215144022', 0, '2024-12-15 14:40:22', '2024-12-15 14:40:22')"
        )
        conn.execute("UPDATE job_logs SET status = 3 WHERE name = '20241215143022'")
        # A write that leaves the status alone moves no count.
        conn.execute("UPDATE job_logs SET updated_at = '2025-12-15 14:50:00'")
        conn.execute("DELETE FROM job_logs WHERE name = '20241215144022'")
    counts = await assert_counts_right(db, database_path)
    assert (counts.total, counts.pending, counts.success) == (2, 1, 1)


async def test_counts_follow_the_retention_purge(
    db: Database, database_path: Path, clock: FakeClock
) -> None:
    old = []
    for _ in range(5):
        log = await create_job_log(db)
        await add_detail(db, log.id, "Job started - SyncOpenOrdersJob")
        await set_status(db, log.id, Status.error)
        old.append(log)
        clock.advance(300)
    clock.advance(timedelta(days=40).total_seconds())
    kept = await create_job_log(db)
    await set_status(db, kept.id, Status.processing)
    await set_status(db, kept.id, Status.success)
    await purge(
        SqliteStore(db),
        gate=purge_gate(db),
        cutoff=clock() - timedelta(days=30),
        archive_dir=None,
        dry_run=False,
    )
    counts = await assert_counts_right(db, database_path)
    assert (counts.total, counts.error, counts.success) == (1, 0, 1)
    # The purged logs' details left the search index too.
    assert (await list_job_logs(db, JobLogQuery(q="SyncOpenOrdersJob"))).total == 0


async def test_an_adopted_database_has_its_counts_and_index_filled_once(
    database_path: Path, clock: FakeClock
) -> None:
    seed_database(database_path)
    db = await Database.open(database_path, clock=clock)
    try:
        counts = await assert_counts_right(db, database_path)
        assert (counts.total, counts.success, counts.error, counts.processing) == (4, 2, 1, 1)
        page = await list_job_logs(db, JobLogQuery(q="casql2.INXINTL"))
        assert [log.name for log in page.items] == ["20251215143022"]
    finally:
        await db.close()
    # Opened again, nothing is counted twice.
    db = await Database.open(database_path, clock=clock)
    try:
        assert await assert_counts_right(db, database_path) == counts
        assert (await list_job_logs(db, JobLogQuery(q="casql2.INXINTL"))).total == 1
    finally:
        await db.close()


async def _logs_with(db: Database, clock: FakeClock, messages: list[list[str]]) -> list[int]:
    ids = []
    for lines in messages:
        log = await create_job_log(db)
        for line in lines:
            await add_detail(db, log.id, line)
        ids.append(log.id)
        clock.advance(300)
    return ids


async def test_search_finds_substrings_case_insensitively_with_an_exact_total(
    db: Database, clock: FakeClock
) -> None:
    ids = await _logs_with(
        db,
        clock,
        [
            ["Job started", "ERROR: Deadlock victim (process 52)"],
            ["Job started", "Fetched 1,523 records"],
            ["Job started", "error: deadlock VICTIM again", "Deadlock victim twice in one log"],
            ["100% done_now", "Ünïcode ÄBC"],
        ],
    )
    page = await list_job_logs(db, JobLogQuery(q="deadlock victim"))
    assert [log.id for log in page.items] == [ids[2], ids[0]]
    assert page.total == 2
    assert (await list_job_logs(db, JobLogQuery(q="adlock vic", per_page=1))).total == 2
    assert (await list_job_logs(db, JobLogQuery(q="1,523"))).total == 1
    assert (await list_job_logs(db, JobLogQuery(q="Job started"))).total == 3
    # LIKE's wildcards are only text here.
    assert [log.id for log in (await list_job_logs(db, JobLogQuery(q="0% d"))).items] == [ids[3]]
    assert (await list_job_logs(db, JobLogQuery(q="e_n"))).total == 1
    assert (await list_job_logs(db, JobLogQuery(q="a%b"))).total == 0
    # Case folding is ASCII's, as without the index: Ä is not ä.
    assert (await list_job_logs(db, JobLogQuery(q="ÄBC"))).total == 1
    assert (await list_job_logs(db, JobLogQuery(q="äbc"))).total == 0
    # Shorter than a trigram: the scan answers, the same way.
    assert (await list_job_logs(db, JobLogQuery(q="eR"))).total == 2
    assert (await list_job_logs(db, JobLogQuery(q="%"))).total == 1
    # Combined with the other filters, the total stays exact.
    await set_status(db, ids[0], Status.error)
    both = await list_job_logs(db, JobLogQuery(q="deadlock", status=Status.error))
    assert ([log.id for log in both.items], both.total) == ([ids[0]], 1)
    since = datetime.now(UTC) - timedelta(days=3650)
    assert (await list_job_logs(db, JobLogQuery(q="deadlock", since=since))).total == 2


async def test_search_follows_details_written_changed_and_deleted_elsewhere(
    db: Database, database_path: Path, clock: FakeClock
) -> None:
    (log_id,) = await _logs_with(db, clock, [["Connecting to CASQL2..."]])
    with raw(database_path) as conn:
        conn.execute(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (?, 'Login failed for user zsd', '2025-12-15 14:30:22', "
            "'2025-12-15 14:30:22')",
            (log_id,),
        )
    assert (await list_job_logs(db, JobLogQuery(q="login FAILED"))).total == 1
    with raw(database_path) as conn:
        conn.execute("UPDATE job_log_details SET message = 'Connected' WHERE message LIKE 'Login%'")
    assert (await list_job_logs(db, JobLogQuery(q="login failed"))).total == 0
    assert (await list_job_logs(db, JobLogQuery(q="connected"))).total == 1
    with raw(database_path) as conn:
        conn.execute("DELETE FROM job_log_details WHERE message = 'Connected'")
    assert (await list_job_logs(db, JobLogQuery(q="connected"))).total == 0
    with raw(database_path) as conn:
        # FTS5 raises if the index disagrees with job_log_details.
        conn.execute(
            "INSERT INTO job_log_details_search (job_log_details_search) VALUES ('integrity-check')"
        )
