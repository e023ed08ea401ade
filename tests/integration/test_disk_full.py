"""The database's disk fills up during a run, in a real server process on a small tmpfs: the
run ends as error once it can, reads and /healthz carry on, /readyz says why, and everything
recovers without a restart once space returns."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import time
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import ADMIN
from tests.support.server import ServerProcess
from tests.support.system import missing
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

TMPFS_SIZE = "8m"


def on_tmpfs(folder: Path) -> list[str]:
    """A prefix that starts the server in a mount namespace of its own, with ``folder`` a tmpfs."""
    if os.geteuid() != 0:
        missing("root, to mount a tmpfs in a mount namespace (unshare -m)")
    unshare = shutil.which("unshare")
    if unshare is None:
        missing("the command unshare (util-linux)")
    assert unshare is not None
    script = f'mount -t tmpfs -o size={TMPFS_SIZE} tmpfs "$0" && exec "$@"'
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", script, str(folder)]


def call(url: str, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method, headers=ADMIN)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def fill(folder: Path) -> Path:
    """Write a file in ``folder`` until the file system has no space left."""
    filler = folder / "filler"
    block = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        error = None
        while error is None:
            try:
                out.write(block)
            except OSError as exc:
                error = exc
    assert error.errno == errno.ENOSPC, error
    return filler


def tables(database: Path) -> set[str]:
    with closing(sqlite3.connect(database)) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}


def test_a_full_disk_fails_the_run_and_everything_recovers_without_restart(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = {
        "DATABASE_PATH": str(data / "joblog.sqlite3"),
        "SYNC_ON_START": "false",
        "SYNC_INTERVAL_SECONDS": "0",
        "DEMO_DELAY_SECONDS": "0.5",
    }
    with ServerProcess(tmp_path, prefix=on_tmpfs(data), **env) as server:
        server.wait_ready()
        assert server.process is not None
        # The server's view of the folder: its tmpfs, seen through its mount namespace.
        inside = Path(f"/proc/{server.process.pid}/root") / data.relative_to("/")
        assert (inside / "joblog.sqlite3").exists()
        assert not (data / "joblog.sqlite3").exists(), "the tmpfs is the server's alone"

        status, first = call(f"{server.url}/api/job_logs", "POST")
        assert status == 202
        wait_for(
            lambda: call(f"{server.url}/api/job_logs/{first['name']}")[1]["status"] == "success",
            "the first run",
            within=30,
            every=0.1,
        )
        assert call(f"{server.url}/readyz")[0] == 200

        status, second = call(f"{server.url}/api/job_logs", "POST")
        assert status == 202
        log_url = f"{server.url}/api/job_logs/{second['name']}"
        wait_for(
            lambda: any(d["message"].startswith("Batch 1/") for d in call(log_url)[1]["details"]),
            "the first batch",
            within=30,
            every=0.1,
        )
        filler = fill(inside)

        status, ready = wait_for(
            lambda: answer if (answer := call(f"{server.url}/readyz"))[0] == 503 else None,
            "readiness to fail",
            within=30,
            every=0.1,
        )
        assert ready["status"] == "unready"
        assert "full" in ready["checks"]["database"]
        assert call(f"{server.url}/healthz") == (200, {"status": "ok"})
        status, page = call(f"{server.url}/api/job_logs")
        assert status == 200
        assert page["total"] == 2
        time.sleep(2)  # the run meets the full disk
        status, running = call(log_url)
        assert running["status"] == "processing"

        filler.unlink()
        ended = wait_for(
            lambda: log if (log := call(log_url)[1])["status"] != "processing" else None,
            "the run's end",
            within=30,
            every=0.1,
        )
        messages = [d["message"] for d in ended["details"]]
        assert ended["status"] == "error", messages
        assert messages[-1].startswith("ERROR: "), messages
        assert "full" in messages[-1]
        assert messages[0] == "Job started - SyncOpenOrdersJob"
        assert sum(m.startswith("Batch 1/") for m in messages) == 1
        wait_for(
            lambda: call(f"{server.url}/readyz")[0] == 200,
            "readiness to return",
            within=30,
            every=0.1,
        )
        assert "open_orders_staging" not in tables(inside / "joblog.sqlite3")

        status, third = call(f"{server.url}/api/job_logs", "POST")
        assert status == 202
        wait_for(
            lambda: call(f"{server.url}/api/job_logs/{third['name']}")[1]["status"] == "success",
            "a run after recovery",
            within=30,
            every=0.1,
        )
        code, _ = server.stop()
        assert code == 0
