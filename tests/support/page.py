"""The page in Chromium against a server process, as its tests drive it: a server for them,
signing in, the views, the table and the log lines the page shows, and what it must show.

The API side (what the page must agree with) is tests/support/server_api.py; the browser and
its error watch are tests/support/browser.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from .browser import eventually
from .server import ServerProcess
from .server_api import Line, api_lines

# No schedule, no run at start: every run in a test is one the test started.
QUIET = {"SYNC_ON_START": "false", "SYNC_INTERVAL_SECONDS": "0", "DEMO_DELAY_SECONDS": "0.3"}
# The admin token of every server here, and a viewer's for the servers that have one.
TOKEN = "page-test-admin-token-0123"
VIEW_TOKEN = "page-test-view-token-4567"
# The page's answers to who may see: nobody without a credential, unless the test says so.
NO_GUESTS = {"ALLOW_ANONYMOUS_VIEWERS": "false"}

# The lines rendered in the log viewport, in DOM order, as [detail id, message].
RENDERED_LINES = """() => [...document.querySelectorAll('#run-lines li.line')].map(
    (li) => [Number(li.dataset.id), li.querySelector('.message')?.textContent ?? null])"""
# Scrolls the log viewport from top to bottom, collecting the rendered lines of each window.
SCROLLED_LINES = """async (viewport) => {
    const settle = () => new Promise((done) => setTimeout(
        () => requestAnimationFrame(() => requestAnimationFrame(done)), 20));
    const read = () => [...viewport.querySelectorAll('li.line')].map(
        (li) => [Number(li.dataset.id), li.querySelector('.message')?.textContent ?? null]);
    const windows = [];
    viewport.scrollTop = 0;
    await settle();
    for (let step = 0; step < 1000; step++) {
        windows.push(read());
        if (viewport.scrollTop + viewport.clientHeight >= viewport.scrollHeight - 1) break;
        viewport.scrollTop += Math.max(1, Math.floor(viewport.clientHeight / 2));
        await settle();
    }
    return windows;
}"""
# The table's rows as [name, status of its badge].
TABLE_ROWS = """() => [...document.querySelectorAll('#runs-table tbody tr[data-name]')].map(
    (tr) => [tr.dataset.name,
             (tr.querySelector('.badge')?.className.match(/\\bstatus-(\\w+)/) ?? [])[1] ?? null])"""
# Which view shows the run ``name`` after Run now: "run", "overview" (as the latest) or false.
RUN_SHOWN = """(name) => {
    if (!document.getElementById('run-view').hidden) {
        const shown = document.getElementById('run-name').textContent.trim().split(/\\s+/).pop();
        return shown === name ? 'run' : false;
    }
    return document.getElementById('latest').textContent.includes(name) ? 'overview' : false;
}"""


# --- the server -----------------------------------------------------------------------------------


@contextmanager
def serve(workdir: Path, **env: str) -> Iterator[ServerProcess]:
    """A server on the demo source with no schedule and the admin token TOKEN (``env``
    overrides), ready; ended when the block ends."""
    with ServerProcess(workdir, **{**QUIET, "ADMIN_TOKEN": TOKEN, **env}) as server:
        server.wait_ready()
        yield server


# --- opening the page, signing in, Run now --------------------------------------------------------


def open_overview(page: Page, server: ServerProcess, *, admin: bool = False) -> None:
    """Load the page at the root (``admin``: through the sign-in link) and wait until its event
    stream is live."""
    if admin:
        sign_in_by_link(page, server)
    else:
        page.goto(f"{server.url}/")
    expect(page.locator("#overview-view")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(page.locator("#connection")).to_have_text("live")


def sign_in_by_link(page: Page, server: ServerProcess, path: str = "/", token: str = TOKEN) -> None:
    """Open ``path`` through a sign-in link, as the service prints it; see the page take it."""
    page.goto(f"{server.url}{path}#signin={token}")
    expect_signed_in(page, "admin" if token == TOKEN else "viewer")


def sign_in_with_form(page: Page, token: str) -> None:
    """Type ``token`` into the sign-in form and send it."""
    form = page.locator("#signin-view")
    expect(form).to_be_visible()
    expect(page.locator("#signin-token")).to_be_focused()
    page.locator("#signin-token").fill(token)
    page.locator("#signin-submit").click()


def expect_signed_in(page: Page, who: str) -> None:
    """The header names ``who``; the form is gone; Run now is there for an admin only."""
    expect(page.locator("#who-name")).to_have_text(who)
    expect(page.locator("#signin-view")).to_be_hidden()
    run_now = page.locator("#run-now")
    if who == "admin" or who.endswith("(admin)"):
        expect(run_now).to_be_visible()
    else:
        expect(run_now).to_be_hidden()


def expect_sign_in_form(page: Page) -> None:
    """The sign-in form in place of every view, its token field empty, no one named."""
    expect(page.locator("#signin-view")).to_be_visible()
    expect(page.locator("#signin-token")).to_have_value("")
    expect(page.locator("#signin-token")).to_have_attribute("type", "password")
    expect(page.locator("#signin-cancel")).to_be_hidden()
    for hidden in ("#overview-view", "#run-view", "#run-now", "#who", "#facts"):
        expect(page.locator(hidden)).to_be_hidden()


def click_run_now(page: Page, base: str) -> str:
    """Click Run now, enabled, on the page served at ``base`` (ending in ``/``); the POST it
    sends must be accepted. The new run's name."""
    run_now = page.locator("#run-now")
    expect(run_now).to_be_enabled()
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url == f"{base}api/job_logs"
    ) as answer:
        run_now.click()
    assert answer.value.status == 202
    name: str = answer.value.json()["name"]
    return name


