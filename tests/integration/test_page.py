"""The page in a real browser (Debian's Chromium through Playwright) against a real server.

Each test starts ``python -m service`` on the demo source in its own folder, drives the page
like a user and compares what it shows with what the API answers. Any JavaScript error,
``console.error`` or Content-Security-Policy violation on the page fails the test.

Not covered: the page under a sub-path behind a reverse proxy (no proxy in the test setup).
"""

from __future__ import annotations

import re
import signal
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.support.browser import eventually, watched_page
from tests.support.joblogs import add_detail, add_run, statuses
from tests.support.page import (
    NO_GUESTS,
    RUN_SHOWN,
    TOKEN,
    VIEW_TOKEN,
    assert_contiguous,
    click_run_now,
    expect_ended,
    expect_run_view,
    expect_sign_in_form,
    expect_signed_in,
    follow_run_of_another_process,
    open_overview,
    open_run_from_table,
    rendered_lines,
    serve,
    set_filter,
    sign_in_by_link,
    sign_in_with_form,
    stored_text,
    table_rows,
)
from tests.support.server import run_once_beside
from tests.support.server_api import (
    Line,
    api_lines,
    api_rows,
    get_json,
    post,
    run_to_end,
    wait_finished,
)
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
SUCCESS, ERROR, PROCESSING = 3, 2, 1


def chart_runs(page: Page) -> int:
    """How many runs the chart's bars hold."""
    total: int = page.locator("#chart").evaluate(
        "(svg) => [...svg.querySelectorAll('rect.bar')]"
        ".reduce((n, r) => n + Number(r.dataset.runs), 0)"
    )
    return total


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file, from its header."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


# --- tests ----------------------------------------------------------------------------------------


def test_the_overview_counts_match_the_stats_and_follow_a_new_run(
    tmp_path: Path, browser: Browser
) -> None:
    with serve(tmp_path) as server, watched_page(browser) as watched:
        run_to_end(server)
        run_to_end(server, cancel=True)
        latest = run_to_end(server)
        page = watched.page
        open_overview(page, server, admin=True)
        stats = get_json(server, "/api/job_logs/stats")
        assert stats == {"total": 3, "success": 2, "error": 1, "processing": 0, "pending": 0}
        for key in ("total", "success", "error", "processing", "pending"):
            expect(page.locator(f"#count-{key}")).to_have_text(str(stats[key]))
        expect(page.locator("#source")).to_have_text("demo source")
        expect(page.locator("#run-now")).to_be_enabled()
        link = page.locator("#latest a")
        expect(link).to_contain_text(latest)
        assert (link.get_attribute("href") or "").endswith(f"runs/{latest}")
        assert re.search(r"status-success|succe", page.locator("#latest").inner_html())
        eventually(page, lambda: table_rows(page), api_rows(server), what="the runs table")
        # The chart: the three runs, the latest one's bar opening it.
        eventually(page, lambda: chart_runs(page), 3, what="the runs on the chart")
        expect(page.locator("#chart rect.bar").last).to_have_attribute("data-name", latest)

        # A run started elsewhere shows up live: running, then counted as a success.
        started = post(server, "/api/job_logs")["name"]
        expect(page.locator("#count-processing")).to_have_text("1")
        expect(page.locator("#count-total")).to_have_text("4")
        expect(page.locator("#run-now")).to_be_disabled()
        wait_finished(server, started)
        stats = get_json(server, "/api/job_logs/stats")
        for key in ("total", "success", "error", "processing", "pending"):
            expect(page.locator(f"#count-{key}")).to_have_text(str(stats[key]))
        expect(page.locator("#latest a")).to_contain_text(started)
        eventually(page, lambda: chart_runs(page), 4, what="the new run on the chart")
        expect(page.locator("#run-now")).to_be_enabled()
        eventually(page, lambda: table_rows(page), api_rows(server), what="the runs table")


def test_run_now_shows_the_run_live_and_in_order_until_its_banner(
    tmp_path: Path, browser: Browser
) -> None:
    with serve(tmp_path, DEMO_DELAY_SECONDS="0.5") as server, watched_page(browser) as watched:
        page = watched.page
        open_overview(page, server, admin=True)
        name = click_run_now(page, f"{server.url}/")
        run_now = page.locator("#run-now")
        expect(run_now).to_be_disabled()
        shown = page.wait_for_function(RUN_SHOWN, arg=name).json_value()
        if shown == "overview":
            page.locator("#latest a").click()
        expect_run_view(page, name)
        assert page.url == f"{server.url}/runs/{name}"

        # Sample the viewport until the banner appears: every sample is a slice of the log.
        samples: list[tuple[list[Line], bool]] = []
        progress: list[tuple[float, float]] = []
        cancel_seen = False
        banner = page.locator("#run-banner")

        def take_sample() -> bool:
            nonlocal cancel_seen
            ended = banner.is_visible()
            samples.append((rendered_lines(page), ended))
            progress.append(page.locator("#run-progress").evaluate("(p) => [p.value, p.max]"))
            if not ended:
                cancel_seen = cancel_seen or page.locator("#cancel-run").is_visible()
            return ended

        wait_for(
            take_sample,
            "the run's banner",
            every=0.04,
            pause=lambda seconds: page.wait_for_timeout(seconds * 1000),
        )
        lines = expect_ended(page, server, name, "success")
        assert lines[-1][1].startswith("Job completed successfully - Total: 1,523 records")
        for sample, _ in samples:
            assert_contiguous(sample, lines)
        live = [sample for sample, ended in samples if not ended and 0 < len(sample) < len(lines)]
        assert live, "no line was shown before the run had ended"
        assert cancel_seen, "#cancel-run was never shown while the run was going"
        ratios = [value / maximum for value, maximum in progress if maximum]
        assert ratios == sorted(ratios), f"the progress went backwards: {progress}"
        value, maximum = page.locator("#run-progress").evaluate("(p) => [p.value, p.max]")
        assert value == maximum, "the progress of a finished run is not full"
        expect(run_now).to_be_enabled()
        expect(page.locator("#cancel-run")).to_be_hidden()
        href = page.locator("#download").evaluate("(a) => a.href")
        assert href == f"{server.url}/api/job_logs/{name}.txt"
        assert (page.locator("#download").get_attribute("href") or "").endswith(
            f"api/job_logs/{name}.txt"
        )

        # Find searches the whole log through the API.
        page.locator("#find").fill("imported (")
        found = get_json(server, f"/api/job_logs/{name}/details?q=imported+(")["items"]
        assert len(found) == 4
        results = page.locator("#find-results li[data-id]")
        expect(results).to_have_count(len(found))
        assert [int(results.nth(i).get_attribute("data-id") or 0) for i in range(4)] == [
            d["id"] for d in found
        ]
        expect(page.locator("#find-count")).to_contain_text("4")


