"""The sync's run lock across nodes on a real PostgreSQL 15: a lease, its fencing, and the
claims of scheduled slots."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.store.postgres import (
    LeaseLost,
    RunLease,
    claim_slot,
    database_now,
    fence,
)
from tests.support.postgres import PostgresServer, connected, schema_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
_names = itertools.count(1)
# How long a loaded CI machine may take for what takes milliseconds here.
PATIENCE = 10.0


@pytest.fixture
async def url(postgres: PostgresServer) -> str:
    """A database of its own for each test, with the schema applied."""
    return await schema_database(postgres, f"lease_{next(_names)}")


@contextmanager
def holder(url: str, node: str, idle_seconds: float) -> Iterator[subprocess.Popen[str]]:
    """A node holding the lease in a process of its own; killed at the end whatever happened."""
    with subprocess.Popen(
        [sys.executable, "-m", "tests.support.lease_holder", url, node, str(idle_seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().startswith("held "), "the holder has no lease"
            yield process
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
            process.wait(timeout=PATIENCE)


async def take_when_free(lease: RunLease, within: float = PATIENCE) -> float:
    """Try every 20 ms until ``lease`` is taken; the seconds it took."""
    started = time.monotonic()
    while not await lease.acquire():
        assert time.monotonic() - started < within, "the lease never became free"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_one_node_holds_the_lease_and_each_take_raises_the_epoch(url: str) -> None:
    first, second = RunLease(url, "node-a"), RunLease(url, "node-b")
    try:
        assert await first.acquire()
        assert first.epoch == 1
        assert not await second.acquire()
        assert not second.held
        assert await first.ping()
        await first.release()
        assert not first.held
        assert await second.acquire()
        assert second.epoch == 2
        async with connected(url) as conn:
            # The run that held epoch 1 can commit nothing now; the holder's run can.
            with pytest.raises(LeaseLost, match="epoch 2, this run's 1"):
                async with conn.transaction():
                    await fence(conn, 1)
            async with conn.transaction():
                await fence(conn, 2)
            cursor = await conn.execute("SELECT epoch, node FROM sync_lease")
            assert await cursor.fetchall() == [(2, "node-b")]
    finally:
        await first.release()
        await second.release()


async def test_a_killed_node_frees_the_lease_at_once(url: str) -> None:
    taker = RunLease(url, "node-b", idle_seconds=30)
    try:
        with holder(url, "node-a", idle_seconds=30) as process:
            assert not await taker.acquire()
            process.kill()
            process.wait(timeout=PATIENCE)
            # Far below the 30 s idle timeout: the server saw the session end.
            assert await take_when_free(taker) < PATIENCE
        assert taker.epoch == 2
    finally:
        await taker.release()


async def test_a_hung_node_loses_the_lease_after_its_idle_timeout_and_notices(url: str) -> None:
    taker = RunLease(url, "node-b", idle_seconds=1)
    try:
        with holder(url, "node-a", idle_seconds=1) as process:
            os.kill(process.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            await take_when_free(taker)
            # Its session lived until the server ended it for idling: the lease's length.
            assert time.monotonic() - stopped >= 0.9
            # Resumed, the hung node's next ping fails: it knows it lost the lease.
            os.kill(process.pid, signal.SIGCONT)
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "lost"
            assert process.wait(timeout=PATIENCE) == 3
        async with connected(url) as conn:
            with pytest.raises(LeaseLost):
                async with conn.transaction():
                    await fence(conn, 1)
    finally:
        await taker.release()


async def test_a_cut_lock_session_is_a_lost_lease(postgres: PostgresServer, url: str) -> None:
    holding, taker = RunLease(url, "node-a"), RunLease(url, "node-b")
    try:
        assert await holding.acquire()
        postgres.psql(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = 'joblog run lease (node-a)';",
            database=url.rsplit("/", 1)[1],
        )
        assert not await holding.ping()
        assert not holding.held
        assert await take_when_free(taker) < PATIENCE
    finally:
        await holding.release()
        await taker.release()


async def test_every_node_ticks_but_a_slot_is_claimed_once(url: str) -> None:
    async with connected(url) as conn:
        now = await database_now(conn)
    assert now.tzinfo is None
    assert abs(now.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)
    slot = now.replace(second=0, microsecond=0)

    async def claim(node: str) -> bool:
        async with connected(url) as conn:
            return await claim_slot(conn, slot, node)

    won = await asyncio.gather(*(claim(f"node-{n}") for n in range(5)))
    assert sorted(won) == [False, False, False, False, True]
    async with connected(url) as conn:
        assert await claim_slot(conn, slot + timedelta(minutes=5), "node-0")
        assert not await claim_slot(conn, slot, "node-0")