# --- what the page shows --------------------------------------------------------------------------


def stored_text(page: Page) -> str:
    """Everything the page keeps where a script can read it: storage, cookies, the DOM."""
    kept: str = page.evaluate(
        "() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie,"
        " location.href])"
    )
    return kept + page.content()


def table_rows(page: Page) -> list[list[str]]:
    """The runs table as [name, badge status] rows, top to bottom."""
    rows: list[list[str]] = page.evaluate(TABLE_ROWS)
    return rows


def rendered_lines(page: Page) -> list[Line]:
    """The log lines in the DOM right now (only the visible window of a long log)."""
    return [(int(i), m) for i, m in page.evaluate(RENDERED_LINES)]


def all_lines(page: Page) -> list[Line]:
    """Every line of the open run, read by scrolling the viewport through the whole log.

    Each window must be in order without repeats; windows are joined on their detail ids.
    """
    windows: list[list[list[Any]]] = page.locator("#run-lines").evaluate(SCROLLED_LINES)
    lines: list[Line] = []
    for window in windows:
        ids = [int(i) for i, _ in window]
        assert ids == sorted(set(ids)), f"rendered lines out of order or repeated: {ids}"
        lines.extend((int(i), m) for i, m in window if not lines or int(i) > lines[-1][0])
    return lines


def open_run_from_table(page: Page, name: str) -> None:
    """Select the run ``name`` in the runs table (its link if the row has one)."""
    row = page.locator(f'#runs-table tbody tr[data-name="{name}"]')
    expect(row).to_be_visible()
    # As a person would: once the overview above the table has its figures.
    expect(page.locator("#latest a")).to_be_visible()
    row.locator("a").click()
    expect_run_view(page, name)


def expect_run_view(page: Page, name: str) -> None:
    """The run view shows ``name`` (its heading ends with it), the overview is hidden."""
    expect(page.locator("#run-view")).to_be_visible()
    expect(page.locator("#overview-view")).to_be_hidden()
    expect(page.locator("#run-name")).to_have_text(re.compile(rf"(^|\s){re.escape(name)}$"))


def expect_ended(page: Page, server: ServerProcess, name: str, status: str) -> list[Line]:
    """The run view shows ``name`` ended with ``status`` and exactly the API's lines."""
    word = {"success": "succeeded", "error": "failed"}[status]
    banner = page.locator("#run-banner")
    expect(banner).to_be_visible(timeout=20_000)
    expect(banner).to_contain_text(word)
    expect(banner).to_have_class(re.compile(rf"\bstatus-{status}\b"))
    expect(page.locator("#run-status")).to_have_class(re.compile(rf"\bstatus-{status}\b"))
    expect(page.locator("#run-status")).to_have_text(re.compile(rf"{status}|{word}", re.I))
    expected = api_lines(server, name)
    eventually(page, lambda: all_lines(page), expected, what=f"the lines of {name}")
    assert page.locator("#run-lines li.line time").count() == len(rendered_lines(page))
    return expected


def assert_contiguous(part: list[Line], whole: list[Line]) -> None:
    """``part`` is empty or a run of consecutive lines of ``whole``."""
    if not part:
        return
    assert part[0] in whole, f"line {part[0]} is not in the run's details"
    start = whole.index(part[0])
    assert whole[start : start + len(part)] == part, f"{part} is not a slice of {whole}"


def follow_run_of_another_process(
    page: Page, server: ServerProcess, name: str, *, admin: bool = False
) -> None:
    """Open the run ``name`` (written by another process) from the table; see it go on."""
    open_overview(page, server, admin=admin)
    expect(page.locator("#count-processing")).to_have_text("1")
    open_run_from_table(page, name)
    expect(page.locator("#run-lines li.line").first).to_be_visible()


def set_filter(page: Page, selector: str, value: str) -> None:
    """Type ``value`` into a filter field and leave it, as a user does."""
    page.locator(selector).fill(value)
    page.locator(selector).press("Tab")
