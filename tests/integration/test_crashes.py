"""Crashes of real server processes: kill -9 at each stage of a sync, the source's server dying
mid-fetch, and SIGTERM with 1,000 open streams while a run is under way or stuck in a driver.

After each fault the database must hold the complete old or the complete new open_orders set,
no staging table, every run closed with its reason, and an event stream must resume across the
restart with exactly the lines it missed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.support.faults import (
    ERROR,
    PROCESSING,
    SERVICE_TABLES,
    SUCCESS,
    OtherWriter,
    connected_to,
    details_after,
    gather_limited,
    has_message,
    messages,
    query,
    raise_open_files,
    slow,
    start_run,
    status_of,
    wait_ended,
    wait_for_cpu,
    wait_until_stuck,
)
from tests.support.odbc import freetds, require_driver
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.server import ServerProcess, run_service
from tests.support.silent import silent_server
from tests.support.sse import SSEEvent, SSEReader
from tests.support.sync import table_rows, tables
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

RESTARTED = "ERROR: Interrupted - service restarted"
NEW = "NEWSET"
"""The value every row of the new set has in its last column, CreatedBy."""


# --- kill -9 at each stage of a run ------------------------------------------------------------


@dataclass(frozen=True)
class KillPoint:
    """Where in a run the kill lands, how the test gets it there, and what must survive it."""

    delay: str
    """DEMO_DELAY_SECONDS: the pause before each batch after the first."""
    reached: str
    """The detail that says the run is at the point (or just before it)."""
    plant_before: str | None = None
    """SQL run before the run starts (slow SQL the run will hit)."""
    plant_at: str | None = None
    """SQL run once ``reached`` is there (slow SQL the run is about to hit)."""
    busy: bool = False
    """Kill only once the process has burnt CPU in the planted SQL (it is inside it)."""
    not_yet: str = ""
    """A detail that must not be there at the kill: the run had not got past the point."""
    staged: int | None = None
    """Rows in the staging table right after the kill; None when there is no staging table."""
    keeps_new: bool = False
    """The new set is in place after the restart (else the old one)."""


POINTS = {
    # The run waits in the source's fetch of batch 3 (the demo source's pause).
    "during-the-fetch": KillPoint(
        delay="2", reached="Batch 2/4 imported", not_yet="Batch 3/4", staged=1000
    ),
    # Batch 2's insert into the staging table is under way: a trigger planted on the staging
    # table makes each row take ~10 ms, so the kill lands inside that write transaction.
    "during-staging": KillPoint(
        delay="2",
        reached="Batch 1/4 imported",
        plant_at=f"CREATE TRIGGER slow_staging AFTER INSERT ON open_orders_staging "
        f"BEGIN SELECT {slow()}; END",
        busy=True,
        not_yet="Batch 2/4",
        staged=500,
    ),
    # Inside the swap's transaction: open_orders is dropped and staging renamed (uncommitted),
    # and the swap is rebuilding an index on open_orders that is slow for the new rows only.
    "inside-the-swap": KillPoint(
        delay="0",
        reached="Replacing open_orders table...",
        plant_before=f"CREATE INDEX slow_swap ON open_orders ({slow(f'CreatedBy = {NEW!r}')})",
        busy=True,
        not_yet="Job completed",
        staged=1523,
    ),
    # The swap has committed; the line saying so is being written (slowed by a trigger).
    "after-the-swap": KillPoint(
        delay="0",
        reached="Replacing open_orders table...",
        plant_before="CREATE TRIGGER slow_completion AFTER INSERT ON job_log_details "
        "WHEN NEW.message LIKE 'Job completed%' "
        f"BEGIN SELECT count(*) FROM open_orders WHERE {slow('1 + 0 * rowid')} < 0; END",
        busy=True,
        not_yet="Job completed",
        keeps_new=True,
    ),
}
UNPLANT = (
    "DROP TRIGGER IF EXISTS slow_staging",
    "DROP INDEX IF EXISTS slow_swap",
    "DROP TRIGGER IF EXISTS slow_completion",
)


def make_next_set_distinguishable(demo_source: Path) -> None:
    """Every row the demo source serves from now on ends in ``NEW``."""
    with closing(sqlite3.connect(demo_source)) as conn:
        conn.execute('UPDATE open_order_lines SET "CreatedBy" = ?', (NEW,))
        conn.commit()


def as_new_set(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return [(*row[:-1], NEW) for row in rows]


def staged_rows(database: Path) -> int | None:
    if "open_orders_staging" not in tables(database):
        return None
    return int(query(database, "SELECT count(*) FROM open_orders_staging")[0][0])


async def record(reader: SSEReader, into: list[SSEEvent]) -> None:
    """Keep the events of a stream until it breaks (the server was killed)."""
    try:
        while (event := await reader.next_event()) is not None:
            into.append(event)
    except aiohttp.ClientError:
        pass


def detail_ids(events: list[SSEEvent]) -> list[int]:
    return [int(e.id) for e in events if e.type == "detail" and e.id is not None]


@pytest.mark.parametrize("point", list(POINTS), ids=list(POINTS))
async def test_kill_9_leaves_one_complete_set_and_a_stream_resumes_exactly(
    tmp_path: Path, point: str
) -> None:
    at = POINTS[point]
    database = tmp_path / "data" / "joblog.sqlite3"
    env = {"DATABASE_PATH": str(database), "SYNC_ON_START": "false", "SYNC_INTERVAL_SECONDS": "0"}
    first = run_service(tmp_path, "run-once", DEMO_DELAY_SECONDS="0", DATABASE_PATH=str(database))
    assert first.returncode == 0, first.stderr
    old_set = table_rows(database)
    assert len(old_set) == 1523
    make_next_set_distinguishable(database.with_name("demo-source.sqlite3"))
    writer = OtherWriter(database)
    if at.plant_before:
        writer.execute(at.plant_before)

    (tmp_path / "killed").mkdir()
    async with aiohttp.ClientSession() as session:
        with ServerProcess(tmp_path / "killed", DEMO_DELAY_SECONDS=at.delay, **env) as server:
            await asyncio.to_thread(server.wait_ready)
            assert server.process is not None
            stream = await session.get(f"{server.url}/api/events")
            reader = SSEReader(stream)
            assert await reader.read_line() == "retry: 2000"
            before_kill: list[SSEEvent] = []
            recording = asyncio.create_task(record(reader, before_kill))
            killed = int(start_run(server.url)["id"])

            def reach_the_point() -> None:
                wait_for(lambda: has_message(database, killed, at.reached), at.reached)
                if at.plant_at:
                    writer.execute(at.plant_at)
                if at.busy:
                    assert server.process is not None
                    wait_for_cpu(server.process.pid, 0.5, "the run busy in the planted SQL")

            await asyncio.to_thread(reach_the_point)
            assert not has_message(database, killed, at.not_yet), messages(database, killed)
            code, _ = server.stop(signal.SIGKILL)
            assert code == -signal.SIGKILL
            async with asyncio.timeout(10):
                await recording
            stream.close()

        assert staged_rows(database) == at.staged
        for sql in UNPLANT:
            writer.execute(sql)
        writer.close()
        last_seen = before_kill[-1].last_event_id if before_kill else ""
        assert detail_ids(before_kill), "the stream saw nothing of the run before the kill"

        (tmp_path / "restarted").mkdir()
        with ServerProcess(tmp_path / "restarted", SSE_PING_SECONDS="0.5", **env) as again:
            await asyncio.to_thread(again.wait_ready)
            assert messages(database, killed)[-1] == RESTARTED
            runs = query(database, "SELECT status FROM job_logs ORDER BY id")
            assert [status for (status,) in runs] == [SUCCESS, ERROR]
            assert tables(database) == SERVICE_TABLES
            assert table_rows(database) == (as_new_set(old_set) if at.keeps_new else old_set)

            resumed = await session.get(
                f"{again.url}/api/events", headers={"Last-Event-ID": last_seen}
            )
            assert resumed.status == 200
            async with asyncio.timeout(10):
                after = await SSEReader(resumed).read_to_ping()
            resumed.close()
            code, _ = again.stop()
            assert code == 0, again.logs()

    assert detail_ids(after) == [i for i, _ in details_after(database, int(last_seen))]
    assert [e.json()["message"] for e in after if e.type == "detail"][-1] == RESTARTED
    final = [e.json() for e in after if e.type == "job_log" and e.json()["id"] == killed]
    assert [log["status"] for log in final] == ["error"]
    assert after[-1].type == "job_log", "the run's final state comes after its last line"
    assert status_of(database, killed) == ERROR


# --- the source's server dies mid-fetch --------------------------------------------------------

ORDERS_SQL = """
DROP VIEW IF EXISTS vwZSDOrder_Advanced;
DROP TABLE IF EXISTS order_lines;
CREATE TABLE order_lines AS
  SELECT g AS "OrderNumber",
         'Customer ' || (g % 37) AS "Customer",
         (g % 50)::numeric(12, 3) AS "Quantity",
         ((g % 13) * 1.25)::float8 AS "Price",
         date '2025-12-01' + (g % 28) AS "OrderDate",
         '{mark}' AS "Note"
  FROM generate_series(1, {rows}) AS g;
