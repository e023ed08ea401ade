"""The real server process: starts, serves, and stops cleanly within 5 s on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import signal
import sqlite3
import urllib.request
from contextlib import ExitStack, closing
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serves_then_stops_within_five_seconds(tmp_path: Path, signum: int) -> None:
    with ServerProcess(tmp_path) as server, ExitStack() as connections:
        server.wait_ready()
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as response:
            assert json.load(response) == {"status": "ok"}
        # Connections a stop must not wait for: an idle keep-alive one, one halfway through
        # its request line, and one whose request is complete but whose answer is never read.
        idle = connections.enter_context(closing(server.connect()))
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        partial = connections.enter_context(closing(server.connect()))
        partial.sendall(b"GET /heal")
        unread = connections.enter_context(closing(server.connect()))
        unread.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

        code, seconds = server.stop(signum)

    assert code == 0, server.logs()
    assert seconds < 5
    logs = server.logs()
    assert "Traceback" not in logs
    assert f"Running on http://127.0.0.1:{server.port}" in logs
    # One line per event: every line begins with a timestamp.
    assert all(line[:4].isdigit() for line in server.output.read_text().splitlines())


def test_default_database_is_created_under_data(tmp_path: Path) -> None:
    with ServerProcess(tmp_path) as server:
        server.wait_ready()
        code, _ = server.stop()
    assert code == 0
    database = tmp_path / "data" / "joblog.sqlite3"
    with closing(sqlite3.connect(database)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"job_logs", "job_log_details", "index_job_logs_on_status_and_created_at"} <= names


def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    with ServerProcess(tmp_path / "first") as first:
        first.wait_ready()
        with ServerProcess(tmp_path / "second", PORT=str(first.port)) as second:
            code = second.wait()
        first.stop()
    assert code == 1
    lines = second.errors.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"cannot listen on 127.0.0.1:{first.port}")


def test_an_unusable_database_is_one_line_and_exit_1(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with ServerProcess(tmp_path, DATABASE_PATH=str(blocker / "joblog.sqlite3")) as server:
        code = server.wait()
    assert code == 1
    lines = server.errors.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cannot start: cannot open database")
    assert "Traceback" not in server.logs()
