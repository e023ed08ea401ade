"""Every node's commits wake this node's readers, on a real PostgreSQL 15: LISTEN/NOTIFY, the
wake after each (re)connect, and the poll that covers anything missed."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from service.store.postgres import Wake, Wakeups, notify
from tests.support.postgres import PostgresServer, connected, postgres_server, schema_database

pytestmark = pytest.mark.integration

_names = itertools.count(1)
# How long a loaded CI machine may take for what takes milliseconds here.
PATIENCE = 20.0


class Rollback(Exception):
    """Ends a transaction without committing it."""


async def store(postgres: PostgresServer) -> str:
    return await schema_database(postgres, f"wake_{next(_names)}")


@asynccontextmanager
async def listening(
    url: str, poll_seconds: float = 30.0
) -> AsyncIterator[tuple[Wakeups, list[Wake]]]:
    wakes: list[Wake] = []
    wakeups = Wakeups(url, wakes.append, poll_seconds=poll_seconds)
    wakeups.start()
    try:
        await until(lambda: any(w.reason == "listening" for w in wakes), "listening")
        yield wakeups, wakes
    finally:
        await wakeups.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < PATIENCE, f"never: {what}"
        await asyncio.sleep(0.005)


async def write_run(conn: psycopg.AsyncConnection[Any], name: str) -> tuple[int, int]:
    """A run and its first line in one transaction that notifies; their ids."""
    cursor = await conn.execute(
        "INSERT INTO job_logs (name, status, created_at, updated_at) "
        "VALUES (%s, 1, now(), now()) RETURNING id",
        (name,),
    )
    (log_id,) = await cursor.fetchone() or (0,)
    cursor = await conn.execute(
        "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
        "VALUES (%s, 'Job started - SyncOpenOrdersJob', now(), now()) RETURNING id",
        (log_id,),
    )
    (detail_id,) = await cursor.fetchone() or (0,)
    await notify(conn, log_id=log_id, detail_id=detail_id)
    return log_id, detail_id


def notified(wakes: list[Wake]) -> list[Wake]:
    return [wake for wake in wakes if wake.reason == "notified"]


async def rolled_back(conn: psycopg.AsyncConnection[Any]) -> None:
    """A run written and notified in a transaction that then rolls back."""
    async with conn.transaction():
        await write_run(conn, "20251215143022")
        raise Rollback


async def test_a_commit_wakes_every_listening_node_with_its_ids(postgres: PostgresServer) -> None:
    url = await store(postgres)
    async with listening(url) as (_, first), listening(url) as (_, second):
        async with connected(url) as conn:
            # A transaction that rolls back wakes nobody.
            with pytest.raises(Rollback):
                await rolled_back(conn)
            async with conn.transaction():
                log_id, detail_id = await write_run(conn, "20251215143500")
        await until(lambda: bool(notified(first) and notified(second)), "both notified")
        for wakes in (first, second):
            # Commit order: the rolled-back one would have come first; it never came.
            assert notified(wakes) == [Wake("notified", log_id, detail_id)]
        # A notification this service did not send still wakes the readers.
        async with connected(url) as conn:
            await conn.execute("NOTIFY joblog, 'vacuumed'")
        await until(lambda: Wake("notified") in first, "a foreign notification")


async def test_without_commits_the_readers_are_woken_to_poll(postgres: PostgresServer) -> None:
    url = await store(postgres)
    async with listening(url, poll_seconds=0.1) as (_, wakes):
        await until(lambda: sum(w.reason == "poll" for w in wakes) >= 3, "three polls")


async def test_after_a_database_restart_it_listens_again_and_wakes_the_readers() -> None:
    with postgres_server() as server:
        url = await store(server)
        async with listening(url) as (wakeups, wakes):
            server.stop()
            await until(lambda: not wakeups.listening, "the session to end")
            # While it is down, the readers keep polling (and find the database down).
            await until(lambda: wakes[-1].reason == "poll", "a poll while down")
            server.start()
            await until(lambda: wakeups.connects == 2, "listening again")
            # LISTEN first, then a wake: what was committed meanwhile is read now.
            assert wakes[-1].reason == "listening"
            async with connected(url) as conn, conn.transaction():
                log_id, detail_id = await write_run(conn, "20251215144000")
            await until(lambda: Wake("notified", log_id, detail_id) in wakes, "notified")
