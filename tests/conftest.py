"""Fixtures: settings with a database in tmp_path → the real app factory → a test client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient

from service.app import create_app
from service.backend import open_database
from service.settings import SECRET_FILE_VARIABLES, Settings
from service.store import Database
from tests.support.api import ADMIN_TOKEN, Client, MakeApp, MakeClient
from tests.support.clock import FakeClock


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--cluster-round``: how hard tests/cluster/ tries (tests/support/cluster.py's plans)."""
    parser.addoption(
        "--cluster-round",
        choices=("short", "full"),
        default="short",
        help="the cluster test's round: short (make test, each fault once) or full "
        "(make cluster-test, each fault five times, longer runs)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """The cluster test's marker, beside its option."""
    config.addinivalue_line(
        "markers", "cluster: nodes on one PostgreSQL under faults (tests/cluster, --cluster-round)"
    )


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the machine running the tests."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for variable in SECRET_FILE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def clock() -> FakeClock:
    """A clock that stands still until a test moves it."""
    return FakeClock(datetime(2025, 12, 15, 14, 30, 22, 250000, tzinfo=UTC))


@pytest.fixture
def database_path(tmp_path: Path) -> Path:
    """Where the test's database lives."""
    return tmp_path / "data" / "joblog.sqlite3"


@pytest.fixture
def settings(database_path: Path) -> Settings:
    """Settings for a service whose database is in the test's folder, with no schedule."""
    return Settings(
        database_path=database_path,
        sync_interval_seconds=0,
        sync_on_start=False,
        demo_delay_seconds=0,
        admin_token=SecretStr(ADMIN_TOKEN),
    )


@pytest.fixture
async def db(settings: Settings, clock: FakeClock) -> AsyncIterator[Database]:
    """The store's database, opened on the test's file, closed afterwards."""
    async with open_database(settings, clock) as database:
        yield database


@pytest.fixture
def make_app(settings: Settings, clock: FakeClock) -> MakeApp:
    """The app factory of the tests: the application exactly as the server builds it, on the
    test's clock, from ``base`` (the test's settings when not given) changed by ``changes``."""

    def make(base: Settings | None = None, /, **changes: Any) -> web.Application:
        chosen = settings if base is None else base
        return create_app(chosen.model_copy(update=changes) if changes else chosen, clock=clock)

    return make


@pytest.fixture
def app(make_app: MakeApp) -> web.Application:
    """The application exactly as the server builds it."""
    return make_app()


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, app: web.Application
) -> TestClient[web.Request, web.Application]:
    """A client talking to the app over a real socket."""
    return await aiohttp_client(app)


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient, make_app: MakeApp) -> MakeClient:
    """A client over a real socket for :func:`make_app`'s app (same arguments)."""

    async def make(base: Settings | None = None, /, **changes: Any) -> Client:
        return await aiohttp_client(make_app(base, **changes))

    return make