CREATE VIEW vwZSDOrder_Advanced AS SELECT * FROM order_lines;
GRANT SELECT ON order_lines, vwZSDOrder_Advanced TO sync_reader;
"""
BIG = 400_000
"""Rows of the set being fetched when the fault strikes: 800 batches, far from done."""


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as running:
        yield running


def load(postgres: PostgresServer, rows: int, mark: str) -> None:
    postgres.psql(ORDERS_SQL.format(rows=rows, mark=mark))


def accepts_connections(postgres: PostgresServer) -> bool:
    try:
        return postgres.psql("SELECT 1;").strip() == "1"
    except AssertionError:
        return False


def backend_of(postgres: PostgresServer) -> int:
    """The process id of the reader's one session (the service's connection)."""
    pids = postgres.psql(
        f"SELECT pid FROM pg_stat_activity WHERE usename = '{postgres.user}';"
    ).split()
    assert len(pids) == 1, pids
    return int(pids[0])


SOURCE_FAULTS: dict[str, Callable[[PostgresServer], None]] = {
    # pg_ctl stop -m fast: the server ends every session and shuts down.
    "server-stopped": lambda pg: pg.stop(),
    # An administrator ends the session; the server stays up.
    "backend-terminated": lambda pg: pg.terminate_backends(),
    # The session's process dies: the server drops every session and recovers by itself.
    "backend-killed": lambda pg: os.kill(backend_of(pg), signal.SIGKILL),
}


@pytest.mark.parametrize("fault", list(SOURCE_FAULTS), ids=list(SOURCE_FAULTS))
def test_the_source_dying_mid_fetch_keeps_the_old_set(
    postgres: PostgresServer, tmp_path: Path, fault: str
) -> None:
    if not postgres.running():
        postgres.start()
    database = tmp_path / "data" / "joblog.sqlite3"
    load(postgres, 3_000, "old")
    env = {"SOURCE_ODBC": postgres.odbc(), "SYNC_ON_START": "false", "SYNC_INTERVAL_SECONDS": "0"}
    assert "UseDeclareFetch=1;Fetch=500" in env["SOURCE_ODBC"]
    with ServerProcess(tmp_path, **env) as server:
        server.wait_ready()
        assert wait_ended(database, start_run(server.url)["id"]) == SUCCESS
        old_set = table_rows(database)
        assert len(old_set) == 3_000

        load(postgres, BIG, "big")
        failed = int(start_run(server.url)["id"])
        wait_for(lambda: has_message(database, failed, "Batch 3/800 imported"), "batch 3")
        SOURCE_FAULTS[fault](postgres)
        assert wait_ended(database, failed) == ERROR
        lines = messages(database, failed)
        assert not has_message(database, failed, "Fetched "), lines
        assert table_rows(database) == old_set
        assert tables(database) == SERVICE_TABLES

        if not postgres.running():
            postgres.start()
        wait_for(lambda: accepts_connections(postgres), "PostgreSQL accepts connections again")
        load(postgres, 2_000, "new")
        again = int(start_run(server.url)["id"])
        assert wait_ended(database, again) == SUCCESS, messages(database, again)
        code, _ = server.stop()
        logs = server.logs()
    assert code == 0, logs
    assert lines[-1].startswith("ERROR: Fetch failed - ["), lines[-1]
    assert postgres.password not in "\n".join(lines) + logs
    assert "PWD" not in "\n".join(lines) + logs
    new_set = table_rows(database)
    assert len(new_set) == 2_000
    assert {row[-1] for row in new_set} == {"new"}
    print(f"{fault}: {lines[-1]}")


# --- SIGTERM with 1,000 open streams and a run in progress --------------------------------------

SHUTTING_DOWN = "ERROR: Interrupted - service shutting down"
STREAMS = 1000


def psqlodbc(port: int) -> str:
    """A psqlODBC connection string to a server on loopback at ``port``."""
    require_driver("PostgreSQL Unicode", "odbc-postgresql")
    return (
        f"DRIVER={{PostgreSQL Unicode}};SERVER=127.0.0.1;PORT={port};DATABASE=orders;"
        "UID=sync_reader;PWD=s3cret-Pa55;UseDeclareFetch=1;Fetch=500"
    )


@dataclass
class Stuck:
    """The service's settings for one case, and how to wait until its run is where it should be."""

    env: dict[str, str]
    reached: Callable[[Path, int], None]


