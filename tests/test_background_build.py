"""Adopting a database with history: the runs by status and the search index are built in
short batches while other writers go on, resume where a restart left them, and end exactly
right; the reads they serve are right before, during and after."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from service.store import (
    COMPOSITE_INDEX_MAX_RUNS,
    BackgroundBuild,
    Database,
    JobLogQuery,
    last_success_at,
    list_job_logs,
)
from service.wire import Status
from tests.support.api import MakeClient
from tests.support.rails import SEED_SCHEMA, raw
from tests.support.wait import wait_for_async

NEEDLE = "Deadlock victim"
# Generous for a loaded CI machine, yet far below the time a build in one transaction holds
# the lock once there is history: a batch of this size takes a few milliseconds.
WRITER_BUSY_MS = 1000


def rails_history(path: Path, logs: int, details: int) -> None:
    """A database as the Rails app leaves it: its schema only, ``logs`` runs of ``details``
    lines, one run in ten carrying the needle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with raw(path) as conn:
        conn.executescript(SEED_SCHEMA)
        conn.execute("BEGIN")
        for n in range(1, logs + 1):
            at = f"2025-01-01 00:00:{n % 60:02d}"
            conn.execute(
                "INSERT INTO job_logs (id, name, status, created_at, updated_at) "
                "VALUES (?, ?, 3, ?, ?)",
                (n, f"2025{n:010d}", at, at),
            )
            lines = [f"Batch {i}/{details} imported ({n * i} records)" for i in range(details)]
            if n % 10 == 0:
                lines[-1] = f"ERROR: {NEEDLE} (process {n})"
            conn.executemany(
                "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
                "VALUES (?, ?, ?, ?)",
                [(n, line, at, at) for line in lines],
            )
        conn.execute("COMMIT")


def scan(path: Path, text: str) -> list[int]:
    """The ids of the lines holding ``text`` (any case), found by reading every line."""
    with raw(path) as conn:
        rows = conn.execute(
            "SELECT id FROM job_log_details WHERE instr(lower(message), lower(?)) > 0 ORDER BY id",
            (text,),
        )
        return [row[0] for row in rows]


def indexed(path: Path, text: str) -> list[int]:
    """The ids of the lines the search index finds for ``text`` (its candidates, re-checked
    as the store re-checks them)."""
    with raw(path) as conn:
        rows = conn.execute(
            "SELECT d.id FROM job_log_details_search AS s "
            "JOIN job_log_details AS d ON d.id = s.rowid "
            "WHERE s.message LIKE ? AND instr(lower(d.message), lower(?)) > 0 ORDER BY d.id",
            (f"%{text}%", text),
        )
        return [row[0] for row in rows]


def assert_index_exact(path: Path) -> None:
    """FTS5's own check against the lines, and every line indexed exactly once."""
    with raw(path) as conn:
        conn.execute(
            "INSERT INTO job_log_details_search (job_log_details_search, rank) "
            "VALUES ('integrity-check', 1)"
        )
        lines = [r[0] for r in conn.execute("SELECT id FROM job_log_details ORDER BY id")]
        docs = [
            r[0] for r in conn.execute("SELECT id FROM job_log_details_search_docsize ORDER BY id")
        ]
        assert conn.execute("SELECT count(*) FROM search_index_build").fetchone()[0] == 0
    assert docs == lines
    for text in (NEEDLE, "imported", "(process 2", "Written by another", "zzz-nowhere"):
        assert indexed(path, text) == scan(path, text), text


