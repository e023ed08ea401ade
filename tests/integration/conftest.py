"""Fixtures of the integration tests that share one expensive thing per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.support.browser import launch_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module; each test opens its own context."""
    with launch_chromium() as chromium:
        yield chromium
