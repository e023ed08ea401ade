"""Fixtures of the integration tests that share one expensive thing per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.support.browser import launch_chromium
from tests.support.postgres import PostgresServer, postgres_server


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