class OtherWriter:
    """Another program writing lines as Rails does, each write its own short transaction:
    adds lines, rewrites and deletes old ones (indexed or not yet), until stopped."""

    def __init__(self, path: Path, lines: int) -> None:
        self.path = path
        self.lines = lines
        self.errors: list[sqlite3.Error] = []
        self.writes = 0
        # The build's progress each write saw committed: proof the writes went on during it.
        self.seen_done: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @contextmanager
    def running(self) -> Iterator[OtherWriter]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=30)

    def _run(self) -> None:
        rng = random.Random(13)
        with closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            conn.execute(f"PRAGMA busy_timeout={WRITER_BUSY_MS}")
            while not self._stop.is_set():
                try:
                    self._write(conn, rng)
                except sqlite3.Error as exc:
                    self.errors.append(exc)
                    return
                self._stop.wait(0.002)

    def _write(self, conn: sqlite3.Connection, rng: random.Random) -> None:
        target = rng.randint(1, self.lines)
        kind = self.writes % 3
        if kind == 0:
            conn.execute(
                "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
                "VALUES (1, ?, '2025-01-02 00:00:00', '2025-01-02 00:00:00')",
                (f"Written by another program {self.writes} {NEEDLE}",),
            )
        elif kind == 1:
            conn.execute(
                "UPDATE job_log_details SET message = ? WHERE id = ?",
                (f"Written by another program, rewritten {self.writes}", target),
            )
        else:
            conn.execute("DELETE FROM job_log_details WHERE id = ?", (target,))
        self.writes += 1
        row = conn.execute("SELECT done FROM search_index_build").fetchone()
        if row is not None:
            self.seen_done.add(row[0])


async def test_a_rails_database_is_adopted_with_its_search_index_to_build(
    database_path: Path,
) -> None:
    rails_history(database_path, logs=20, details=10)
    db = await Database.open(database_path)
    try:
        assert not db.search_ready
        # The counts are right at once; the index holds nothing of the history yet.
        with raw(database_path) as conn:
            assert conn.execute("SELECT status, n FROM job_log_counts").fetchall() == [(3, 20)]
            assert conn.execute("SELECT done, upto FROM search_index_build").fetchall() == [
                (0, 200)
            ]
        assert indexed(database_path, NEEDLE) == []
        build = BackgroundBuild(db, max_rows=30, first_rows=30)
        steps = 0
        while not await build.step():
            steps += 1
        assert steps >= 6
        assert db.search_ready
    finally:
        await db.close()
    assert_index_exact(database_path)
    reopened = await Database.open(database_path)
    try:
        assert reopened.search_ready
    finally:
        await reopened.close()


async def test_other_writers_go_on_during_the_build_and_everything_ends_searchable(
    database_path: Path,
) -> None:
    rails_history(database_path, logs=200, details=20)
    db = await Database.open(database_path)
    try:
        build = BackgroundBuild(db, max_rows=100, first_rows=100, pause_seconds=0.005)
        with OtherWriter(database_path, lines=4000).running() as writer:
            build.start()
            # Meanwhile a search scans, and finds what the lines hold now.
            await wait_for_async(lambda: build.batches >= 3, "a few batches")
            found = await list_job_logs(db, JobLogQuery(q=NEEDLE, per_page=100))
            expected = _runs_holding(database_path, NEEDLE)
            assert sorted(log.id for log in found.items) == expected
            await wait_for_async(lambda: db.search_ready, "the build to end", within=60)
        assert writer.errors == []
        # The writes went on between the batches, not only before or after the build.
        assert len(writer.seen_done) >= 3, writer.seen_done
        assert db.search_ready
        found = await list_job_logs(db, JobLogQuery(q=NEEDLE, per_page=100))
        assert sorted(log.id for log in found.items) == _runs_holding(database_path, NEEDLE)
    finally:
        await build.close()
        await db.close()
    assert_index_exact(database_path)


def _runs_holding(path: Path, text: str) -> list[int]:
    with raw(path) as conn:
        rows = conn.execute(
            "SELECT DISTINCT job_log_id FROM job_log_details "
            "WHERE instr(lower(message), lower(?)) > 0 ORDER BY job_log_id",
            (text,),
        )
        return [row[0] for row in rows]


