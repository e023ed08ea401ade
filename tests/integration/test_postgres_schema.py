"""The job-log schema on a real PostgreSQL 15: created, adopted, and ids in commit order."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from service.store import IncompatibleSchema
from service.store.postgres import INDEXES, apply_schema, build_indexes, index_state
from tests.support.postgres import PostgresServer
from tests.support.rails import rails

pytestmark = pytest.mark.integration

Connection = psycopg.AsyncConnection[Any]
_names = itertools.count(1)


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    """A database of its own for each test, owned by its own role."""
    return postgres.store_database(f"joblog_{next(_names)}")


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[Connection]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


async def rows(conn: Connection, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params)
    return list(await cursor.fetchall())


async def add_log(conn: Connection, name: str, status: int = 0) -> int:
    found = await rows(
        conn,
        "INSERT INTO job_logs (name, status, created_at, updated_at) "
        "VALUES (%s, %s, now(), now()) RETURNING id",
        (name, status),
    )
    return int(found[0][0])


async def test_the_schema_is_created_and_applied_again_unchanged(url: str) -> None:
    async with connected(url) as conn:
        await apply_schema(conn)
        await apply_schema(conn)
        assert await build_indexes(conn)
        for name in INDEXES:
            assert await index_state(conn, name) == "valid"
        tables = await rows(
            conn,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' ORDER BY table_name",
        )
        assert [t for (t,) in tables] == [
            "job_log_counts",
            "job_log_details",
            "job_logs",
            "purge_days",
            "sync_lease",
            "sync_ticks",
        ]
        # The counts follow every insert, status change and delete.
        first = await add_log(conn, "20251215143022")
        second = await add_log(conn, "20251215143022_1")
        await add_log(conn, "20251215143500")
        await conn.execute("UPDATE job_logs SET status = 3 WHERE id = %s", (first,))
        await conn.execute("UPDATE job_logs SET name = 'renamed' WHERE id = %s", (first,))
        await conn.execute("DELETE FROM job_logs WHERE id = %s", (second,))
        assert await rows(conn, "SELECT status, n FROM job_log_counts ORDER BY status") == [
            (0, 1),
            (3, 1),
        ]
        # The trigram index answers a case-insensitive substring search, for every letter.
        await conn.execute(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (%s, 'ERROR: Connection failed - LÖSCHSPERRE on CASQL2', now(), now())",
            (first,),
        )
        await conn.execute("SET enable_seqscan = off")
        plan = await rows(
            conn,
            "EXPLAIN SELECT id FROM job_log_details WHERE message ILIKE %s",
            ("%löschsperre%",),
        )
        assert "index_job_log_details_on_message_trgm" in " ".join(p for (p,) in plan)
        found = await rows(
            conn, "SELECT count(*) FROM job_log_details WHERE message ILIKE %s", ("%löschsperre%",)
        )
        assert found == [(1,)]


async def test_a_database_made_by_the_rails_migrations_is_adopted_as_it_is(url: str) -> None:
    rails(url, "migrate")
    rails(url, "seed")
    async with connected(url) as conn:
        await apply_schema(conn)
        assert await build_indexes(conn)
        # The counts were filled from the rows there; Rails' own indexes and key are kept.
        assert await rows(conn, "SELECT status, n FROM job_log_counts ORDER BY status") == [
            (1, 1),
            (2, 1),
            (3, 2),
        ]
        indexes = await rows(
            conn, "SELECT indexname FROM pg_indexes WHERE tablename = 'job_logs' ORDER BY 1"
        )
        assert [i for (i,) in indexes] == [
            "index_job_logs_on_created_at",
            "index_job_logs_on_name",
            "index_job_logs_on_status",
            "index_job_logs_on_status_and_created_at",
            "job_logs_pkey",
        ]
        keys = await rows(
            conn,
            "SELECT confrelid::regclass::text FROM pg_constraint "
            "WHERE conrelid = 'job_log_details'::regclass AND contype = 'f'",
        )
        assert keys == [("job_logs",)]
        (last_before,) = await rows(conn, "SELECT max(id) FROM job_log_details")
    # Rails writes through the id triggers (its INSERT … RETURNING "id" gets the new id) and
    # reads its rows back valid, timestamps to the microsecond.
    rails(url, "append", "20251215145022", "Job completed successfully - Total: 3 records")
    dumped = json.loads(rails(url, "dump"))
    running = next(log for log in dumped if log["name"] == "20251215145022")
    assert running["status"] == "success"
    assert running["valid"]
    assert [d["message"] for d in running["details"]] == [
        "Job completed successfully - Total: 3 records"
    ]
    first = next(log for log in dumped if log["name"] == "20251215143022")
    assert [d["created_at"] for d in first["details"]] == [
        "2025-12-15T14:30:22.000000Z",
        "2025-12-15T14:30:23.000000Z",
        "2025-12-15T14:30:24.500000Z",
    ]
    async with connected(url) as conn:
        appended = await rows(
            conn,
            "SELECT d.id, d.message FROM job_log_details AS d JOIN job_logs AS l "
            "ON l.id = d.job_log_id WHERE l.name = '20251215145022'",
        )
        assert len(appended) == 1
        assert appended[0][0] > last_before[0]
        assert await rows(conn, "SELECT status, n FROM job_log_counts ORDER BY status") == [
            (1, 0),
            (2, 1),
            (3, 3),
        ]


async def test_a_table_the_service_cannot_use_is_refused(url: str) -> None:
    async with connected(url) as conn:
        await conn.execute(
            "CREATE TABLE job_logs (id bigserial PRIMARY KEY, name varchar NOT NULL)"
        )
        with pytest.raises(IncompatibleSchema, match="job_logs lacks column"):
            await apply_schema(conn)
        assert await rows(conn, "SELECT to_regclass('job_log_counts')") == [(None,)]


async def test_an_interrupted_index_build_is_built_again(
    postgres: PostgresServer, url: str
) -> None:
    async with connected(url) as conn:
        await apply_schema(conn)
        name = "index_job_log_details_on_message_trgm"
        # What a CREATE INDEX CONCURRENTLY cut off midway leaves behind: an INVALID index.
        await conn.execute(INDEXES[name])
        postgres.psql(
            f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{name}'::regclass;",
            database=url.rsplit("/", 1)[1],
        )
        assert await index_state(conn, name) == "invalid"
        assert await build_indexes(conn)
        assert await index_state(conn, name) == "valid"


WRITERS = 4
ROWS_PER_WRITER = 400


async def follow_while_writing(url: str) -> tuple[set[int], set[int], list[int]]:
    """Writers on connections of their own insert lines in small transactions, each doing
    0-4 ms of other work before its commit; a reader follows ``id > cursor`` meanwhile.
    Returns every id the table holds, the ids the reader saw, and their order."""
    async with connected(url) as conn:
        log = await add_log(conn, "20251215143022")
    done = asyncio.Event()
    seen: list[int] = []

    async def write(seed: int) -> None:
        chance = random.Random(seed)
        async with connected(url) as conn:
            written = 0
            while written < ROWS_PER_WRITER:
                async with conn.transaction():
                    for _ in range(chance.randint(1, 3)):
                        await conn.execute(
                            "INSERT INTO job_log_details "
                            "(job_log_id, message, created_at, updated_at) "
                            "VALUES (%s, %s, now(), now())",
                            (log, f"Batch {written} imported (500 records)"),
                        )
                        written += 1
                    await asyncio.sleep(chance.uniform(0, 0.004))

    async def follow() -> None:
        cursor = 0
        async with connected(url) as conn:
            while True:
                finished = done.is_set()
                found = await rows(
                    conn, "SELECT id FROM job_log_details WHERE id > %s ORDER BY id", (cursor,)
                )
                for (found_id,) in found:
                    seen.append(found_id)
                    cursor = found_id
                if finished:
                    return
                await asyncio.sleep(0.0005)

    following = asyncio.create_task(follow())
    await asyncio.gather(*(write(seed) for seed in range(WRITERS)))
    done.set()
    await following
    async with connected(url) as conn:
        held = {i for (i,) in await rows(conn, "SELECT id FROM job_log_details")}
    return held, set(seen), seen


async def test_ids_rise_in_commit_order_so_following_them_loses_nothing(url: str) -> None:
    async with connected(url) as conn:
        await apply_schema(conn)
    held, seen, order = await follow_while_writing(url)
    assert len(held) >= WRITERS * ROWS_PER_WRITER
    assert held - seen == set(), f"{len(held - seen)} lines never seen"
    assert order == sorted(order)
    assert len(order) == len(seen)


async def test_without_the_commit_order_a_follower_loses_lines(url: str) -> None:
    """The same writers and reader on the tables the Rails migrations make: lines are lost.
    What the test above would see, were the ids not in commit order."""
    rails(url, "migrate")
    held, seen, _ = await follow_while_writing(url)
    assert len(held) >= WRITERS * ROWS_PER_WRITER
    assert held - seen, "no line was lost without the commit order: the test cannot tell"
