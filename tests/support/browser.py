"""Debian's Chromium driven by Playwright's sync API, for the tests of the page.

The browser is the system's ``/usr/bin/chromium`` (Debian package ``chromium``), never one that
Playwright downloads. Every test gets a fresh context (no cookies, no storage) and a
:class:`WatchedPage` that records what the page logs: a JavaScript error, a ``console.error``
or a Content-Security-Policy violation fails the test. The browser's own network messages
(``Failed to load resource: ... 401``) fail it too, unless the test said it expects them.

The sync API runs its own event loop, so it is used from plain (sync) tests only.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    sync_playwright,
)

from .system import missing, require_command
from .wait import wait_for

T = TypeVar("T")

CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1280, "height": 800}
# How long an action or an expect() waits by default, in milliseconds.
DEFAULT_TIMEOUT_MS = 10_000

_NETWORK_MESSAGE = "Failed to load resource:"


def chromium_path() -> str:
    """The system Chromium, or skip (fail under CI=true) naming the Debian package."""
    if shutil.which("chromium") is None:
        missing("the Debian package chromium")
    return require_command("chromium")


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """Start Playwright and the system Chromium, headless; stop both afterwards."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class WatchedPage:
    """A page in its own context, with every error it logged."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)
    """JavaScript exceptions and console errors, as ``kind: text (where)``."""
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def expect_network_errors(self, *patterns: str) -> None:
        """Tolerate the browser's ``Failed to load resource`` messages matching a pattern.

        Only the browser's own network messages can be tolerated: a JavaScript error, a
        ``console.error`` of the page or a CSP violation always fails the test.
        """
        self.expected.extend(re.compile(pattern) for pattern in patterns)

    def unexpected_errors(self) -> list[str]:
        """The errors logged so far that the test did not say it expects."""
        return [error for error in self.errors if not self._tolerated(error)]

    def _tolerated(self, error: str) -> bool:
        if not error.startswith(f"console: {_NETWORK_MESSAGE}"):
            return False
        return any(pattern.search(error) for pattern in self.expected)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "")
            self.errors.append(f"console: {message.text} ({where})")

    def _on_page_error(self, error: Error) -> None:
        self.errors.append(f"pageerror: {error.name}: {error.message}\n{error.stack or ''}")


@contextmanager
def watched_page(
    browser: Browser,
    *,
    base_url: str | None = None,
    color_scheme: Literal["light", "dark"] = "light",
) -> Iterator[WatchedPage]:
    """A fresh context and page (1280x800, UTC, en-US); fails if the page logged an error."""
    context = browser.new_context(
        viewport={"width": VIEWPORT["width"], "height": VIEWPORT["height"]},
        color_scheme=color_scheme,
        timezone_id="UTC",
        locale="en-US",
        base_url=base_url,
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    watched = WatchedPage(context, page)
    page.on("console", watched._on_console)
    page.on("pageerror", watched._on_page_error)
    failed = True
    try:
        yield watched
        failed = False
    finally:
        if failed and watched.errors:
            # Shown with the failing test's captured output.
            print("the page logged:\n" + "\n".join(watched.errors), file=sys.stderr)
        context.close()
    unexpected = watched.unexpected_errors()
    assert not unexpected, "the page logged errors:\n" + "\n".join(unexpected)


def eventually(
    page: Page, read: Callable[[], T], expected: T, *, timeout: float = 10.0, what: str = "value"
) -> T:
    """Poll ``read()`` (letting the page run in between) until it equals ``expected``.

    Fails after ``timeout`` seconds, showing the last value read.
    """
    last: list[T] = []

    def check() -> bool:
        last[:] = [read()]
        return last[0] == expected

    wait_for(
        check,
        lambda: f"{what} is still {last[0]!r}; expected {expected!r}",
        within=timeout,
        pause=lambda seconds: page.wait_for_timeout(seconds * 1000),
    )
    return last[0]