def test_cancel_ends_the_run_with_the_failure_banner(tmp_path: Path, browser: Browser) -> None:
    with serve(tmp_path, DEMO_DELAY_SECONDS="5") as server, watched_page(browser) as watched:
        page = watched.page
        open_overview(page, server, admin=True)
        name = post(server, "/api/job_logs")["name"]
        expect(page.locator("#latest a")).to_contain_text(name)
        page.locator("#latest a").click()
        expect_run_view(page, name)
        expect(page.locator("#run-status")).to_have_class(re.compile(r"\bstatus-processing\b"))
        expect(page.locator("#run-banner")).to_be_hidden()
        cancel = page.locator("#cancel-run")
        expect(cancel).to_be_visible()
        with page.expect_response(lambda r: r.url.endswith(f"/{name}/cancel")) as answer:
            cancel.click()
        assert answer.value.status == 202
        lines = expect_ended(page, server, name, "error")
        assert lines[-1][1] == "ERROR: Cancelled by request"
        expect(cancel).to_be_hidden()
        expect(page.locator("#run-now")).to_be_enabled()


def test_filters_and_pages_narrow_the_table_as_the_api_does(
    tmp_path: Path, browser: Browser
) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    today = datetime.now(UTC).date()
    gap = today - timedelta(days=3)  # no run that day, so "To" may be inclusive or exclusive
    with serve(tmp_path) as server, watched_page(browser) as watched:
        midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
        moments = (midnight - timedelta(hours=1 + 2 * k) for k in range(200))
        for k, started in enumerate(m for m in moments if m.date() != gap):
            if k == 120:
                break
            status = ERROR if k % 3 == 2 else SUCCESS
            last = "ERROR: Fetch failed - timeout" if status == ERROR else "Job completed"
            middle = ["Found a needle in the Zebra batch"] if k % 7 == 0 else []
            add_run(database, started, status, ["Job started - SyncOpenOrdersJob", *middle, last])
        page = watched.page
        open_overview(page, server)
        expect(page.locator("#count-total")).to_have_text("120")
        # Over 30 days the chart holds every run, and every failure.
        page.locator('.windows button[data-window="30d"]').click()
        eventually(page, lambda: chart_runs(page), 120, what="every run on the chart")
        failed = page.locator("#chart").evaluate(
            "(svg) => [...svg.querySelectorAll('rect.bar')].reduce("
            "(n, r) => n + Number(r.dataset.failed), 0)"
        )
        assert failed == get_json(server, "/api/job_logs/stats")["error"]
        page.locator('.windows button[data-window="24h"]').click()

        eventually(page, lambda: len(table_rows(page)) > 0, True, what="a filled table")
        per_page = len(table_rows(page))
        assert per_page < 120, "the table shows every run on one page"

        def expect_table(**query: str | int) -> None:
            expected = api_rows(server, per_page=per_page, **query)
            eventually(page, lambda: table_rows(page), expected, what=f"the table for {query}")

        expect_table()
        expect(page.locator("#prev-page")).to_be_disabled()
        info = page.locator("#page-info").inner_text()
        page.locator("#next-page").click()
        expect_table(page=2)
        expect(page.locator("#prev-page")).to_be_enabled()
        expect(page.locator("#page-info")).not_to_have_text(info)
        page.locator("#prev-page").click()
        expect_table()

        page.locator("#filter-status").select_option("error")
        expect_table(status="error")
        set_filter(page, "#filter-q", "zebra")
        expect_table(status="error", q="zebra")
        page.locator("#filter-status").select_option("")
        expect_table(q="zebra")
        set_filter(page, "#filter-q", "")
        expect_table()
        set_filter(page, "#filter-since", gap.isoformat())
        expect_table(since=gap.isoformat())
        set_filter(page, "#filter-since", (gap - timedelta(days=2)).isoformat())
        set_filter(page, "#filter-until", gap.isoformat())
        expect_table(since=(gap - timedelta(days=2)).isoformat(), until=gap.isoformat())
        set_filter(page, "#filter-since", (today + timedelta(days=1)).isoformat())
        set_filter(page, "#filter-until", "")
        expect_table(since=(today + timedelta(days=1)).isoformat())
        expect(page.locator("#runs-empty")).to_be_visible()


def test_a_filter_changed_as_a_run_starts_still_shows_its_first_page(
    tmp_path: Path, browser: Browser
) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    with serve(tmp_path, DEMO_DELAY_SECONDS="0") as server, watched_page(browser) as watched:
        start = datetime.now(UTC) - timedelta(days=1)
        for k in range(60):
            found = ["Found a needle in the Zebra batch"] if k % 10 == 0 else []
            add_run(database, start + timedelta(minutes=k), SUCCESS, ["Job started", *found])
        page = watched.page
        open_overview(page, server)
        page.locator("#next-page").click()
        eventually(page, lambda: table_rows(page), api_rows(server, page=2), what="page 2")
        # The run's job_log event arrives while the filter waits to be applied.
        set_filter(page, "#filter-q", "zebra")
        run_to_end(server)
        expected = api_rows(server, q="zebra")
        assert len(expected) == 6
        eventually(page, lambda: table_rows(page), expected, what="the table for q=zebra")
        expect(page.locator("#prev-page")).to_be_disabled()


