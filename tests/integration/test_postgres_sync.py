"""The sync job in PostgreSQL mode on a real PostgreSQL 15: the demo source's rows staged in the
run's own table from the source's thread, swapped in under the run lease's epoch, and the run's
lines written through the store's contract; the server's failures as the store's errors."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import psycopg_pool
import pytest

from service.sources.base import Column
from service.sources.demo import ROWS, DemoSource, demo_rows
from service.store import (
    DatabaseBusy,
    DatabaseFailure,
    DatabaseFull,
    DatabaseGone,
    StagingClosed,
    StoreError,
    is_busy,
    is_full,
    is_gone,
    until_written,
)
from service.store.postgres import PgDatabase, PgTarget, PostgresStore, RunLease, translated
from service.sync import RunControl, SyncJob, SyncOptions
from service.wire import JobLog, JobLogDetail, Status
from tests.support.postgres import PostgresServer, connected
from tests.support.sync import DEMO_DETAILS
from tests.support.wait import wait_for_async

pytestmark = pytest.mark.integration

_names = itertools.count(1)
COMPLETED = "Job completed successfully - Total: 1,523 records in "


@pytest.fixture
async def url(postgres: PostgresServer) -> str:
    """A database of its own for each test (the pool applies the schema)."""
    return postgres.store_database(f"sync_{next(_names)}")


@dataclass
class Node:
    """The pieces of a PostgreSQL-mode sync, on one database and the demo source."""

    url: str
    db: PgDatabase
    store: PostgresStore
    target: PgTarget
    lease: RunLease
    demo: Path
    seen: list[str] = field(default_factory=list)

    def job(self, *, delay: float = 0.0, epoch: int | None = None) -> SyncJob:
        """A sync job as the scheduler builds one for a run under the lease (or ``epoch``)."""

        def record(log: JobLog, detail: JobLogDetail) -> None:
            self.seen.append(detail.message)

        return SyncJob(
            self.store,
            self.target,
            DemoSource(self.demo, delay=delay),
            SyncOptions(),
            on_detail=record,
            epoch=self.lease.epoch if epoch is None else epoch,
        )

    async def run(self, *, force: bool = False, epoch: int | None = None) -> JobLog:
        """One run to its end."""
        log = await self.store.create_job_log()
        return await self.job(epoch=epoch).run(log, force=force, control=RunControl())

    async def messages(self, log: JobLog) -> list[str]:
        """The run's lines, in order."""
        rows = await self.rows(
            "SELECT message FROM job_log_details WHERE job_log_id = %s ORDER BY id", (log.id,)
        )
        return [str(row[0]) for row in rows]

    async def rows(self, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """What another program reading the database sees."""
        async with connected(self.url) as conn:
            cursor = await conn.execute(query.encode(), params or None)
            return list(await cursor.fetchall())

    async def open_orders(self) -> int:
        """Rows in open_orders (-1: there is no open_orders table)."""
        (found,) = await self.rows("SELECT to_regclass('open_orders') IS NOT NULL")
        if not found[0]:
            return -1
        return int((await self.rows("SELECT count(*) FROM open_orders"))[0][0])

    async def staging_left(self) -> list[str]:
        """Staging tables, and staging sessions, still there."""
        tables = await self.rows(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'open_orders_staging%'"
        )
        sessions = await self.rows(
            "SELECT application_name FROM pg_stat_activity "
            "WHERE application_name LIKE 'joblog staging%'"
        )
        return [str(row[0]) for row in tables + sessions]

    def shrink_source(self, keep: int) -> None:
        """The demo source keeps only its first ``keep`` rows."""
        with closing(sqlite3.connect(self.demo)) as source:
            source.execute("DELETE FROM open_order_lines WHERE rowid > ?", (keep,))
            source.commit()


@asynccontextmanager
async def node(url: str, tmp_path: Path, **pool: Any) -> AsyncIterator[Node]:
    """The pool, the store and the target on it, and the run lease held."""
    db = await PgDatabase.open(url, **pool)
    lease = RunLease(url, "node-a")
    try:
        assert await lease.acquire()
        yield Node(url, db, PostgresStore(db), PgTarget(db), lease, tmp_path / "demo.sqlite3")
    finally:
        await lease.release()
        await db.close()


async def test_a_run_stages_in_its_own_table_and_replaces_open_orders(
    url: str, tmp_path: Path
) -> None:
    async with node(url, tmp_path) as pg:
        ended = await pg.run()
        messages = await pg.messages(ended)
        assert ended.status is Status.success, messages
        assert messages[:-1] == DEMO_DETAILS
        assert messages[-1].startswith(COMPLETED)
        assert messages[-1].endswith(" seconds")
        assert pg.seen == messages
        stored = await pg.rows(
            'SELECT "SalesOrder", "Item", "OrderDate"::text, "ConfirmedDeliveryDate"::text, '
            '"OpenQuantity" FROM open_orders ORDER BY "SalesOrder", "Item"'
        )
        expected = sorted((r[0], r[1], r[8], r[10], Decimal(str(r[12]))) for r in demo_rows())
        assert len(stored) == ROWS
        assert stored == expected
        assert await pg.staging_left() == []
        # The run's staging table was its own (named after its id), and so was its session.
        assert "open_orders_staging_" not in " ".join(messages)


async def test_a_run_whose_lease_moved_on_ends_at_the_swap_and_keeps_open_orders(
    url: str, tmp_path: Path
) -> None:
    async with node(url, tmp_path) as pg:
        first = await pg.run()
        assert first.status is Status.success
        stale = pg.lease.epoch
        assert stale == 1
        pg.shrink_source(1_000)
        # This node lost the lease without noticing; another node took it.
        await pg.lease.release()
        other = RunLease(url, "node-b")
        assert await other.acquire()
        try:
            ended = await pg.run(epoch=stale)
        finally:
            await other.release()
        messages = await pg.messages(ended)
        assert ended.status is Status.error
        assert messages[-3:] == [
            "Fetched 1,000 records",
            "Replacing open_orders table...",
            "ERROR: Replace failed - the run lease moved on (epoch 2, this run's 1)",
        ]
        assert await pg.open_orders() == ROWS
        assert await pg.staging_left() == []


async def test_the_shrink_guard_keeps_the_old_set_unless_forced(url: str, tmp_path: Path) -> None:
    async with node(url, tmp_path) as pg:
        assert (await pg.run()).status is Status.success
        pg.shrink_source(700)
        refused = await pg.run()
        lines = await pg.messages(refused)
        assert refused.status is Status.error
        assert lines[-2] == "Fetched 700 records"
        assert lines[-1] == (
            "ERROR: Shrink guard - the source returned 700 records, open_orders holds 1,523 "
            "(below 0.5 of it); open_orders was left as it was. Run with force to replace it "
            "anyway"
        )
        assert await pg.open_orders() == ROWS
        assert await pg.staging_left() == []
        forced = await pg.run(force=True)
        assert forced.status is Status.success
        assert await pg.open_orders() == 700


async def test_a_cancelled_run_ends_as_error_with_the_reason_and_leaves_nothing(
    url: str, tmp_path: Path
) -> None:
    async with node(url, tmp_path) as pg:
        log = await pg.store.create_job_log()
        control = RunControl()
        running = asyncio.create_task(pg.job(delay=30).run(log, force=False, control=control))
        await wait_for_async(
            lambda: "Batch 1/4 imported (500 records)" in pg.seen, "the first batch's line"
        )
        control.reason = "Cancelled by request"
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        ended = await pg.store.job_log(log.id)
        messages = await pg.messages(log)
        assert ended.status is Status.error
        assert messages[-2:] == ["Batch 1/4 imported (500 records)", "ERROR: Cancelled by request"]
        assert await pg.open_orders() == -1
        assert await pg.staging_left() == []


async def test_a_session_ended_by_the_server_is_gone_and_the_write_goes_through_on_retry(
    postgres: PostgresServer, url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    role = urlsplit(url).username
    assert role is not None
    async with node(url, tmp_path, min_size=1, max_size=1) as pg:
        log = await pg.store.create_job_log()
        # The pool's one session is ended by an administrator: the next statement on it fails.
        postgres.terminate_backends(role)
        with pytest.raises(DatabaseGone) as caught:
            await pg.store.add_detail(log.id, "lost")
        assert is_gone(caught.value)
        assert not isinstance(caught.value, psycopg.Error)
        assert "\n" not in str(caught.value)
        # A line written through until_written waits for a new session, then goes through.
        await pg.db.read("SELECT 1")  # the pool's session again
        postgres.terminate_backends(role)
        with caplog.at_level(logging.INFO, logger="service.store.retry"):
            detail = await until_written(
                partial(pg.store.add_detail, log.id, "kept"), what="a line of the test"
            )
        assert detail.message == "kept"
        assert await pg.messages(log) == ["kept"]
        said = [r.getMessage() for r in caplog.records if r.name == "service.store.retry"]
        assert len(said) == 2, said
        assert said[0].startswith("a line of the test waits for the database: ")
        assert said[1] == "a line of the test went through"


async def test_a_stopped_server_delays_a_line_and_never_loses_it(
    postgres: PostgresServer, url: str, tmp_path: Path
) -> None:
    password = urlsplit(url).password
    assert password
    async with node(url, tmp_path, connect_seconds=1.0) as pg:
        log = await pg.store.create_job_log()
        await pg.lease.release()
        postgres.stop()
        try:
            with pytest.raises(DatabaseGone) as caught:
                await pg.store.add_detail(log.id, "refused")
            assert password not in str(caught.value)
            assert url not in str(caught.value)
            line = asyncio.create_task(
                until_written(partial(pg.store.add_detail, log.id, "delayed"), what="a line")
            )
            await asyncio.sleep(1.5)
            assert not line.done()
        finally:
            postgres.start()
        detail = await asyncio.wait_for(line, 30)
        assert detail.message == "delayed"
        assert await pg.messages(log) == ["delayed"]


async def test_the_staging_writer_commits_each_batch_and_stores_what_text_cannot_hold(
    url: str, tmp_path: Path
) -> None:
    columns = [Column("n", "INTEGER"), Column("t", "TEXT")]
    async with node(url, tmp_path) as pg:
        await pg.target.create_staging(7, columns)
        async with pg.target.open_staging(7, len(columns)) as staging:
            await asyncio.to_thread(staging.append, [(1, "a\x00b"), (2, "c\ud800d"), (3, "ok")])
            assert await asyncio.to_thread(staging.try_append, [(4, "more")])
            # A row the table cannot take fails its batch whole, as the store's failure.
            with pytest.raises(DatabaseFailure) as refused:
                await asyncio.to_thread(staging.append, [(5, "x"), ("not a number", "y")])
            assert not isinstance(refused.value, psycopg.Error)
            assert await pg.staging_left() == ["open_orders_staging_7", "joblog staging (run 7)"]
        assert await pg.rows("SELECT n, t FROM open_orders_staging_7 ORDER BY n") == [
            (1, "a\ufffdb"),
            (2, "c\ufffdd"),
            (3, "ok"),
            (4, "more"),
        ]
        # Closed at exit: its session is gone, and a late batch is refused.
        with pytest.raises(StagingClosed):
            staging.append([(6, "late")])
        await pg.target.drop_staging(7)
        assert await pg.staging_left() == []


async def read_with_lock_timeout(db: PgDatabase) -> None:
    """Read open_orders, waiting at most 100 ms for a lock."""
    async with db.transaction() as conn:
        await conn.execute("SET LOCAL lock_timeout = '100ms'")
        await conn.execute("SELECT count(*) FROM open_orders")


async def test_a_lock_held_past_the_lock_timeout_is_busy(url: str, tmp_path: Path) -> None:
    async with node(url, tmp_path) as pg:
        assert (await pg.run()).status is Status.success
        async with connected(url) as other, other.transaction():
            await other.execute("LOCK TABLE open_orders IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(DatabaseBusy) as caught:
                await read_with_lock_timeout(pg.db)
        assert caught.value.sqlstate == "55P03"
        assert is_busy(caught.value)
        # Once the lock is let go, the same read goes through.
        await read_with_lock_timeout(pg.db)
        # A statement the server refuses is the store's failure too, with its SQLSTATE.
        with pytest.raises(DatabaseFailure) as refused:
            await pg.db.read("SELECT no_such_column FROM open_orders")
        assert refused.value.sqlstate == "42703"
        assert not is_busy(refused.value)
        assert not is_full(refused.value)
        assert not is_gone(refused.value)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (psycopg.errors.LockNotAvailable, DatabaseBusy),
        (psycopg.errors.DeadlockDetected, DatabaseBusy),
        (psycopg.errors.SerializationFailure, DatabaseBusy),
        (psycopg.errors.DiskFull, DatabaseFull),
        (psycopg.errors.AdminShutdown, DatabaseGone),
        (psycopg.errors.CannotConnectNow, DatabaseGone),
        (psycopg.errors.IdleSessionTimeout, DatabaseGone),
        (psycopg.OperationalError, DatabaseGone),
        (psycopg_pool.PoolTimeout, DatabaseGone),
        (psycopg_pool.PoolClosed, DatabaseFailure),
        (psycopg.errors.UndefinedColumn, DatabaseFailure),
        (psycopg.errors.QueryCanceled, DatabaseFailure),
    ],
)
def test_psycopg_errors_become_the_stores(
    error: type[psycopg.Error], kind: type[StoreError]
) -> None:
    url = "postgresql://joblog:s3cret-pass@db.example:5432/joblog"
    failure = translated(error(f"it failed for {url}\nDETAIL: (s3cret-pass)"), url)
    assert type(failure) is kind
    assert str(failure) == "it failed for *** DETAIL: (***)"
    assert is_busy(failure) is (kind is DatabaseBusy)
    assert is_full(failure) is (kind is DatabaseFull)
    assert is_gone(failure) is (kind is DatabaseGone)
