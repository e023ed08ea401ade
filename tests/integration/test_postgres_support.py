"""The PostgreSQL test helper starts a real server that psqlODBC reaches through pyodbc."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import closing
from datetime import date
from decimal import Decimal

import pytest

from tests.support.postgres import PostgresServer, postgres_server
from tests.support.system import missing

try:
    import pyodbc
except ImportError as error:  # pyodbc loads libodbc.so.2, from the Debian package unixodbc
    PYODBC_MISSING: ImportError | None = error
else:
    PYODBC_MISSING = None

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """One server for the module's tests, stopped and removed afterwards."""
    if PYODBC_MISSING is not None:
        missing(f"pyodbc's ODBC library, the Debian package unixodbc ({PYODBC_MISSING})")
    with postgres_server() as running:
        running.psql(
            """
            CREATE TABLE open_orders (
                id integer PRIMARY KEY,
                customer text NOT NULL,
                amount numeric(10, 2) NOT NULL,
                due date NOT NULL
            );
            INSERT INTO open_orders
            SELECT n, 'customer ' || n, n * 1.25, DATE '2025-12-01' + (n % 30)
            FROM generate_series(1, 1200) AS n;
            CREATE VIEW v_open_orders AS
            SELECT id, customer, amount, due FROM open_orders WHERE id % 2 = 0;
            """
        )
        yield running


def connect(server: PostgresServer, **extra: str) -> pyodbc.Connection:
    """A pyodbc connection to ``server`` as its reader."""
    return pyodbc.connect(server.odbc(**extra), timeout=5)


def test_the_reader_reads_a_view_in_batches(server: PostgresServer) -> None:
    with closing(connect(server)) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT id, customer, amount, due FROM v_open_orders ORDER BY id")
        batches = []
        while batch := cursor.fetchmany(500):
            batches.append(batch)
    assert [len(batch) for batch in batches] == [500, 100]
    first = batches[0][0]
    assert tuple(first) == (2, "customer 2", Decimal("2.50"), date(2025, 12, 3))
    assert batches[-1][-1].id == 1200


def test_the_reader_may_read_tables_made_later_but_not_write(server: PostgresServer) -> None:
    server.psql("CREATE TABLE later (word text); INSERT INTO later VALUES ('grüße');")
    with closing(connect(server)) as conn:
        assert conn.cursor().execute("SELECT word FROM later").fetchall()[0].word == "grüße"
        with pytest.raises(pyodbc.Error, match="permission denied"):
            conn.cursor().execute("DELETE FROM open_orders")


def test_psql_reports_errors(server: PostgresServer) -> None:
    assert server.psql("SELECT count(*) FROM open_orders;").strip() == "1200"
    with pytest.raises(AssertionError, match='relation "no_such_table" does not exist'):
        server.psql("SELECT * FROM no_such_table;")


def test_a_wrong_password_is_refused_and_the_server_carries_on(server: PostgresServer) -> None:
    for _ in range(3):
        with pytest.raises(pyodbc.Error, match="password authentication failed"):
            pyodbc.connect(server.odbc(password="not;the {password}"), timeout=5)
    with closing(connect(server)) as conn:
        assert conn.cursor().execute("SELECT current_user").fetchone()[0] == server.user


def test_terminate_backends_ends_the_readers_sessions(server: PostgresServer) -> None:
    with closing(connect(server)) as conn:
        cursor = conn.cursor()
        assert cursor.execute("SELECT 1").fetchone()[0] == 1
        server.terminate_backends()
        with pytest.raises(pyodbc.Error):
            cursor.execute("SELECT 1").fetchall()
    with closing(connect(server)) as conn:
        assert conn.cursor().execute("SELECT 2").fetchone()[0] == 2


def test_a_stopped_server_refuses_connections_until_started_again(
    server: PostgresServer,
) -> None:
    server.stop()
    try:
        with pytest.raises(pyodbc.Error, match="Connection refused"):
            connect(server)
    finally:
        server.start()
    with closing(connect(server)) as conn:
        rows = conn.cursor().execute("SELECT count(*) FROM open_orders").fetchone()
    assert rows[0] == 1200


def test_the_server_and_its_folder_are_gone_afterwards() -> None:
    with postgres_server() as running:
        assert running.directory.is_dir()
        assert (running.database, running.user) == ("orders", "sync_reader")
    assert not running.directory.exists()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect((running.host, running.port))
