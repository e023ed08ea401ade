"""Retention: a year of hourly runs purged at 90 days, archived by month, and the daily loop."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.retention import PurgeLocked, PurgeStopped, Retention, purge
from service.retention.archive import ArchiveFailed
from service.retention.policy import DAY_SECONDS, purge_lock
from service.store import Database, SqliteStore, delete_logs, job_log_with_details, purgeable_after
from service.wire import Status
from tests.support.clock import FakeClock, FakeSleep
from tests.support.purging import purge_gate

RAILS = "%Y-%m-%d %H:%M:%S.%f"
DAYS = 90
FINISHED = {int(Status.error), int(Status.success)}


@dataclass(frozen=True)
class Run:
    """A seeded log: when it was created (Rails' text), its status, its details (id, message)."""

    id: int
    created_at: str
    status: int
    details: list[tuple[int, str]]

    @property
    def month(self) -> str:
        return self.created_at[:7]


Seed = dict[int, Run]


def insert_runs(path: Path, runs: list[tuple[datetime | str, Status, int]]) -> Seed:
    """Insert logs (created at, status, number of details) as the Rails app would store them."""
    with closing(sqlite3.connect(path)) as conn, conn:
        first_log = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM job_logs").fetchone()[0]
        detail_id = conn.execute("SELECT coalesce(max(id), 0) FROM job_log_details").fetchone()[0]
        seeded: Seed = {}
        logs, details = [], []
        for log_id, (created, status, count) in enumerate(runs, start=first_log):
            moment = datetime.fromisoformat(created) if isinstance(created, str) else created
            text = created if isinstance(created, str) else moment.strftime(RAILS)
            ended = (moment + timedelta(seconds=3.5)).strftime(RAILS)
            name = f"{moment:%Y%m%d%H%M%S}_{log_id}"
            logs.append((log_id, name, int(status), text, ended))
            lines = []
            for i in range(count):
                detail_id += 1
                message = f"run {log_id} line {i}: Batch {i + 1} imported, 500 rows"
                at = (moment + timedelta(milliseconds=250 * i)).strftime(RAILS)
                details.append((detail_id, log_id, message, at, at))
                lines.append((detail_id, message))
            seeded[log_id] = Run(log_id, text, int(status), lines)
        conn.executemany("INSERT INTO job_logs VALUES (?, ?, ?, ?, ?)", logs)
        conn.executemany("INSERT INTO job_log_details VALUES (?, ?, ?, ?, ?)", details)
    return seeded


def seed_year(path: Path, now: datetime) -> Seed:
    """One finished run per hour for the 365 days before ``now`` (every 10th an error, 8-12
    details, every 97th none), old pending and processing runs, and one run of 2,500 details."""
    start = now - timedelta(days=365)
    runs: list[tuple[datetime | str, Status, int]] = []
    for hour in range(365 * 24):
        created = start + timedelta(hours=hour, microseconds=hour * 7919 % 1_000_000)
        status = Status.error if hour % 10 == 0 else Status.success
        runs.append((created, status, 0 if hour % 97 == 0 else 8 + hour % 5))
    for k in range(3):
        runs.append((now - timedelta(days=200 + k, minutes=17), Status.pending, 2))
        runs.append((now - timedelta(days=300 + k, minutes=17), Status.processing, 2))
    runs.append((now - timedelta(days=250, minutes=41), Status.success, 2500))
    return insert_runs(path, runs)


def due(seed: Seed, cutoff: datetime) -> set[int]:
    """The ids a purge at ``cutoff`` must delete."""
    bound = cutoff.strftime(RAILS)
    return {i for i, run in seed.items() if run.status in FINISHED and run.created_at < bound}


def stored(path: Path) -> tuple[set[int], int]:
    """The ids of the logs in the database and how many details it holds."""
    with closing(sqlite3.connect(path)) as conn:
        ids = {row[0] for row in conn.execute("SELECT id FROM job_logs")}
        (details,) = conn.execute("SELECT count(*) FROM job_log_details").fetchone()
    return ids, details


def detail_total(seed: Seed, ids: set[int]) -> int:
    return sum(len(seed[i].details) for i in ids)


def archive(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every line of every archive file, read back as a user would (gzip + json)."""
    files: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.jsonl.gz")):
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as lines:
                files[path.name] = [json.loads(line) for line in lines]
    return files


def archived_ids(folder: Path) -> list[int]:
    return [line["id"] for lines in archive(folder).values() for line in lines]


@pytest.fixture
def year(db: Database, database_path: Path, clock: FakeClock) -> Seed:
    """A year of runs in the test's database."""
    return seed_year(database_path, clock())


@pytest.fixture
def cutoff(clock: FakeClock) -> datetime:
    return clock() - timedelta(days=DAYS)


async def test_purge_deletes_exactly_the_old_finished_logs_and_their_details(
    db: Database, database_path: Path, year: Seed, cutoff: datetime
) -> None:
    gone = due(year, cutoff)
    active = {i for i, run in year.items() if run.status not in FINISHED}
    calls: list[int] = []

    report = await purge(
        SqliteStore(db),
        gate=purge_gate(db),
        cutoff=cutoff,
        archive_dir=None,
        dry_run=False,
        on_purged=calls.append,
    )

    ids, details = stored(database_path)
    assert ids == set(year) - gone
    assert details == detail_total(year, ids)
    assert active <= ids
    assert (report.logs, report.details) == (len(gone), detail_total(year, gone))
    assert sum(calls) == report.logs
    assert len(calls) > 1  # in batches
    assert report.describe().startswith(f"purged {len(gone):,} logs ")


async def test_purge_archives_each_log_once_by_month_as_the_api_shows_it(
    db: Database, database_path: Path, year: Seed, cutoff: datetime, tmp_path: Path
) -> None:
    gone = due(year, cutoff)
    longest = max(gone, key=lambda i: len(year[i].details))
    empty = next(i for i in gone if not year[i].details)
    error = next(i for i in gone if year[i].status == Status.error)
    shown = {
        i: (await job_log_with_details(db, i)).model_dump(mode="json")
        for i in (longest, empty, error)
    }
    folder = tmp_path / "archive" / "purged"

    report = await purge(
        SqliteStore(db), gate=purge_gate(db), cutoff=cutoff, archive_dir=folder, dry_run=False
    )

    files = archive(folder)
    ids = archived_ids(folder)
    assert sorted(ids) == sorted(gone)
    assert len(ids) == len(set(ids))
    assert set(files) == {f"job_logs-{year[i].month}.jsonl.gz" for i in gone}
    for name, lines in files.items():
        assert {f"job_logs-{year[line['id']].month}.jsonl.gz" for line in lines} == {name}
        for line in lines:
            assert [(d["id"], d["message"]) for d in line["details"]] == year[line["id"]].details
    by_id = {line["id"]: line for lines in files.values() for line in lines}
    assert len(by_id[longest]["details"]) == 2500
    assert {i: by_id[i] for i in shown} == shown
    assert report.archived == {folder / name: len(lines) for name, lines in files.items()}
    assert stored(database_path) == (set(year) - gone, detail_total(year, set(year) - gone))


async def test_a_dry_run_changes_nothing_and_tells_what_would_go(
    db: Database, database_path: Path, year: Seed, cutoff: datetime, tmp_path: Path
) -> None:
    gone = due(year, cutoff)
    before = stored(database_path)
    folder = tmp_path / "archive"

    report = await purge(
        SqliteStore(db), gate=purge_gate(db), cutoff=cutoff, archive_dir=folder, dry_run=True
    )

    assert stored(database_path) == before
    assert not folder.exists()
    assert (report.logs, report.details) == (len(gone), detail_total(year, gone))
    months = {year[i].month for i in gone}
    assert report.archived == {
        folder / f"job_logs-{m}.jsonl.gz": sum(year[i].month == m for i in gone) for m in months
    }
    assert report.describe().startswith(f"would purge {len(gone):,} logs ")


@pytest.mark.parametrize("blocked", [0, 2], ids=["first-month", "third-month"])
async def test_an_archive_that_cannot_be_written_stops_the_purge_before_deleting_more(
    db: Database, database_path: Path, year: Seed, cutoff: datetime, tmp_path: Path, blocked: int
) -> None:
    gone = due(year, cutoff)
    month = sorted({year[i].month for i in gone})[blocked]
    folder = tmp_path / "archive"
    (folder / f"job_logs-{month}.jsonl.gz").mkdir(parents=True)

    with pytest.raises(PurgeStopped) as failure:
        await purge(
            SqliteStore(db), gate=purge_gate(db), cutoff=cutoff, archive_dir=folder, dry_run=False
        )

    ids, details = stored(database_path)
    deleted = set(year) - ids
    assert sorted(archived_ids(folder)) == sorted(deleted)  # every file still reads whole
    assert bool(deleted) == (blocked > 0)
    assert all(year[i].month < month for i in deleted)
    assert details == detail_total(year, ids)
    assert failure.value.report is not None
    assert failure.value.report.logs == len(deleted)
    assert f"job_logs-{month}.jsonl.gz" in str(failure.value)
    assert "nothing more was deleted" in str(failure.value)
    assert isinstance(failure.value.__cause__, ArchiveFailed)
    assert failure.value.__cause__.path == folder / f"job_logs-{month}.jsonl.gz"


async def test_a_cancelled_purge_deletes_only_what_it_archived_and_can_be_resumed(
    db: Database, database_path: Path, year: Seed, cutoff: datetime, tmp_path: Path
) -> None:
    gone = due(year, cutoff)
    folder = tmp_path / "archive"
    first_batch = asyncio.Event()
    task = asyncio.create_task(
        purge(
            SqliteStore(db),
            gate=purge_gate(db),
            cutoff=cutoff,
            archive_dir=folder,
            dry_run=False,
            on_purged=lambda n: first_batch.set(),
        )
    )
    async with asyncio.timeout(30):
        await first_batch.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    deleted = set(year) - stored(database_path)[0]
    assert deleted
    assert deleted < gone
    assert deleted <= set(archived_ids(folder))

    await purge(
        SqliteStore(db), gate=purge_gate(db), cutoff=cutoff, archive_dir=folder, dry_run=False
    )

    assert stored(database_path)[0] == set(year) - gone
    lines = [line for lines in archive(folder).values() for line in lines]
    assert {line["id"] for line in lines} == gone
    first: dict[int, dict[str, Any]] = {}
    for line in lines:
        assert first.setdefault(line["id"], line) == line  # a repeated line is the same log


async def test_a_held_purge_lock_refuses_the_purge(
    db: Database, database_path: Path, year: Seed, cutoff: datetime
) -> None:
    before = stored(database_path)
    lock = purge_lock(database_path)
    assert lock.acquire()
    try:
        with pytest.raises(PurgeLocked):
            await purge(
                SqliteStore(db), gate=purge_gate(db), cutoff=cutoff, archive_dir=None, dry_run=False
            )
    finally:
        lock.release()
    assert stored(database_path) == before


async def test_a_log_whose_details_changed_since_they_were_read_is_not_deleted(
    db: Database, database_path: Path, cutoff: datetime
) -> None:
    seed = insert_runs(
        database_path,
        [
            (cutoff - timedelta(days=1), Status.success, 3),
            (cutoff - timedelta(days=2), Status.error, 2),
        ],
    )
    late, _steady = sorted(seed)
    marks = {
        item.log.id: item.mark for item in await purgeable_after(db, cutoff, after=0, limit=10)
    }
    with closing(sqlite3.connect(database_path)) as conn, conn:
        conn.execute(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (?, 'late', '2025-01-01 00:00:00', '2025-01-01 00:00:00')",
            (late,),
        )

    assert await delete_logs(db, marks) == (1, 2)

    assert stored(database_path) == ({late}, 4)


@pytest.mark.parametrize(
    ("now", "purged", "kept"),
    [
        (
            datetime.fromisoformat("2025-12-15T14:30:22+00:00"),
            ["2025-09-16 14:30:21.999999", "2025-09-16 14:30:21"],
            ["2025-09-16 14:30:22", "2025-09-16 14:30:22.000000", "2025-09-16 14:30:22.000001"],
        ),
        (
            datetime.fromisoformat("2025-12-15T14:30:22.250000+00:00"),
            ["2025-09-16 14:30:22", "2025-09-16 14:30:22.249999"],
            ["2025-09-16 14:30:22.250000", "2025-09-16 14:30:22.250001"],
        ),
    ],
    ids=["whole-second-cutoff", "fractional-cutoff"],
)
async def test_the_cutoff_compares_with_both_rails_timestamp_forms(
    db: Database, database_path: Path, now: datetime, purged: list[str], kept: list[str]
) -> None:
    seed = insert_runs(database_path, [(text, Status.success, 1) for text in purged + kept])

    await purge(
        SqliteStore(db),
        gate=purge_gate(db),
        cutoff=now - timedelta(days=DAYS),
        archive_dir=None,
        dry_run=False,
    )

    left = {seed[i].created_at for i in stored(database_path)[0]}
    assert left == set(kept)


async def test_the_daily_loop_purges_at_start_and_again_a_day_later(
    db: Database, database_path: Path, clock: FakeClock
) -> None:
    now = clock()
    seed = insert_runs(
        database_path,
        [
            (now - timedelta(days=91), Status.success, 3),
            (now - timedelta(days=89, hours=12), Status.error, 2),
            (now - timedelta(days=80), Status.success, 1),
        ],
    )
    _old, next_day, recent = sorted(seed)
    seen: list[set[int]] = []
    sleep = FakeSleep(clock, 1, lambda: seen.append(stored(database_path)[0]))
    calls: list[int] = []
    retention = Retention(
        SqliteStore(db),
        gate=purge_gate(db),
        retention_days=DAYS,
        archive_dir=None,
        clock=clock,
        on_purged=calls.append,
        sleep=sleep,
    )
    await retention.start()
    try:
        async with asyncio.timeout(30):
            await sleep.parked.wait()
    finally:
        await retention.stop()
    assert seen == [{next_day, recent}, {recent}]
    assert sleep.delays == [DAY_SECONDS, DAY_SECONDS]
    assert calls == [1, 1]


async def test_a_failed_daily_purge_is_logged_and_done_the_next_day(
    db: Database,
    database_path: Path,
    clock: FakeClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed = insert_runs(database_path, [(clock() - timedelta(days=91), Status.success, 2)])
    (log_id,) = seed
    folder = tmp_path / "archive"
    blocker = folder / f"job_logs-{seed[log_id].month}.jsonl.gz"
    blocker.mkdir(parents=True)
    seen: list[set[int]] = []

    def unblock() -> None:
        seen.append(stored(database_path)[0])
        if blocker.is_dir():
            blocker.rmdir()

    sleep = FakeSleep(clock, 1, unblock)
    retention = Retention(
        SqliteStore(db),
        gate=purge_gate(db),
        retention_days=DAYS,
        archive_dir=folder,
        clock=clock,
        sleep=sleep,
    )
    caplog.set_level(logging.INFO, logger="service.retention")
    await retention.start()
    try:
        async with asyncio.timeout(30):
            await sleep.parked.wait()
    finally:
        await retention.stop()
    assert seen == [{log_id}, set()]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith(f"purge stopped: cannot write the archive {blocker}")
    assert archived_ids(folder) == [log_id]


async def test_the_daily_purge_skips_while_another_purge_holds_the_lock(
    db: Database, database_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    insert_runs(database_path, [(clock() - timedelta(days=91), Status.success, 2)])
    before = stored(database_path)
    retention = Retention(
        SqliteStore(db), gate=purge_gate(db), retention_days=DAYS, archive_dir=None, clock=clock
    )
    caplog.set_level(logging.INFO, logger="service.retention")
    lock = purge_lock(database_path)
    assert lock.acquire()
    try:
        assert await retention.run_once() is None
    finally:
        lock.release()
    assert stored(database_path) == before
    assert any("purge skipped" in r.getMessage() for r in caplog.records)
    report = await retention.run_once()
    assert report is not None
    assert report.logs == 1


async def test_retention_days_zero_starts_no_loop_and_purges_nothing(
    db: Database, database_path: Path, clock: FakeClock
) -> None:
    insert_runs(database_path, [(clock() - timedelta(days=3000), Status.success, 2)])
    before = stored(database_path)
    retention = Retention(
        SqliteStore(db), gate=purge_gate(db), retention_days=0, archive_dir=None, clock=clock
    )
    await retention.start()
    try:
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "retention-purge"]
        assert await retention.run_once() is None
    finally:
        await retention.stop()
    assert stored(database_path) == before