def stuck_case(case: str, stack: ExitStack, request: pytest.FixtureRequest) -> Stuck:
    if case == "demo-between-batches":

        def between_batches(database: Path, run: int) -> None:
            wait_for(lambda: has_message(database, run, "Batch 1/4 imported"), "batch 1")

        return Stuck({"DEMO_DELAY_SECONDS": "30"}, between_batches)
    if case in ("freetds-login-to-a-silent-server", "psqlodbc-login-to-a-silent-server"):
        port = stack.enter_context(silent_server())
        odbc = freetds(port) if case.startswith("freetds") else psqlodbc(port)

        def in_login(database: Path, run: int) -> None:
            wait_for(lambda: has_message(database, run, "Connecting to "), "connecting")
            wait_for(lambda: connected_to(port), "the driver connected to the silent server")

        return Stuck({"SOURCE_ODBC": odbc, "SOURCE_LOGIN_TIMEOUT": "120"}, in_login)
    assert case == "psqlodbc-fetch-from-a-suspended-backend"
    postgres: PostgresServer = request.getfixturevalue("postgres")
    if not postgres.running():
        postgres.start()
    load(postgres, BIG, "big")
    suspended: list[int] = []

    def resume() -> None:
        for pid in suspended:
            os.kill(pid, signal.SIGCONT)

    stack.callback(resume)

    def in_fetch(database: Path, run: int) -> None:
        wait_for(lambda: has_message(database, run, "Batch 3/800 imported"), "batch 3")
        suspended.append(backend_of(postgres))
        os.kill(suspended[0], signal.SIGSTOP)
        wait_until_stuck(database, run)

    return Stuck({"SOURCE_ODBC": postgres.odbc(), "SOURCE_QUERY_TIMEOUT": "300"}, in_fetch)