def test_a_click_anywhere_on_a_row_opens_its_run(tmp_path: Path, browser: Browser) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    with serve(tmp_path) as server, watched_page(browser) as watched:
        name = add_run(database, datetime.now(UTC) - timedelta(hours=2), SUCCESS, ["Done"])
        page = watched.page
        open_overview(page, server)
        row = page.locator(f'#runs-table tbody tr[data-name="{name}"]')
        expect(row).to_be_visible()
        row.locator("td").last.click()
        expect_run_view(page, name)
        assert page.url == f"{server.url}/runs/{name}"


def test_a_message_with_markup_is_shown_as_text(tmp_path: Path, browser: Browser) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    markup = '<img src=x onerror="window.__xss=1">'
    with serve(tmp_path, DEMO_DELAY_SECONDS="0") as server, watched_page(browser) as watched:
        name = run_to_end(server)
        detail = add_detail(database, name, markup)
        page = watched.page
        open_overview(page, server)
        open_run_from_table(page, name)
        lines = expect_ended(page, server, name, "success")
        assert lines[-1] == (detail, markup)
        assert page.locator("#run-lines img").count() == 0
        expect(page.locator(f'#run-lines li.line[data-id="{detail}"] .message')).to_have_text(
            markup
        )
        page.locator("#find").fill("onerror")
        expect(page.locator("#find-results li[data-id]")).to_have_count(1)
        expect(page.locator("#find-results")).to_contain_text(markup)
        assert page.locator("#find-results img").count() == 0
        assert page.locator("img").count() == 0
        assert page.evaluate("() => window.__xss") is None


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_restart_mid_run_resumes_the_lines_without_gap_or_repeat(
    tmp_path: Path, browser: Browser, signum: int
) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    with serve(tmp_path) as first, watched_page(browser) as watched:
        watched.expect_network_errors(r"net::ERR_")
        page = watched.page
        with run_once_beside(tmp_path) as name:
            follow_run_of_another_process(page, first, name)
            assert statuses(database)[-1] == (name, PROCESSING), "the run ended too soon"
            first.stop(signum)
            connection = page.locator("#connection")
            expect(connection).to_have_attribute("data-state", "reconnecting")
            expect(connection).to_have_text("reconnecting")
            with serve(tmp_path, PORT=str(first.port)) as second:
                expect(connection).to_have_attribute("data-state", "live")
                expect(connection).to_have_text("live")
                lines = expect_ended(page, second, name, "success")
                assert lines[-1][1].startswith("Job completed successfully")
                assert len(lines) == 12
                expect(connection).to_have_attribute("data-state", "live")


def test_cancelling_a_run_of_another_process_says_why_not(tmp_path: Path, browser: Browser) -> None:
    with serve(tmp_path) as server, watched_page(browser) as watched:
        watched.expect_network_errors(r"status of 409\b")
        page = watched.page
        with run_once_beside(tmp_path, delay="1") as name:
            follow_run_of_another_process(page, server, name, admin=True)
            cancel = page.locator("#cancel-run")
            if cancel.is_visible():  # the page may not know who runs it: the service says 409
                with page.expect_response(lambda r: r.url.endswith(f"/{name}/cancel")) as answer:
                    cancel.click()
                assert answer.value.status == 409
                message = page.locator("#message")
                expect(message).to_be_visible()
                expect(message).to_contain_text("another process")
            expect(page.locator("#run-now")).to_be_disabled()
        lines = expect_ended(page, server, name, "success")
        assert len(lines) == 12


def test_a_proxy_error_during_a_restart_does_not_freeze_the_run_view(
    tmp_path: Path, browser: Browser
) -> None:
    """Behind nginx, a restart answers 502 to the event stream's reconnect; EventSource gives up
    on any answer but 200, so the page itself must follow the run again."""
    database = tmp_path / "data" / "joblog.sqlite3"
    with serve(tmp_path) as first, watched_page(browser) as watched:
        watched.expect_network_errors(r"net::ERR_", r"status of 502\b")
        page = watched.page
        streams: list[str] = []

        def proxy(route: Route) -> None:
            streams.append(route.request.url)
            if len(streams) == 2:  # the reconnect while the service restarts
                route.fulfill(status=502, content_type="text/html", body="<h1>502</h1>")
            else:
                route.continue_()

        page.route(re.compile(r"/api/events\?job_log="), proxy)
        # Slow batches: the run must outlast the stop even on a loaded machine (a run that ends
        # before it sends "end", and the page rightly follows it no more).
        with run_once_beside(tmp_path, delay="3") as name:
            follow_run_of_another_process(page, first, name)
            assert statuses(database)[-1] == (name, PROCESSING), "the run ended too soon"
            first.stop(signal.SIGTERM)
            eventually(
                page, lambda: len(streams) >= 2, True, what="a reconnect of the run's stream"
            )
            with serve(tmp_path, PORT=str(first.port)) as second:
                expect(page.locator("#connection")).to_have_attribute("data-state", "live")
                lines = expect_ended(page, second, name, "success")
                assert len(lines) == 12


