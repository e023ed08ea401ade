"""Fixtures of the integration tests: one expensive thing per module (Chromium, a PostgreSQL
server), and the store's contract on either backend."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser

from service.store import Database, JobLogStore, SqliteStore
from service.store.postgres import PgDatabase, PostgresStore
from tests.support.browser import launch_chromium
from tests.support.clock import FakeClock
from tests.support.postgres import PostgresServer, postgres_server

# The store's databases on the module's server, each new (the names must not repeat).
_store_names = itertools.count(1)
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module; each test opens its own context."""
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the module's tests (each test makes its own database)."""
    with postgres_server() as running:
        yield running


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[JobLogStore]:
    """The store's contract (service/store/contract.py) on one backend, a new database each
    test; the runs are named in Europe/Berlin."""
    if request.param == "sqlite":
        db = await Database.open(tmp_path / "joblog.sqlite3", clock=clock, zone=BERLIN)
        try:
            yield SqliteStore(db)
        finally:
            await db.close()
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    url = postgres.store_database(f"store_{next(_store_names)}")
    pg = await PgDatabase.open(url, clock=clock, zone=BERLIN)
    try:
        yield PostgresStore(pg)
    finally:
        await pg.close()