STUCK_CASES = [
    "demo-between-batches",
    "freetds-login-to-a-silent-server",
    "psqlodbc-login-to-a-silent-server",
    "psqlodbc-fetch-from-a-suspended-backend",
]


@pytest.mark.parametrize("case", STUCK_CASES)
async def test_sigterm_with_1000_streams_and_a_stuck_run_exits_0_within_5_s(
    tmp_path: Path, case: str, request: pytest.FixtureRequest
) -> None:
    raise_open_files(2 * STREAMS + 500)
    database = tmp_path / "data" / "joblog.sqlite3"
    with ExitStack() as stack:
        stuck = stuck_case(case, stack, request)
        server = stack.enter_context(
            ServerProcess(
                tmp_path,
                SYNC_ON_START="false",
                SYNC_INTERVAL_SECONDS="0",
                SSE_PING_SECONDS="300",
                **stuck.env,
            )
        )
        await asyncio.to_thread(server.wait_ready)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def open_stream() -> aiohttp.ClientResponse:
                stream = await session.get(f"{server.url}/api/events")
                assert stream.status == 200
                assert (await stream.content.readline()) == b"retry: 2000\n"
                return stream

            streams = await gather_limited([open_stream] * STREAMS, at_once=100)
            run = int(start_run(server.url)["id"])
            await asyncio.to_thread(stuck.reached, database, run)
            assert status_of(database, run) == PROCESSING
            try:
                code, seconds = await asyncio.to_thread(server.stop, signal.SIGTERM, 6)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{case}: still running 6 s after SIGTERM") from None
            async with asyncio.timeout(5):
                ended = await asyncio.gather(
                    *(s.content.read() for s in streams), return_exceptions=True
                )
        logs = server.logs()
    print(f"{case}: exit {code} after {seconds:.2f} s")
    assert code == 0, logs
    assert seconds < 5, logs
    assert [e for e in ended if isinstance(e, BaseException)] == []
    assert messages(database, run)[-1] == SHUTTING_DOWN
    assert status_of(database, run) == ERROR
    assert tables(database) <= SERVICE_TABLES


def test_a_run_timed_out_in_a_fetch_from_a_suspended_source_leaves_the_server_answering(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The driver call stays blocked after the run's timeout; the event loop must not wait."""
    database = tmp_path / "data" / "joblog.sqlite3"
    with ExitStack() as stack:
        stuck = stuck_case("psqlodbc-fetch-from-a-suspended-backend", stack, request)
        env = {**stuck.env, "SYNC_TIMEOUT_SECONDS": "3"}
        server = stack.enter_context(
            ServerProcess(tmp_path, SYNC_ON_START="false", SYNC_INTERVAL_SECONDS="0", **env)
        )
        server.wait_ready()
        run = int(start_run(server.url)["id"])
        stuck.reached(database, run)
        wait_for(lambda: status_of(database, run) == ERROR, "the run's timeout", within=15)
        for _ in range(5):  # the loop answers while the driver call is still blocked
            started = time.monotonic()
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as answer:
                assert answer.status == 200
            assert time.monotonic() - started < 1
            time.sleep(0.3)
        assert messages(database, run)[-1] == "ERROR: Timed out after 3 seconds"
        code, seconds = server.stop()
    assert code == 0
    assert seconds < 5