def test_a_deep_link_opens_its_run_and_back_and_forward_work(
    tmp_path: Path, browser: Browser
) -> None:
    with serve(tmp_path, DEMO_DELAY_SECONDS="0.1") as server, watched_page(browser) as watched:
        first = run_to_end(server)
        second = run_to_end(server, cancel=True)
        page = watched.page
        watched.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        page.goto(f"{server.url}/runs/{first}")
        expect_run_view(page, first)
        expect_ended(page, server, first, "success")
        page.locator("#copy-link").click()
        eventually(
            page,
            lambda: page.evaluate("() => navigator.clipboard.readText()"),
            f"{server.url}/runs/{first}",
            what="the copied link",
        )

        page.locator("#back").click()
        expect(page.locator("#overview-view")).to_be_visible()
        expect(page.locator("#run-view")).to_be_hidden()
        assert page.url == f"{server.url}/"
        page.locator(f'#chart rect.bar[data-name="{second}"]').click()
        expect_run_view(page, second)
        assert page.url == f"{server.url}/runs/{second}"
        expect_ended(page, server, second, "error")

        page.go_back()
        expect(page.locator("#overview-view")).to_be_visible()
        expect(page.locator("#run-view")).to_be_hidden()
        page.go_back()
        expect_run_view(page, first)
        assert page.url == f"{server.url}/runs/{first}"
        expect_ended(page, server, first, "success")
        page.go_forward()
        expect(page.locator("#overview-view")).to_be_visible()
        expect(page.locator("#count-total")).to_have_text("2")
        page.go_forward()
        expect_run_view(page, second)
        expect_ended(page, server, second, "error")
        page.reload()
        expect_run_view(page, second)
        expect_ended(page, server, second, "error")


def test_a_long_log_renders_only_the_visible_lines(tmp_path: Path, browser: Browser) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    messages = [f"Line {i:05d} of a long log" for i in range(5000)]
    with serve(tmp_path) as server, watched_page(browser) as watched:
        name = add_run(database, datetime.now(UTC) - timedelta(hours=1), SUCCESS, messages)
        lines = api_lines(server, name)
        page = watched.page
        open_overview(page, server)
        open_run_from_table(page, name)
        expect(page.locator("#run-banner")).to_contain_text("succeeded")
        viewport = page.locator("#run-lines")
        viewport.evaluate("(v) => { v.scrollTop = 0; }")
        eventually(page, lambda: rendered_lines(page)[:1], lines[:1], what="the first line")
        top = rendered_lines(page)
        assert 0 < len(top) < 300, f"{len(top)} lines in the DOM for a 5,000-line log"
        assert_contiguous(top, lines)
        viewport.evaluate("(v) => { v.scrollTop = v.scrollHeight; }")
        eventually(page, lambda: rendered_lines(page)[-1:], lines[-1:], what="the last line")
        bottom = rendered_lines(page)
        assert 0 < len(bottom) < 300
        assert_contiguous(bottom, lines)
        page.locator("#find").fill("line 04321")
        results = page.locator("#find-results li[data-id]")
        expect(results).to_have_count(1)
        assert results.first.get_attribute("data-id") == str(lines[4321][0])


def test_scrolling_up_holds_the_view_and_jump_to_latest_follows_again(
    tmp_path: Path, browser: Browser
) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    with serve(tmp_path, DEMO_DELAY_SECONDS="3") as server, watched_page(browser) as watched:
        page = watched.page
        open_overview(page, server)
        name = post(server, "/api/job_logs")["name"]
        expect(page.locator("#latest a")).to_contain_text(name)
        page.locator("#latest a").click()
        expect_run_view(page, name)
        viewport = page.locator("#run-lines")
        jump = page.locator("#jump-latest")

        def last_shown() -> int:
            shown = rendered_lines(page)
            return shown[-1][0] if shown else 0

        # Lines written by another writer arrive live; the view follows the tail.
        added = [add_detail(database, name, f"Extra line {i:03d}") for i in range(80)]
        eventually(page, last_shown, api_lines(server, name)[-1][0], what="the last line shown")
        expect(jump).to_be_hidden()

        # Scrolled up, the view stays put while lines arrive, and offers to jump.
        viewport.evaluate("(v) => { v.scrollTop = 0; }")
        expect(jump).to_be_visible()
        height = viewport.evaluate("(v) => v.scrollHeight")
        newest = add_detail(database, name, "A line while scrolled up")
        eventually(
            page, lambda: viewport.evaluate("(v) => v.scrollHeight") > height, True, what="growth"
        )
        assert viewport.evaluate("(v) => v.scrollTop") == 0
        assert rendered_lines(page)[0] == api_lines(server, name)[0]
        jump.click()
        eventually(page, last_shown, newest, what="the last line shown after the jump")
        expect(jump).to_be_hidden()
        newest = add_detail(database, name, "A line after the jump")
        eventually(page, last_shown, newest, what="the last line shown, following again")

        post(server, f"/api/job_logs/{name}/cancel")
        lines = expect_ended(page, server, name, "error")
        assert len(lines) > 80
        assert {i for i, _ in lines} >= set(added)


def test_a_deep_link_asks_for_a_token_and_then_opens_its_run(
    tmp_path: Path, browser: Browser
) -> None:
    with serve(tmp_path, **NO_GUESTS) as server, watched_page(browser) as watched:
        watched.expect_network_errors(r"status of 403\b")
        name = run_to_end(server)
        page = watched.page
        asked: list[str] = []
        page.on("request", lambda r: asked.append(urllib.parse.urlsplit(r.url).path))
        page.goto(f"{server.url}/runs/{name}")
        expect_sign_in_form(page)
        assert page.url == f"{server.url}/runs/{name}"
        assert name not in page.content()

        sign_in_with_form(page, "a-wrong-token-of-enough-length")
        error = page.locator("#signin-error")
        expect(error).to_have_text("That token is not valid.")
        expect_sign_in_form(page)
        assert page.url == f"{server.url}/runs/{name}"
        # Nothing but the question who is asking, and the sign-in, before signing in.
        assert {path for path in asked if path.startswith("/api/")} == {"/api/session"}

        sign_in_with_form(page, TOKEN)
        expect_signed_in(page, "admin")
        expect(error).to_be_hidden()
        expect_run_view(page, name)
        assert page.url == f"{server.url}/runs/{name}"
        expect_ended(page, server, name, "success")
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        expect(page.locator("#source")).to_have_text("demo source")


