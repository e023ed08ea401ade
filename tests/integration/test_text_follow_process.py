"""``curl -N …txt?follow=true`` against a real server process: every line once, in order, and
curl returns by itself when the run ends."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from tests.support.api import ADMIN
from tests.support.server import ServerProcess
from tests.support.system import require_command
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}  (.*)$")


def start_run(server: ServerProcess) -> str:
    request = urllib.request.Request(f"{server.url}/api/job_logs", method="POST", headers=ADMIN)
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 202
        return str(json.load(response)["name"])


def lines_of(database: Path, name: str) -> list[str]:
    with closing(sqlite3.connect(database)) as conn:
        rows = conn.execute(
            "SELECT d.message FROM job_log_details AS d JOIN job_logs AS l "
            "ON l.id = d.job_log_id WHERE l.name = ? ORDER BY d.id",
            (name,),
        )
        return [row[0].replace("\n", "\\n") for row in rows]


def messages(output: str) -> list[str]:
    found = []
    for line in output.splitlines():
        match = LINE.match(line)
        assert match is not None, line
        found.append(match.group(1))
    return found


def test_curl_follows_the_next_run_and_a_run_under_way_to_their_ends(tmp_path: Path) -> None:
    curl = require_command("curl")
    database = tmp_path / "data" / "joblog.sqlite3"
    with ServerProcess(tmp_path, SYNC_ON_START="false", DEMO_DELAY_SECONDS="0.3") as server:
        server.wait_ready()
        # Waiting for the next run, then following it.
        latest = subprocess.Popen(
            [curl, "-sN", "--max-time", "60", f"{server.url}/api/job_logs/latest.txt?follow=true"],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)
        name = start_run(server)
        # Joining the same run part of the way through.
        wait_for(lambda: len(lines_of(database, name)) >= 3, "a few lines", every=0.05)
        joined = subprocess.run(
            [curl, "-sN", "--max-time", "60", f"{server.url}/api/job_logs/{name}.txt?follow=true"],
            capture_output=True,
            text=True,
            check=True,
        )
        out, _ = latest.communicate(timeout=60)
        # curl returned by itself (exit 0), not at --max-time (exit 28).
        assert latest.returncode == 0
        server.stop()
    written = lines_of(database, name)
    assert written[-1].startswith("Job completed successfully")
    assert messages(out) == written
    assert messages(joined.stdout) == written