async def test_a_restart_resumes_the_build_where_it_stopped(database_path: Path) -> None:
    rails_history(database_path, logs=50, details=20)
    db = await Database.open(database_path)
    try:
        build = BackgroundBuild(db, max_rows=50, first_rows=50)
        for _ in range(4):
            assert not await build.step()
        assert build.progress is not None
        stopped_at = build.progress.done
        # Stopped in the middle of its run (a batch under way is rolled back).
        build = BackgroundBuild(db, max_rows=50, first_rows=50, pause_seconds=0.05)
        build.start()
        await build.close()
    finally:
        await db.close()
    with raw(database_path) as conn:
        (done,) = conn.execute("SELECT done FROM search_index_build").fetchone()
    assert stopped_at <= done < 1000
    # Lines written while the service was down: some already indexed, some not yet.
    with raw(database_path) as conn:
        conn.execute("DELETE FROM job_log_details WHERE id IN (3, 900)")
        conn.execute("UPDATE job_log_details SET message = 'moved on' WHERE id IN (5, 950)")
    reopened = await Database.open(database_path)
    try:
        assert not reopened.search_ready
        build = BackgroundBuild(reopened, max_rows=50, first_rows=50)
        assert not await build.step()
        assert build.progress is not None
        assert build.progress.done == done + 50
        await build.run()
        assert reopened.search_ready
    finally:
        await reopened.close()
    assert_index_exact(database_path)
    assert indexed(database_path, "moved on") == [5, 950]


async def test_a_locked_database_delays_the_build_and_it_ends_right(database_path: Path) -> None:
    rails_history(database_path, logs=20, details=10)
    db = await Database.open(database_path, busy_timeout_seconds=0.05)
    try:
        build = BackgroundBuild(db, max_rows=20, first_rows=20, retry_seconds=0.05)
        with raw(database_path) as other:
            other.execute("BEGIN IMMEDIATE")
            build.start()
            await wait_for_async(lambda: build.failures >= 2, "batches refused by the lock")
            assert not db.search_ready
            other.execute("ROLLBACK")
        await wait_for_async(lambda: db.search_ready, "the build to end")
        await build.close()
    finally:
        await db.close()
    assert_index_exact(database_path)


async def test_readiness_says_the_index_is_building_then_ready(
    database_path: Path, make_client: MakeClient
) -> None:
    rails_history(database_path, logs=100, details=20)
    client = await make_client(adoption_batch_rows=40)
    response = await client.get("/readyz")
    # Building the index does not make the service unready: it answers everything meanwhile.
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ready"
    assert body["search"] == "building"
    assert 0 <= body["search_progress"] < 1

    async def ready() -> bool:
        body = await (await client.get("/readyz")).json()
        return body["search"] == "ready" and body["search_progress"] is None

    await wait_for_async(ready, "the index to be built")
    await client.close()
    assert_index_exact(database_path)