def test_the_sign_in_link_signs_in_as_admin_and_leaves_no_trace_of_the_token(
    tmp_path: Path, browser: Browser
) -> None:
    with serve(tmp_path, **NO_GUESTS) as server, watched_page(browser) as watched:
        name = run_to_end(server)
        page = watched.page
        said: list[str] = []
        asked: list[str] = []
        page.on("console", lambda message: said.append(message.text))
        page.on("request", lambda r: asked.append(r.url))
        page.goto(f"{server.url}/#signin={TOKEN}", wait_until="domcontentloaded")
        # Out of the address bar before the page does anything else (path and query kept).
        assert page.url == f"{server.url}/"
        expect_signed_in(page, "admin")
        expect(page.locator("#sign-out")).to_be_visible()
        expect(page.locator("#sign-in")).to_be_hidden()
        expect(page.locator("#latest a")).to_contain_text(name)
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        assert page.url == f"{server.url}/"
        assert TOKEN not in stored_text(page)
        assert not any(TOKEN in url for url in asked), asked
        assert not any(TOKEN in text for text in said), said
        (cookie,) = [c for c in watched.context.cookies() if c["name"] == "joblog_session"]
        assert cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict"
        assert TOKEN not in cookie["value"]

        # The same with a query and a deep link: both stay, only the fragment goes.
        page.goto(f"{server.url}/runs/{name}?from=mail#signin={TOKEN}", wait_until="commit")
        expect_run_view(page, name)
        assert page.url == f"{server.url}/runs/{name}?from=mail"
        expect_ended(page, server, name, "success")
        assert TOKEN not in stored_text(page)


def test_a_viewer_sees_the_runs_but_neither_run_now_nor_cancel(
    tmp_path: Path, browser: Browser
) -> None:
    env = {**NO_GUESTS, "VIEW_TOKEN": VIEW_TOKEN, "DEMO_DELAY_SECONDS": "5"}
    with serve(tmp_path, **env) as server, watched_page(browser) as watched:
        watched.expect_network_errors(r"status of 403\b")
        name = post(server, "/api/job_logs")["name"]
        page = watched.page
        sign_in_by_link(page, server, token=VIEW_TOKEN)
        expect_signed_in(page, "viewer")
        expect(page.locator("#sign-out")).to_be_visible()
        expect(page.locator("#count-processing")).to_have_text("1")
        eventually(page, lambda: table_rows(page), api_rows(server), what="the runs table")
        open_run_from_table(page, name)
        expect(page.locator("#run-status")).to_have_class(re.compile(r"\bstatus-processing\b"))
        expect(page.locator("#run-lines li.line").first).to_be_visible()
        expect(page.locator("#cancel-run")).to_be_hidden()
        expect(page.locator("#run-now")).to_be_hidden()

        # The buttons are not all: the service refuses a viewer's action made by hand.
        forged = """async (path) => {
            const r = await fetch(path, {method: 'POST', headers: {Accept: 'application/json'}});
            return [r.status, (await r.json()).error];
        }"""
        status, error = page.evaluate(forged, "api/job_logs")
        assert status == 403, error
        status, error = page.evaluate(forged, f"api/job_logs/{name}/cancel")
        assert status == 403, error
        assert get_json(server, f"/api/job_logs/{name}")["status"] == "processing"
        assert get_json(server, "/api/job_logs/stats")["total"] == 1
        post(server, f"/api/job_logs/{name}/cancel")
        expect_ended(page, server, name, "error")
        expect(page.locator("#cancel-run")).to_be_hidden()


def test_a_guest_on_this_machine_sees_the_runs_and_may_sign_in_as_admin(
    tmp_path: Path, browser: Browser
) -> None:
    with serve(tmp_path, DEMO_DELAY_SECONDS="0.1") as server, watched_page(browser) as watched:
        first = run_to_end(server)
        page = watched.page
        open_overview(page, server)
        expect_signed_in(page, "guest (view only)")
        expect(page.locator("#latest a")).to_contain_text(first)
        eventually(page, lambda: table_rows(page), api_rows(server), what="the runs table")
        expect(page.locator("#sign-out")).to_be_hidden()
        sign_in = page.locator("#sign-in")
        expect(sign_in).to_be_visible()

        # Sign in opens the form; Cancel goes back to the read-only page.
        sign_in.click()
        expect(page.locator("#signin-view")).to_be_visible()
        expect(page.locator("#overview-view")).to_be_hidden()
        expect(sign_in).to_be_hidden()
        page.locator("#signin-cancel").click()
        expect(page.locator("#signin-view")).to_be_hidden()
        expect(page.locator("#overview-view")).to_be_visible()
        expect_signed_in(page, "guest (view only)")

        sign_in.click()
        sign_in_with_form(page, TOKEN)
        expect_signed_in(page, "admin")
        expect(page.locator("#sign-out")).to_be_visible()
        expect(sign_in).to_be_hidden()
        expect(page.locator("#overview-view")).to_be_visible()
        name = click_run_now(page, f"{server.url}/")
        expect_run_view(page, name)
        expect_ended(page, server, name, "success")


def test_sign_out_is_one_click_and_forgets_the_session(tmp_path: Path, browser: Browser) -> None:
    with serve(tmp_path, **NO_GUESTS) as server, watched_page(browser) as watched:
        name = run_to_end(server)
        page = watched.page
        open_overview(page, server, admin=True)
        expect(page.locator("#latest a")).to_contain_text(name)
        assert [c["name"] for c in watched.context.cookies()] == ["joblog_session"]
        with page.expect_response(lambda r: r.request.method == "DELETE") as answer:
            page.locator("#sign-out").click()
        assert answer.value.status == 204
        expect_sign_in_form(page)
        expect(page.locator("#signin-note")).to_have_text("You are signed out.")
        assert watched.context.cookies() == []
        assert name not in page.content(), "the signed-out page still holds the runs"
        page.reload()
        expect_sign_in_form(page)
        expect(page.locator("#signin-note")).to_be_hidden()

        # A sign-in link opened in this very tab (only the fragment changes) signs in too.
        page.goto(f"{server.url}/#signin={TOKEN}")
        expect_signed_in(page, "admin")
        assert page.url == f"{server.url}/"
        expect(page.locator("#latest a")).to_contain_text(name)


