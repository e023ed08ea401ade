"""Driving the real app through its API from an in-process test client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from service import appkeys

from .sync import wait_ended

Client = TestClient[web.Request, web.Application]
# The admin token of the tests' settings, and the header that proves it.
ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MakeApp = Callable[..., web.Application]
"""conftest's ``make_app``: ``make_app(base=None, /, **changes)``."""
MakeClient = Callable[..., Awaitable[Client]]
"""conftest's ``make_client``: ``await make_client(base=None, /, **changes)``."""


async def run_to_end(client: Client) -> dict[str, Any]:
    """Start a run with ``POST /api/job_logs`` and wait until it has ended; its first answer."""
    response = await client.post("/api/job_logs", headers=ADMIN)
    assert response.status == 202, await response.text()
    log: dict[str, Any] = await response.json()
    await wait_ended(client.app[appkeys.DATABASE], log["id"])
    return log
