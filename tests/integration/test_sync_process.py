"""The sync in real processes: SIGTERM mid-run, kill -9, run-once beside a running server."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.joblogs import details, statuses, wait_for_detail
from tests.support.odbc import freetds, order_rows, sqlite_odbc, write_orders
from tests.support.server import ServerProcess, run_service, start_service
from tests.support.silent import silent_server
from tests.support.sync import tables
from tests.support.system import free_port

pytestmark = pytest.mark.integration

ERROR, SUCCESS = 2, 3


def run_once(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_service(workdir, "run-once", *args, **env)


def test_sigterm_mid_run_ends_it_as_interrupted_within_five_seconds(tmp_path: Path) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    with ServerProcess(tmp_path, DEMO_DELAY_SECONDS="30") as server:
        server.wait_ready()
        wait_for_detail(database, "Batch 1/4 imported")
        code, seconds = server.stop(signal.SIGTERM)
    assert code == 0, server.logs()
    assert seconds < 5
    assert details(database)[-1] == "ERROR: Interrupted - service shutting down"
    assert statuses(database)[-1][1] == ERROR
    assert "open_orders_staging" not in tables(database)


def test_sigterm_while_the_source_hangs_still_exits_within_five_seconds(tmp_path: Path) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    with silent_server() as port:
        odbc = freetds(port)
        with ServerProcess(tmp_path, SOURCE_ODBC=odbc, SOURCE_LOGIN_TIMEOUT="120") as server:
            server.wait_ready()
            wait_for_detail(database, "Connecting to SQL Server 127.0.0.1...")
            time.sleep(0.3)  # the login call is now blocked in the driver
            code, seconds = server.stop(signal.SIGTERM)
    assert code == 0, server.logs()
    assert seconds < 5
    assert details(database)[-1] == "ERROR: Interrupted - service shutting down"


def test_kill_9_mid_run_is_closed_at_the_next_start(tmp_path: Path) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    with ServerProcess(tmp_path, DEMO_DELAY_SECONDS="30") as server:
        server.wait_ready()
        wait_for_detail(database, "Batch 1/4 imported")
        code, _ = server.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert "open_orders_staging" in tables(database)
    killed = statuses(database)[-1][0]
    with ServerProcess(tmp_path, SYNC_ON_START="false") as again:
        again.wait_ready()
        assert details(database, killed)[-1] == "ERROR: Interrupted - service restarted"
        assert statuses(database) == [(killed, ERROR)]
        assert "open_orders_staging" not in tables(database)
        again.stop()


def test_run_once_is_refused_while_the_server_syncs(tmp_path: Path) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    with ServerProcess(tmp_path, DEMO_DELAY_SECONDS="30") as server:
        server.wait_ready()
        wait_for_detail(database, "Batch 1/4 imported")
        refused = run_once(tmp_path)
        running = statuses(database)
        server.stop()
    assert refused.returncode == 3
    assert refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("another sync run holds the lock")
    assert len(running) == 1
    assert running[0][1] == 1


def test_a_server_starting_beside_a_live_run_once_leaves_it_alone(tmp_path: Path) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    once = start_service(tmp_path, "run-once", DEMO_DELAY_SECONDS="1")
    try:
        wait_for_detail(database, "Batch 1/4 imported")
        with ServerProcess(tmp_path, SYNC_ON_START="false") as server:
            server.wait_ready()
            out, _ = once.communicate(timeout=30)
            server.stop()
    finally:
        if once.poll() is None:
            once.kill()
    assert once.returncode == 0
    assert out.splitlines()[-1].startswith("Job completed successfully - Total: 1,523 records")
    assert [status for _, status in statuses(database)] == [SUCCESS]


def test_run_once_against_sqlite_odbc(tmp_path: Path) -> None:
    source = tmp_path / "source.sqlite3"
    write_orders(source, order_rows(1523))
    result = run_once(tmp_path, SOURCE_ODBC=sqlite_odbc(source))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "Job started - SyncOpenOrdersJob",
        f"Connecting to {source}...",
        "Connected successfully",
    ]
    assert lines[-1].startswith("Job completed successfully - Total: 1,523 records in ")
    assert len(lines) == 12


def test_run_once_against_freetds_fails_with_exit_1(tmp_path: Path) -> None:
    result = run_once(tmp_path, SOURCE_ODBC=freetds(free_port()))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "Job started - SyncOpenOrdersJob",
        "Connecting to SQL Server 127.0.0.1...",
        "ERROR: Connection failed - [08S01] Unable to connect: "
        "Adaptive Server is unavailable or does not exist",
    ]
    assert "s3cret" not in result.stdout + result.stderr


def test_run_once_force_passes_the_shrink_guard(tmp_path: Path) -> None:
    source = tmp_path / "source.sqlite3"
    write_orders(source, order_rows(1000))
    odbc = sqlite_odbc(source)
    assert run_once(tmp_path, SOURCE_ODBC=odbc).returncode == 0
    write_orders(source, order_rows(10))
    refused = run_once(tmp_path, SOURCE_ODBC=odbc)
    assert refused.returncode == 1
    assert refused.stdout.splitlines()[-1].startswith("ERROR: Shrink guard - ")
    forced = run_once(tmp_path, "--force", SOURCE_ODBC=odbc)
    assert forced.returncode == 0
    assert forced.stdout.splitlines()[-1].startswith("Job completed successfully - Total: 10 ")