def test_a_changed_token_ends_the_session_and_the_refused_stream_brings_up_the_form(
    tmp_path: Path, browser: Browser
) -> None:
    """The service restarts with another admin token: the event stream's reconnect is refused
    (401) and the browser gives up on it; the page asks who it is rather than retrying."""
    with serve(tmp_path, **NO_GUESTS) as first, watched_page(browser) as watched:
        watched.expect_network_errors(r"status of 40[13]\b", r"net::ERR_")
        name = run_to_end(first)
        page = watched.page
        open_overview(page, first, admin=True)
        expect(page.locator("#latest a")).to_contain_text(name)
        first.stop(signal.SIGTERM)
        expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")
        changed = "another-admin-token-after-restart"
        with serve(tmp_path, **NO_GUESTS, PORT=str(first.port), ADMIN_TOKEN=changed):
            # Nothing done on the page: the stream alone finds out.
            expect(page.locator("#signin-view")).to_be_visible(timeout=20_000)
            expect(page.locator("#signin-note")).to_have_text(re.compile(r"session has ended"))
            expect(page.locator("#overview-view")).to_be_hidden()
            sign_in_with_form(page, TOKEN)
            expect(page.locator("#signin-error")).to_have_text("That token is not valid.")
            sign_in_with_form(page, changed)
            expect_signed_in(page, "admin")
            expect(page.locator("#latest a")).to_contain_text(name)
            expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def test_an_expired_session_asks_to_sign_in_again_and_goes_on_at_the_same_run(
    tmp_path: Path, browser: Browser
) -> None:
    # 3.6 s, which the service signs rounded down to the second: between 2.6 and 3.6 s.
    env = {**NO_GUESTS, "SESSION_HOURS": "0.001", "DEMO_DELAY_SECONDS": "0"}
    with serve(tmp_path, **env) as server, watched_page(browser) as watched:
        watched.expect_network_errors(r"status of 401\b")
        name = run_to_end(server)
        page = watched.page
        sign_in_by_link(page, server, f"/runs/{name}")
        expect_run_view(page, name)
        expect(page.locator("#run-banner")).to_contain_text("succeeded")
        who = "async () => (await (await fetch('api/session')).json()).role"
        eventually(page, lambda: page.evaluate(who), None, what="the role after 4 s", timeout=6)

        # The next request the page makes is refused: back to the form, at the same address.
        page.locator("#find").fill("imported")
        expect(page.locator("#signin-view")).to_be_visible()
        expect(page.locator("#signin-note")).to_have_text(re.compile(r"session has ended"))
        expect(page.locator("#run-view")).to_be_hidden()
        assert page.url == f"{server.url}/runs/{name}"
        sign_in_with_form(page, TOKEN)
        expect_signed_in(page, "admin")
        expect_run_view(page, name)
        expect(page.locator("#run-banner")).to_contain_text("succeeded")
        assert page.url == f"{server.url}/runs/{name}"


def expect_freshness(page: Page, state: str, *texts: str) -> None:
    """The header's freshness in ``state``, saying each of ``texts``; the tab's title and
    icon marked as the state is."""
    box = page.locator("#freshness")
    expect(box).to_have_attribute("data-state", state)
    for text in texts:
        expect(box).to_contain_text(text)
    marks = {
        "late": "Late · ",
        "never": "Never synced · ",
        "paused": "Paused · ",
        "failed": "Failed · ",
    }
    if state in marks:
        expect(page).to_have_title(re.compile("^" + re.escape(marks[state])))
    else:
        expect(page).to_have_title(re.compile("^(?!Late|Never|Paused|Failed)"))
    colours = {"fresh": "1a7f37", "late": "b35900", "never": "59636e", "paused": "59636e"}
    icon = page.locator('link[rel="icon"]').get_attribute("href") or ""
    assert f"%23{colours.get(state, 'cf222e')}" in icon, icon


def test_the_header_says_whether_the_data_is_fresh_and_why_not(
    tmp_path: Path, browser: Browser
) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    now = datetime.now(UTC)
    with (
        serve(tmp_path, SYNC_INTERVAL_SECONDS="300", DEMO_DELAY_SECONDS="0") as server,
        watched_page(browser) as watched,
    ):
        page = watched.page
        open_overview(page, server)
        expect_freshness(page, "never", "Never synced")
        # A success two hours ago and a failure since: late, with the failure's first line.
        add_run(database, now - timedelta(hours=2), SUCCESS, ["Job completed successfully"])
        failed = add_run(
            database,
            now - timedelta(hours=1),
            ERROR,
            [
                "Connecting to SQL Server CASQL2.inxintl.com...",
                "ERROR: Login failed for user 'sync'\nstate 28000",
            ],
        )
        expect_freshness(
            page,
            "late",
            "no success since",
            "2 hours ago",
            "Last error: ERROR: Login failed for user 'sync'",
        )
        # The answer to "why" is one click away.
        page.locator("#freshness a").click()
        expect_run_view(page, failed)
        page.go_back()
        # A success now: fresh, aging in place.
        run_to_end(server)
        expect_freshness(page, "fresh", "last success")
        # Fresh still, but the latest run failed: the tab says so.
        # (A second on, so that its name is not the run's just made.)
        later = datetime.now(UTC) + timedelta(seconds=2)
        add_run(database, later, ERROR, ["ERROR: Fetch failed - timeout"])
        expect_freshness(page, "failed", "Last error: ERROR: Fetch failed - timeout")


