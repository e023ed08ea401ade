"""The sync job against a real PostgreSQL server through psqlODBC (UseDeclareFetch=1;Fetch=500)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import Settings
from service.wire import Status
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.server import run_service
from tests.support.sync import sync_service, table_rows, tables, with_source

pytestmark = pytest.mark.integration

ORDERS_SQL = """
DROP VIEW IF EXISTS vwZSDOrder_Advanced;
DROP TABLE IF EXISTS order_lines;
CREATE TABLE order_lines AS
  SELECT g AS "OrderNumber",
         'Customer ' || (g % 37) AS "Customer",
         (g % 50)::numeric(12, 3) AS "Quantity",
         ((g % 13) * 1.25)::float8 AS "Price",
         date '2025-12-01' + (g % 28) AS "OrderDate",
         CASE WHEN g % 11 = 0 THEN 'note ' || g END AS "Note"
  FROM generate_series(1, {rows}) AS g;
CREATE VIEW vwZSDOrder_Advanced AS SELECT * FROM order_lines;
GRANT SELECT ON order_lines, vwZSDOrder_Advanced TO sync_reader;
"""


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server() as running:
        yield running


def load(server: PostgresServer, rows: int) -> None:
    server.psql(ORDERS_SQL.format(rows=rows))


async def test_a_run_of_100000_rows(
    server: PostgresServer, settings: Settings, database_path: Path
) -> None:
    load(server, 100_000)
    async with sync_service(with_source(settings, server.odbc())) as service:
        log = await service.scheduler.run_once()
        assert log is not None
        messages = await service.messages(log.id)
    assert log.status is Status.success, messages
    assert messages[1] == "Connecting to 127.0.0.1..."
    batches = [m for m in messages if m.startswith("Batch")]
    assert batches[0] == "Batch 1/200 imported (500 records)"
    assert batches[-1] == "Batch 200/200 imported (500 records)"
    assert "Fetched 100,000 records" in messages
    assert messages[-1].startswith("Job completed successfully - Total: 100,000 records in ")
    rows = table_rows(database_path)
    assert len(rows) == 100_000
    assert rows[0] == (1, "Customer 1", 1, 1.25, "2025-12-02", None)
    assert rows[10] == (11, "Customer 11", 11, 13.75, "2025-12-12", "note 11")


async def test_a_wrong_password_is_an_error_without_the_password(
    server: PostgresServer, settings: Settings
) -> None:
    wrong = "Wr0ng-Pa55word-XYZ"
    odbc = server.odbc(password=wrong)
    async with sync_service(with_source(settings, odbc)) as service:
        log = await service.scheduler.run_once()
        assert log is not None
        assert log.status is Status.error
        messages = await service.messages(log.id)
    assert messages[-1].startswith("ERROR: Connection failed - [08001] ")
    assert 'password authentication failed for user "sync_reader"' in messages[-1]
    assert not any(wrong in m or server.password in m or "PWD" in m for m in messages)


async def test_the_backend_killed_mid_fetch_keeps_the_old_set(
    server: PostgresServer, settings: Settings, database_path: Path
) -> None:
    load(server, 3_000)
    source = with_source(settings, server.odbc(), sync_min_ratio=0.0)
    async with sync_service(source) as service:
        first = await service.scheduler.run_once()
        assert first is not None
        assert first.status is Status.success
        load(server, 400_000)
        service.seen.clear()
        run = asyncio.create_task(service.scheduler.run_once())
        await service.until("Batch 3/800")
        await asyncio.to_thread(server.terminate_backends)
        log = await run
        assert log is not None
        assert log.status is Status.error
        messages = await service.messages(log.id)
        assert len(table_rows(database_path)) == 3_000
        assert "open_orders_staging" not in tables(database_path)
        load(server, 2_000)
        again = await service.scheduler.run_once()
        assert again is not None
        assert again.status is Status.success
    # The driver says what it saw first: the server's FATAL message, or the socket closing
    # under a request it was sending.
    assert messages[-1].startswith(
        (
            "ERROR: Fetch failed - [57P01] FATAL: terminating connection",
            "ERROR: Fetch failed - [08S01] server closed the connection unexpectedly",
        )
    ), messages[-1]
    assert len(table_rows(database_path)) == 2_000


def test_run_once_against_postgresql(server: PostgresServer, tmp_path: Path) -> None:
    load(server, 1_523)
    result = run_service(tmp_path, "run-once", SOURCE_ODBC=server.odbc())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Job started - SyncOpenOrdersJob"
    assert "Batch 4/4 imported (23 records)" in lines
    assert lines[-1].startswith("Job completed successfully - Total: 1,523 records in ")
    assert server.password not in result.stdout + result.stderr


async def test_a_hung_query_is_cancelled_in_the_server_at_the_timeout(
    server: PostgresServer, settings: Settings
) -> None:
    hung = with_source(
        settings,
        server.odbc(),
        source_query="SELECT pg_sleep(60) AS waited",
        sync_timeout_seconds=1,
    )
    async with sync_service(hung) as service:
        started = time.monotonic()
        log = await service.scheduler.run_once()
        elapsed = time.monotonic() - started
        assert log is not None
        messages = await service.messages(log.id)
    assert messages[-1] == "ERROR: Timed out after 1 seconds"
    assert elapsed < 5
    sleeping = server.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
        "AND state = 'active' AND pid <> pg_backend_pid()"
    )
    assert sleeping.strip() == "0"


NOISY_SQL = """
DROP VIEW IF EXISTS vwZSDOrder_Advanced;
CREATE OR REPLACE FUNCTION checked(n int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  IF n = 1 THEN RAISE NOTICE 'price list of 2025 used'; END IF;
  IF n % 2 = 0 THEN RAISE WARNING 'order % has no customer; kept', n; END IF;
  RETURN n;
END $$;
CREATE VIEW vwZSDOrder_Advanced AS
  SELECT checked(g) AS "OrderNumber", 'Customer ' || g AS "Customer"
  FROM generate_series(1, {rows}) AS g;
GRANT SELECT ON vwZSDOrder_Advanced TO sync_reader;
GRANT EXECUTE ON FUNCTION checked(int) TO sync_reader;
"""


async def noisy_run(server: PostgresServer, settings: Settings, rows: int) -> list[str]:
    """A successful run over a view raising notices for ``rows`` rows; its lines, none of
    which holds the source's password."""
    server.psql(NOISY_SQL.format(rows=rows))
    async with sync_service(with_source(settings, server.odbc())) as service:
        log = await service.scheduler.run_once()
        assert log is not None
        messages = await service.messages(log.id)
    assert log.status is Status.success, messages
    assert not any(server.password in m for m in messages)
    return messages


async def test_the_drivers_warnings_are_in_the_runs_lines(
    server: PostgresServer, settings: Settings
) -> None:
    """psqlODBC refuses the query timeout and hands PostgreSQL's notices over as
    SQL_SUCCESS_WITH_INFO: both are the run's own lines, each notice its own WARNING line, in
    order, the flood cut at 20 lines and counted; the run itself succeeds."""
    messages = await noisy_run(server, settings, rows=6)
    connected = messages.index("Connected successfully")
    assert messages[connected + 1].startswith(
        "WARNING: the ODBC driver refused a query timeout of "
    ), messages
    assert "[HY000] Couldn't set unsupported connect attribute 113" in messages[connected + 1]
    fetching = messages.index("Fetching records from vwZSDOrder_Advanced...")
    assert messages[fetching + 1 : fetching + 5] == [
        "WARNING: NOTICE: price list of 2025 used",
        "WARNING: order 2 has no customer; kept",
        "WARNING: order 4 has no customer; kept",
        "WARNING: order 6 has no customer; kept",
    ]
    assert messages[fetching + 5] == "Importing records in batches of 500..."

    # Thousands of notices (psqlODBC's diagnostic comes in pieces of 1,022 characters): 20
    # lines in all, then how many more.
    messages = await noisy_run(server, settings, rows=4_000)
    warnings = [m for m in messages if m.startswith("WARNING: ")]
    assert len(warnings) == 21, warnings
    assert warnings[1:4] == [
        "WARNING: NOTICE: price list of 2025 used",
        "WARNING: order 2 has no customer; kept",
        "WARNING: order 4 has no customer; kept",
    ]
    assert warnings[19] == "WARNING: order 36 has no customer; kept"
    last = re.fullmatch(r"WARNING: ([\d,]+) more from the source, not shown", warnings[20])
    assert last is not None, warnings[20]
    # Every piece was put back together: no notice was cut in two.
    assert int(last.group(1).replace(",", "")) > 100
