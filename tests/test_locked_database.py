"""Another process holds the database longer than the busy timeout: the run's lines wait and
keep their order, none is dropped, and its end is written once the lock clears."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from pathlib import Path

from service.settings import Settings
from service.sources.demo import ROWS
from service.store import job_log_with_details
from service.wire import Status
from tests.support.api import ADMIN, MakeClient
from tests.support.sync import DEMO_DETAILS, sync_service, table_rows, tables, wait_ended
from tests.support.wait import wait_for_async

_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
print("ready", flush=True)
while sys.stdin.readline().strip() == "lock":
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    print("released", flush=True)
"""


@asynccontextmanager
async def lock_holder(
    database: Path,
) -> AsyncIterator[Callable[[], AbstractAsyncContextManager[None]]]:
    """Another process, started ahead, that takes the database's write lock at once when asked
    (``async with hold():``) and keeps it until the block ends."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLDER,
        str(database),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    stdin, stdout = holder.stdin, holder.stdout
    assert stdin is not None
    assert stdout is not None
    assert await stdout.readline() == b"ready\n"

    @asynccontextmanager
    async def hold() -> AsyncIterator[None]:
        stdin.write(b"lock\n")
        await stdin.drain()
        assert await stdout.readline() == b"locked\n"
        try:
            yield
        finally:
            stdin.write(b"release\n")
            await stdin.drain()
            assert await stdout.readline() == b"released\n"

    try:
        yield hold
    finally:
        stdin.write(b"quit\n")
        stdin.close()
        await holder.wait()


def integrity(database: Path) -> str:
    with closing(sqlite3.connect(database)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


async def test_a_lock_shorter_than_the_run_timeout_delays_the_run_and_loses_nothing(
    settings: Settings, database_path: Path
) -> None:
    settings = settings.model_copy(
        update={"database_busy_timeout_seconds": 0.2, "demo_delay_seconds": 0.2}
    )
    async with sync_service(settings) as service, lock_holder(database_path) as hold:
        log = await service.scheduler.trigger()
        await service.until("Batch 1/4")
        async with hold():
            # Longer than the busy timeout several times over: the run cannot write meanwhile.
            await asyncio.sleep(2.0)
            during = [d.message for d in (await job_log_with_details(service.db, log.id)).details]
            assert (await job_log_with_details(service.db, log.id)).status is Status.processing
        final = await wait_ended(service.db, log.id)
    messages = [d.message for d in final.details]
    assert final.status is Status.success, messages
    assert messages[:-1] == DEMO_DETAILS
    assert messages[: len(during)] == during
    assert len(during) < len(messages)
    assert [d.message for d in service.seen] == messages
    assert len(table_rows(database_path)) == ROWS
    assert integrity(database_path) == "ok"


async def test_a_lock_that_outlasts_the_run_timeout_ends_it_as_error_once_it_clears(
    settings: Settings, database_path: Path
) -> None:
    settings = settings.model_copy(
        update={
            "database_busy_timeout_seconds": 0.2,
            "demo_delay_seconds": 0.2,
            "sync_timeout_seconds": 1.5,
        }
    )
    async with sync_service(settings) as service, lock_holder(database_path) as hold:
        log = await service.scheduler.trigger()
        await service.until("Batch 1/4")
        async with hold():
            await asyncio.sleep(3.0)  # the run times out meanwhile; it cannot write its end
            held = await job_log_with_details(service.db, log.id)
            assert held.status is Status.processing
        run = service.scheduler
        final = await wait_ended(service.db, log.id)
        # The scheduler lets the run go once its end is committed (a moment later).
        await wait_for_async(
            lambda: run.running is None or run.running.id != log.id, "the run let go"
        )
    messages = [d.message for d in final.details]
    assert final.status is Status.error
    assert messages[-1] == "ERROR: Timed out after 1.5 seconds"
    # Every line the run said before its end is there, once, in order.
    assert messages[:-1] == DEMO_DETAILS[: len(messages) - 1]
    assert "Batch 1/4 imported (500 records)" in messages
    assert [d.message for d in service.seen] == messages
    assert "open_orders_staging" not in tables(database_path)
    assert integrity(database_path) == "ok"


async def test_a_run_asked_for_while_the_database_is_locked_is_a_503(
    make_client: MakeClient, database_path: Path
) -> None:
    client = await make_client(database_busy_timeout_seconds=0.2)
    async with lock_holder(database_path) as hold, hold():
        response = await client.post("/api/job_logs", headers=ADMIN)
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        body = await response.json()
        assert "database is locked" in body["error"]
        reads = await client.get("/api/job_logs")
        assert reads.status == 200
    assert (await client.post("/api/job_logs", headers=ADMIN)).status == 202
