"""A server process's API from a sync test, as a script holding the server's admin token would
use it: read it, start a run (or cancel one), wait for the run's end."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

from .http_client import bearer
from .server import ServerProcess
from .wait import wait_for

Line = tuple[int, str]
"""A detail as the page and the API show it: (id, message)."""


def admin(server: ServerProcess) -> dict[str, str]:
    """The header that proves the admin token ``server`` was started with."""
    token = server.env["ADMIN_TOKEN"]
    assert token, "the server makes its own admin token: read it from its file"
    return bearer(token)


def get_json(server: ServerProcess, path: str) -> Any:
    """GET ``path`` of the API as an admin (a script with the token), decoded."""
    request = urllib.request.Request(f"{server.url}{path}", headers=admin(server))
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def post(server: ServerProcess, path: str) -> dict[str, Any]:
    """POST ``path`` as an admin (a script with the token) and expect 202."""
    request = urllib.request.Request(f"{server.url}{path}", method="POST", headers=admin(server))
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202
        answer: dict[str, Any] = json.load(response)
        return answer


def wait_finished(server: ServerProcess, name: str, within: float = 20.0) -> dict[str, Any]:
    """The run ``name`` once it has ended, and nothing runs any more (``/api/status``)."""

    def ended() -> dict[str, Any] | None:
        log: dict[str, Any] = get_json(server, f"/api/job_logs/{name}")
        idle = get_json(server, "/api/status")["running"] is None
        return log if log["status"] in ("success", "error") and idle else None

    return wait_for(ended, f"run {name} ended", within=within)


def run_to_end(server: ServerProcess, *, cancel: bool = False) -> str:
    """Start a run through the API (cancelled at once when ``cancel``), wait for its end."""
    name: str = post(server, "/api/job_logs")["name"]
    if cancel:
        post(server, f"/api/job_logs/{name}/cancel")
    log = wait_finished(server, name)
    assert log["status"] == ("error" if cancel else "success")
    return name


def api_lines(server: ServerProcess, name: str) -> list[Line]:
    """The run's details as the API gives them: (id, message), in order."""
    return [(d["id"], d["message"]) for d in get_json(server, f"/api/job_logs/{name}")["details"]]


def api_rows(server: ServerProcess, **query: str | int) -> list[list[str]]:
    """``GET /api/job_logs?query`` as [name, status] rows."""
    items = get_json(server, f"/api/job_logs?{urllib.parse.urlencode(query)}")["items"]
    return [[item["name"], item["status"]] for item in items]
