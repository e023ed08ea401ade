"""A real server as operators run it: readiness against a read-only or removed database file,
and its stdout as JSON lines — every detail with its run's name, access lines but no probes."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ServerProcess
from tests.support.system import without_root_override
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def readiness_becomes(server: ServerProcess, status: int, within: float = 10.0) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def answered() -> dict[str, Any] | None:
        nonlocal last
        code, last = get(f"{server.url}/readyz")
        return last if code == status else None

    return wait_for(answered, lambda: f"/readyz {status}, not {last}", within=within, every=0.1)


def test_readiness_follows_the_database_file(tmp_path: Path) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    # Root writes through any file mode; the server runs without that override.
    with ServerProcess(tmp_path, prefix=without_root_override(), SYNC_ON_START="false") as server:
        server.wait_ready()
        assert readiness_becomes(server, 200)["checks"] == {"database": "ok", "scheduler": "ok"}

        database.chmod(0o444)
        body = readiness_becomes(server, 503)
        assert body["status"] == "unready"
        assert "read-only" in body["checks"]["database"]
        assert get(f"{server.url}/healthz") == (200, {"status": "ok"})
        database.chmod(0o644)
        readiness_becomes(server, 200)

        moved = database.with_name("moved.sqlite3")
        database.rename(moved)
        assert "gone" in readiness_becomes(server, 503)["checks"]["database"]
        moved.rename(database)
        readiness_becomes(server, 200)


def test_json_logs_carry_every_detail_and_no_probe(tmp_path: Path) -> None:
    env = {"LOG_FORMAT": "json", "DEMO_DELAY_SECONDS": "0", "SYNC_INTERVAL_SECONDS": "0"}
    with ServerProcess(tmp_path, **env) as server:
        server.wait_ready()

        def one_success() -> dict[str, Any] | None:
            _, page = get(f"{server.url}/api/job_logs?status=success")
            return page if page["total"] == 1 else None

        page = wait_for(one_success, "a successful run listed", every=0.1)
        assert page["total"] == 1, page
        name = page["items"][0]["name"]
        _, log = get(f"{server.url}/api/job_logs/{name}")
        for path in ("/healthz", "/readyz", "/metrics"):
            urllib.request.urlopen(f"{server.url}{path}", timeout=10).close()
        code, _ = server.stop()
        assert code == 0
        lines = [json.loads(line) for line in server.output.read_text().splitlines()]

    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    details = [line for line in lines if line["logger"] == "service.details"]
    assert [(d["job_log"], d["detail_id"]) for d in details] == [
        (name, d["id"]) for d in log["details"]
    ]
    assert [d["message"] for d in details] == [f"{name} {d['message']}" for d in log["details"]]
    access = [line for line in lines if line["logger"] == "service.access"]
    paths = [line["path"] for line in access]
    assert "/api/job_logs?status=success" in paths
    assert f"/api/job_logs/{name}" in paths
    assert not {"/healthz", "/readyz", "/metrics"} & {path.split("?")[0] for path in paths}
    assert all(line["status"] == 200 and line["method"] == "GET" for line in access)


def test_text_logs_name_the_run_on_each_detail(tmp_path: Path) -> None:
    env = {"DEMO_DELAY_SECONDS": "0", "SYNC_INTERVAL_SECONDS": "0"}
    with ServerProcess(tmp_path, **env) as server:
        server.wait_ready()
        wait_for(
            lambda: "Job completed successfully" in server.logs(),
            lambda: f"the run's end in the logs: {server.logs()}",
            every=0.1,
        )
        server.stop()
    lines = server.output.read_text().splitlines()
    done = [line for line in lines if "Job completed successfully" in line]
    assert len(done) == 1
    assert " INFO service.details: " in done[0]
    name = done[0].split(" INFO service.details: ")[1].split()[0]
    assert len(name) == 14
    assert name.isdigit()
    assert os.linesep not in done[0]