def test_outside_its_schedule_the_sync_is_paused_not_late(tmp_path: Path, browser: Browser) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    # Every minute of 03:00 on the 1st of January only.
    with (
        serve(tmp_path, SYNC_SCHEDULE="* 3 1 1 *", TIMEZONE="Europe/Berlin") as server,
        watched_page(browser) as watched,
    ):
        add_run(
            database, datetime.now(UTC) - timedelta(days=3), SUCCESS, ["Job completed successfully"]
        )
        page = watched.page
        open_overview(page, server)
        expect_freshness(page, "paused", "outside the schedule", "next run")
        status = get_json(server, "/api/status")
        assert status["sync"]["state"] == "paused"
        assert len(status["sync"]["next_runs"]) == 3


def test_screenshots_of_the_sign_in_the_overview_and_a_run_light_and_dark(
    tmp_path: Path, browser: Browser
) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serve(tmp_path, SYNC_INTERVAL_SECONDS="3600", **NO_GUESTS) as server:
        start = datetime.now(UTC) - timedelta(days=2)
        for k in range(40):
            status = ERROR if k in (7, 23, 31) else SUCCESS
            last = "ERROR: Fetch failed - timeout" if status == ERROR else "Job completed"
            add_run(database, start + timedelta(hours=k), status, ["Job started", last])
        run_to_end(server, cancel=True)
        name = run_to_end(server)
        backgrounds: dict[str, str] = {}
        for scheme in ("light", "dark"):
            with watched_page(browser, color_scheme=scheme) as watched:
                page = watched.page
                page.goto(f"{server.url}/")
                expect_sign_in_form(page)
                page.screenshot(path=SCREENSHOTS / f"signin-{scheme}.png")
                sign_in_with_form(page, TOKEN)
                expect_signed_in(page, "admin")
                expect(page.locator("#connection")).to_have_attribute("data-state", "live")
                expect(page.locator("#count-total")).to_have_text("42")
                expect(page.locator("#runs-table tbody tr[data-name]").first).to_be_visible()
                page.screenshot(path=SCREENSHOTS / f"overview-{scheme}.png")
                backgrounds[scheme] = page.evaluate(
                    "() => getComputedStyle(document.body).backgroundColor"
                )
                open_run_from_table(page, name)
                expect_ended(page, server, name, "success")
                page.locator("#run-lines").evaluate("(v) => { v.scrollTop = 0; }")
                page.screenshot(path=SCREENSHOTS / f"run-{scheme}.png")
        server.stop()
    for shot in ("signin", "overview", "run"):
        for scheme in ("light", "dark"):
            assert png_size(SCREENSHOTS / f"{shot}-{scheme}.png") == (1280, 800)
    assert backgrounds["light"] != backgrounds["dark"], "the page has no dark colours"


SCHEMES: tuple[Literal["light", "dark"], ...] = ("light", "dark")
DRIVER_ERROR = (
    "ERROR: Connection failed - [08001] [FreeTDS][SQL Server]Unable to connect: Adaptive Server "
    "is unavailable or does not exist (SQLDriverConnect); [08001] [FreeTDS][SQL Server]Unable "
    "to connect to data source (SQLDriverConnect)\nServer: CASQL2.inxintl.com, port 1433, "
    "login timeout 15 s"
)


def test_screenshots_of_a_late_sync_a_failed_run_a_live_run_and_a_phone_light_and_dark(
    tmp_path: Path, browser: Browser
) -> None:
    """The overview when the sync is late (why, in its header), the failed run it points to
    (the error quoted in full, wrapped), a run going on with its progress, and the overview
    at a phone's width."""
    database = tmp_path / "data" / "joblog.sqlite3"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with serve(tmp_path, SYNC_INTERVAL_SECONDS="3600", DEMO_DELAY_SECONDS="1.5") as server:
        start = datetime.now(UTC) - timedelta(days=2)
        for k in range(43):
            add_run(database, start + timedelta(hours=k), SUCCESS, ["Job started", "Job completed"])
        failed = ""
        for k in range(43, 48):
            failed = add_run(
                database,
                start + timedelta(hours=k),
                ERROR,
                [
                    "Job started - SyncOpenOrdersJob",
                    "Connecting to SQL Server CASQL2.inxintl.com...",
                    DRIVER_ERROR,
                ],
            )
        for scheme in SCHEMES:
            with watched_page(browser, color_scheme=scheme) as watched:
                page = watched.page
                sign_in_by_link(page, server)
                expect_freshness(page, "late", "Last error: ERROR: Connection failed")
                page.screenshot(path=SCREENSHOTS / f"overview-late-{scheme}.png")
                page.locator("#freshness a").click()
                expect_run_view(page, failed)
                banner = page.locator("#run-banner")
                expect(banner).to_contain_text("login timeout 15 s")  # the error's last line
                expect(banner.locator("a")).to_have_text("line 3")
                page.screenshot(path=SCREENSHOTS / f"run-failed-{scheme}.png")
                page.set_viewport_size({"width": 390, "height": 844})
                page.goto(f"{server.url}/")
                expect_freshness(page, "late")
                page.screenshot(path=SCREENSHOTS / f"phone-{scheme}.png")
        name = post(server, "/api/job_logs")["name"]
        for scheme in SCHEMES:
            with watched_page(browser, color_scheme=scheme) as watched:
                page = watched.page
                sign_in_by_link(page, server, f"/runs/{name}")
                expect(page.locator("#run-progress")).to_be_visible()
                page.screenshot(path=SCREENSHOTS / f"run-live-{scheme}.png")
        wait_finished(server, name)
        server.stop()
    for shot in ("overview-late", "run-failed", "run-live"):
        for scheme in SCHEMES:
            assert png_size(SCREENSHOTS / f"{shot}-{scheme}.png") == (1280, 800)
    for scheme in SCHEMES:
        assert png_size(SCREENSHOTS / f"phone-{scheme}.png") == (390, 844)


