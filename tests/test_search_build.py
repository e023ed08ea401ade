"""Adopting a database with history: the search index is built in short batches while other
writers go on, resumes where a restart left it, and ends exactly right."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from service.store import Database, JobLogQuery, SearchIndexBuild, list_job_logs
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
        build = SearchIndexBuild(db, max_rows=30, first_rows=30)
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
        build = SearchIndexBuild(db, max_rows=100, first_rows=100, pause_seconds=0.005)
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
        build = SearchIndexBuild(db, max_rows=50, first_rows=50)
        for _ in range(4):
            assert not await build.step()
        assert build.progress is not None
        stopped_at = build.progress.done
        # Stopped in the middle of its run (a batch under way is rolled back).
        build = SearchIndexBuild(db, max_rows=50, first_rows=50, pause_seconds=0.05)
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
        build = SearchIndexBuild(reopened, max_rows=50, first_rows=50)
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
        build = SearchIndexBuild(db, max_rows=20, first_rows=20, retry_seconds=0.05)
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
    client = await make_client(search_build_batch_rows=40)
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