def by_status(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The runs in (status, created_at, id) order, from the runs themselves and as the table
    kept for them holds them."""
    with raw(path) as conn:
        runs = conn.execute("SELECT status, created_at, id FROM job_logs ORDER BY 1, 2, 3")
        kept = conn.execute("SELECT status, created_at, id FROM job_logs_by_status")
        return list(runs), list(kept)


class RunWriter(threading.Thread):
    """Another program writing runs as Rails may: new runs, status changes, rewritten start
    times, deleted runs (their lines first), each its own short transaction."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.errors: list[sqlite3.Error] = []
        self.writes = 0
        self.seen_done: set[int] = set()
        self.stop = threading.Event()
        # Held by the test while it compares two reads, so that no write falls between them.
        self.hold = threading.Lock()

    def run(self) -> None:
        rng = random.Random(14)
        with closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            conn.execute(f"PRAGMA busy_timeout={WRITER_BUSY_MS}")
            while not self.stop.is_set():
                try:
                    with self.hold:
                        self._write(conn, rng)
                except sqlite3.Error as exc:
                    self.errors.append(exc)
                    return
                self.stop.wait(0.002)

    def _write(self, conn: sqlite3.Connection, rng: random.Random) -> None:
        (last,) = conn.execute("SELECT max(id) FROM job_logs").fetchone()
        target = rng.randint(1, last)
        kind = self.writes % 4
        if kind == 0:
            at = f"2025-01-03 00:{self.writes % 60:02d}:00"
            conn.execute(
                "INSERT INTO job_logs (name, status, created_at, updated_at) VALUES (?, 2, ?, ?)",
                (f"other-{self.writes}", at, at),
            )
        elif kind == 1:
            conn.execute("UPDATE job_logs SET status = 2 WHERE id = ?", (target,))
        elif kind == 2:
            conn.execute(
                "UPDATE job_logs SET created_at = '2024-12-31 23:59:59' WHERE id = ?", (target,)
            )
        else:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM job_log_details WHERE job_log_id = ?", (target,))
            conn.execute("DELETE FROM job_logs WHERE id = ?", (target,))
            conn.execute("COMMIT")
        self.writes += 1
        row = conn.execute("SELECT done FROM job_logs_by_status_build").fetchone()
        if row is not None:
            self.seen_done.add(row[0])


async def _error_page(db: Database) -> list[int]:
    page = await list_job_logs(db, JobLogQuery(status=Status.error, per_page=100))
    return [log.id for log in page.items]


def _errors_newest_first(path: Path) -> list[int]:
    with raw(path) as conn:
        rows = conn.execute(
            "SELECT id FROM job_logs WHERE status = 2 ORDER BY created_at DESC, id DESC LIMIT 100"
        )
        return [row[0] for row in rows]


async def test_a_big_history_gets_its_runs_by_status_in_batches_not_the_composite_index(
    database_path: Path,
) -> None:
    # A history too big for CREATE INDEX in the opening transaction.
    many = COMPOSITE_INDEX_MAX_RUNS + 50
    rails_history(database_path, logs=many, details=1)
    with raw(database_path) as conn:
        conn.execute("UPDATE job_logs SET status = 2 WHERE id % 7 = 0")
    db = await Database.open(database_path)
    build = BackgroundBuild(db, max_rows=500, first_rows=500, pause_seconds=0.005)
    try:
        assert not db.by_status_ready
        with raw(database_path) as conn:
            indexes = {row[1] for row in conn.execute("PRAGMA index_list(job_logs)")}
            assert conn.execute("SELECT done, upto FROM job_logs_by_status_build").fetchall() == [
                (0, many)
            ]
        assert "index_job_logs_on_status_and_created_at" not in indexes
        # Before the build, filters by status read the runs themselves, and are right.
        assert await _error_page(db) == _errors_newest_first(database_path)
        writer = RunWriter(database_path)
        writer.start()
        try:
            build.start()
            await wait_for_async(lambda: build.batches >= 4, "a few batches")
            with writer.hold:
                assert await _error_page(db) == _errors_newest_first(database_path)
            await wait_for_async(lambda: db.by_status_ready, "the runs by status", within=60)
        finally:
            writer.stop.set()
            writer.join(timeout=30)
        assert writer.errors == []
        assert len(writer.seen_done) >= 3, writer.seen_done
        runs, kept = by_status(database_path)
        assert kept == runs
        # After it, they read the runs by status, and are right.
        assert await _error_page(db) == _errors_newest_first(database_path)
        with raw(database_path) as conn:
            (latest,) = conn.execute(
                "SELECT updated_at FROM job_logs WHERE status = 3 "
                "ORDER BY created_at DESC, id DESC LIMIT 1"
            ).fetchone()
        found = await last_success_at(db)
        assert found is not None
        assert found.strftime("%Y-%m-%d %H:%M:%S") == latest
        await wait_for_async(lambda: db.search_ready, "the search index", within=60)
    finally:
        await build.close()
        await db.close()
    assert_index_exact(database_path)
    runs, kept = by_status(database_path)
    assert kept == runs


async def test_a_young_history_gets_the_composite_index_at_once(database_path: Path) -> None:
    rails_history(database_path, logs=30, details=2)
    db = await Database.open(database_path)
    try:
        # Small enough to index in the opening transaction, for the Rails app's queries.
        with raw(database_path) as conn:
            indexes = {row[1] for row in conn.execute("PRAGMA index_list(job_logs)")}
        assert "index_job_logs_on_status_and_created_at" in indexes
        build = BackgroundBuild(db, max_rows=1000, first_rows=1000)
        await build.run()
        assert db.by_status_ready
        assert db.search_ready
    finally:
        await db.close()
    runs, kept = by_status(database_path)
    assert kept == runs