def test_line_anchors_wrap_toggle_and_previous_next(tmp_path: Path, browser: Browser) -> None:
    database = tmp_path / "data" / "joblog.sqlite3"
    with serve(tmp_path) as server, watched_page(browser) as watched:
        start = datetime.now(UTC) - timedelta(hours=3)
        long = "x" * 400
        first = add_run(database, start, SUCCESS, ["one"])
        middle = add_run(
            database, start + timedelta(hours=1), ERROR, ["a", long, "two\nlines", DRIVER_ERROR]
        )
        last = add_run(database, start + timedelta(hours=2), SUCCESS, ["three"])
        page = watched.page
        sign_in_by_link(page, server)
        page.goto(f"{server.url}/runs/{middle}#L2")
        expect_run_view(page, middle)
        # The anchor's line is marked and in view; every line has its number.
        expect(page.locator("#L2")).to_have_class(re.compile(r"\btarget\b"))
        expect(page.locator("#L2")).to_be_in_viewport()
        expect(page.locator("#run-lines .lineno")).to_have_text(["1", "2", "3", "4"])
        # Wrapped by default: a long message and a two-line one take several rows.
        row = page.locator("#L1").bounding_box()
        wrapped = page.locator("#L2").bounding_box()
        two = page.locator("#L3").bounding_box()
        assert row is not None
        assert wrapped is not None
        assert two is not None
        assert wrapped["height"] > 2 * row["height"]
        assert two["height"] >= 2 * row["height"] - 1
        # One line each, remembered across a reload.
        page.locator("#wrap-toggle").click()
        expect(page.locator("#wrap-toggle")).to_have_attribute("aria-pressed", "false")
        page.reload()
        expect_run_view(page, middle)
        expect(page.locator("#wrap-toggle")).to_have_attribute("aria-pressed", "false")
        one = page.locator("#L2").bounding_box()
        assert one is not None
        assert abs(one["height"] - row["height"]) < 1
        # A line number is a link to its line: the address says so.
        page.locator("#L4 .lineno").click()
        assert page.url.endswith(f"/runs/{middle}#L4")
        expect(page.locator("#L4")).to_have_class(re.compile(r"\btarget\b"))
        # Previous and next runs.
        expect(page.locator("#run-prev")).to_have_attribute("href", f"runs/{first}")
        page.locator("#run-next").click()
        expect_run_view(page, last)
        expect(page.locator("#run-next")).to_be_hidden()
        page.locator("#run-prev").click()
        expect_run_view(page, middle)


def test_the_chart_draws_the_api_s_buckets_gaps_and_failures_on_a_time_axis(
    tmp_path: Path, browser: Browser
) -> None:
    """Hourly runs over a week with a day of silence (the service down) and failures, some of
    them instant: the 7-day chart's bars, hatched failures and gap marks are the API's."""
    database = tmp_path / "data" / "joblog.sqlite3"
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with serve(tmp_path, SYNC_INTERVAL_SECONDS="3600") as server:
        for hours in range(6 * 24, 0, -1):
            if 3 * 24 <= hours < 4 * 24:
                continue  # a day without runs
            failed = hours % 17 == 0
            messages = (
                ["ERROR: Fetch failed - timeout"]
                if failed
                else ["Job completed successfully - Total: 1,523 records in 2.3 seconds"]
            )
            add_run(database, now - timedelta(hours=hours), ERROR if failed else SUCCESS, messages)
        for scheme in SCHEMES:
            with watched_page(browser, color_scheme=scheme) as watched:
                page = watched.page
                open_overview(page, server)
                with page.expect_response(
                    lambda r: "/api/job_logs/timeline" in r.url and "buckets=336" in r.url
                ) as seen:
                    page.locator('.windows button[data-window="7d"]').click()
                drawn = seen.value.json()
                bars = page.locator("#chart rect.bar")
                expect(bars).to_have_count(len(drawn["buckets"]))
                shown = bars.evaluate_all(
                    "(rects) => rects.map((r) => [r.dataset.start, r.dataset.name, "
                    "Number(r.dataset.runs), Number(r.dataset.failed), "
                    "r.getAttribute('fill'), r.getBBox().height, "
                    "r.querySelector('title').textContent])"
                )
                for (start, name, runs, failed, fill, height, title), bucket in zip(
                    shown, drawn["buckets"], strict=True
                ):
                    assert (start, name, runs, failed) == (
                        bucket["start"],
                        bucket["latest_name"],
                        bucket["runs"],
                        bucket["failed"],
                    )
                    # Hover names what the latest run imported, when it succeeded.
                    succeeded = bucket["latest_status"] == "success"
                    assert bucket["latest_records"] == (1523 if succeeded else None)
                    assert ("1,523 records" in title) == succeeded, title
                    if failed:
                        # Hatched and never flat, whatever the colours.
                        assert fill == "url(#hatch)"
                        assert height >= 6
                assert sum(bucket["failed"] for bucket in drawn["buckets"]) == len(
                    [h for h in range(6 * 24, 0, -1) if h % 17 == 0 and not 72 <= h < 96]
                )
                # The silent day is a gap the schedule wanted runs in, marked under the axis.
                (gap,) = drawn["gaps"]
                assert gap["start"] <= (now - timedelta(hours=95)).isoformat()
                gaps = page.locator("#chart rect.gap")
                expect(gaps).to_have_count(1)
                assert gaps.get_attribute("data-gap-start") == gap["start"]
                expect(page.locator("#chart .gap-mark")).to_have_count(1)
                # A bar opens its latest run.
                page.locator("#chart").scroll_into_view_if_needed()
                page.screenshot(path=SCREENSHOTS / f"chart-7d-{scheme}.png")
                last = drawn["buckets"][-1]["latest_name"]
                bars.last.click()
                expect_run_view(page, last)
        server.stop()
