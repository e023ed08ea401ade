"""Deploying it: docs/deploy/ run for real — nginx in front of the server process, the systemd
unit checked by systemd, the Containerfile read line by line.

nginx (tests/support/nginx.py) serves the service under /joblog/ twice: with
``docs/deploy/nginx-joblog.conf`` as written (only its ports changed; the service set up as
``joblog.service`` sets it up, tokens in files) and with a bare ``proxy_pass`` and nothing else
(nginx's HTTP/1.0, no forwarding header, buffering on; nginx is not among the service's
TRUSTED_PROXIES). Through both, Chromium signs in on the page and follows a run live while the
proxy restarts under it; a client without a credential reads nothing and starts nothing, a
viewer reads and follows but does not act, forged forwarding and user headers change nothing.
Through the documented configuration the service sees the real client's address and the
/joblog/ prefix.

The container image cannot be built here (no container engine): its file is read for what it
must say, its install step is built as a wheel from exactly what it copies, and its health
check is run against a server started with its environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from service.settings import SettingsError
from tests.support.browser import eventually, watched_page
from tests.support.deploy import (
    ADMIN,
    ROOT,
    UNIT,
    VIEWER,
    Stack,
    container_env,
    serve_behind_nginx,
    the,
    unit_credentials,
    unit_environment,
    unit_options,
    verifiable_unit,
    write_secret,
)
from tests.support.http_client import bearer, call
from tests.support.joblogs import detail_rows, status_of
from tests.support.netns import outside_address
from tests.support.nginx import DEPLOY_SITE, DOCUMENTED_UPSTREAM
from tests.support.page import click_run_now, expect_signed_in, rendered_lines, sign_in_with_form
from tests.support.server import ServerProcess, settings_from
from tests.support.stream_clients import CurlStream, Event, EventStream
from tests.support.system import free_port, require_command
from tests.support.wait import wait_for
from tests.support.wheel import build_wheel

pytestmark = pytest.mark.integration

# Headers a client sends to pass for the proxy, for this machine, or for an admin.
FORGED = {"X-Forwarded-For": "127.0.0.1", "Remote-User": "admin"}
# How far behind its commit a line may reach a reader through the proxy (what "live" means).
LIVE_SECONDS = 1.0
# What the browser says of a request to a proxy that is going or gone (ERR_CONNECTION_REFUSED,
# ERR_CONNECTION_RESET, ERR_EMPTY_RESPONSE, ERR_INCOMPLETE_CHUNKED_ENCODING, ...): never an
# answer's status.
PROXY_DOWN = r"Failed to load resource: net::ERR_[A-Z_]+ "

# Notes when each log line first appears in the page (ms since the epoch, by detail id).
_WATCH_LINES = """() => {
    window.__seen = {};
    const note = () => {
        for (const li of document.querySelectorAll('#run-lines li.line[data-id]')) {
            if (!(li.dataset.id in window.__seen)) window.__seen[li.dataset.id] = Date.now();
        }
    };
    new MutationObserver(note).observe(document.body, {childList: true, subtree: true});
}"""


def committed(created_at: str) -> float:
    """A detail's ``created_at`` (API: ISO with Z; database: ``YYYY-MM-DD HH:MM:SS.ffffff``
    UTC) as seconds since the epoch."""
    moment = datetime.fromisoformat(created_at.replace(" ", "T").removesuffix("Z"))
    return moment.replace(tzinfo=UTC).timestamp()


@pytest.fixture(params=["deploy", "bare"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """The service behind nginx, with the documented configuration and with a bare one."""
    with serve_behind_nginx(request.param, tmp_path) as serving:
        yield serving


# --- the page, live, through the proxy ------------------------------------------------------------


@dataclass(frozen=True)
class Cut:
    """What a proxy restart in the middle of a run left: the lines a reader had before it, the
    lines written while the proxy was down, when it was back, where its access log went on."""

    before: list[Event]
    last_seen: int
    written_while_down: set[int]
    back: float
    log_mark: int


def restart_proxy_mid_run(stack: Stack, reader: EventStream, name: str) -> Cut:
    """Stop nginx (its streams are cut), wait for a line of the run to be written meanwhile,
    start nginx again; the run must still be going."""
    stack.nginx.stop()
    assert reader.done.wait(10), "the stream outlived the proxy"
    before = reader.details(name)
    last_seen = before[-1].id
    assert last_seen is not None
    wait_for(
        lambda: detail_rows(stack.database, name)[-1][0] > last_seen,
        "a line written while the proxy is down",
        within=30,
    )
    written = {i for i, _, _ in detail_rows(stack.database, name)} - {e.id for e in before}
    mark = len(stack.nginx.access_log())
    stack.nginx.start()
    back = time.time()
    assert status_of(stack.database, name) == 1, "the run ended before the proxy was back"
    return Cut(before, last_seen, written, back, mark)


@pytest.mark.timeout(180)
def test_the_page_signs_in_and_follows_a_run_live_across_a_proxy_restart(
    stack: Stack, browser: Browser
) -> None:
    with watched_page(browser) as watched:
        # While nginx restarts the page's requests fail, as they would for a user (checked
        # below to come no earlier).
        watched.expect_network_errors(PROXY_DOWN)
        page = watched.page
        page.goto(stack.base)
        sign_in_with_form(page, stack.admin)
        expect_signed_in(page, "admin")
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        (cookie,) = [c for c in watched.context.cookies() if c["name"] == "joblog_session"]
        assert cookie["path"] == ("/joblog/" if stack.kind == "deploy" else "/")
        assert cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict"
        page.evaluate(_WATCH_LINES)

        # A viewer's stream through the proxy times each line's arrival.
        viewer = EventStream(stack.nginx.port, "/joblog/api/events", bearer(VIEWER))
        try:
            assert viewer.status == 200
            name = click_run_now(page, stack.base)
            expect(page.locator("#run-name")).to_have_text(re.compile(rf"{name}$"))
            assert page.url == f"{stack.base}runs/{name}"
            viewer.wait_for(
                lambda: any(e.data["message"].startswith("Batch 1/") for e in viewer.details(name)),
                "the first batch line through the proxy",
            )
            # The cut comes once the page has the same lines as the viewer.
            on_page = [event.id for event in viewer.details(name)]
            for detail_id in on_page:
                expect(page.locator(f'#run-lines li.line[data-id="{detail_id}"]')).to_be_visible()
            assert watched.errors == []
            cut = restart_proxy_mid_run(stack, viewer, name)
        finally:
            viewer.close()

        # A client that resumes after its last line gets every later line once, then the end.
        resumed = EventStream(
            stack.nginx.port,
            f"/joblog/api/events?job_log={name}",
            {**bearer(VIEWER), "Last-Event-ID": str(cut.last_seen)},
        )
        try:
            assert resumed.status == 200
            assert resumed.done.wait(60), "the resumed stream did not end with the run"
        finally:
            resumed.close()
        assert resumed.events[-1].kind == "end"
        assert resumed.events[-1].data["status"] == "success"

        # The page reconnects by itself and shows the run to its end, every line once.
        banner = page.locator("#run-banner")
        expect(banner).to_be_visible(timeout=30_000)
        expect(banner).to_contain_text("succeeded")
        lines = detail_rows(stack.database, name)
        eventually(
            page,
            lambda: rendered_lines(page),
            [(i, m) for i, m, _ in lines],
            what="the page's lines",
        )
        after = resumed.details(name)
        assert [e.id for e in cut.before] + [e.id for e in after] == [i for i, _, _ in lines]
        assert cut.written_while_down <= {e.id for e in after}
        assert any(committed(e.data["created_at"]) > cut.back for e in after), (
            "no line arrived live after the reconnect"
        )
        wait_for(
            lambda: any(
                "HeadlessChrome" in line and "api/events" in line
                for line in stack.nginx.access_log()[cut.log_mark :]
            ),
            "the page's event stream through the restarted proxy",
            within=30,
        )

        # Live means unbuffered: every line written before the cut reached the viewer, and the
        # page, within LIVE_SECONDS of its commit.
        assert cut.before[0].data["message"] == "Job started - SyncOpenOrdersJob"
        delays = {e.data["message"]: e.at - committed(e.data["created_at"]) for e in cut.before}
        seen: dict[str, int] = page.evaluate("() => window.__seen")
        shown = {
            message: seen[str(i)] / 1000 - committed(created)
            for i, message, created in lines
            if i in on_page
        }
        print(f"{stack.kind}: seconds from commit to the viewer's stream: {delays}")
        print(f"{stack.kind}: seconds from commit to the page: {shown}")
        assert not {m: s for m, s in delays.items() if s > LIVE_SECONDS}, (
            "held back from the stream"
        )
        assert not {m: s for m, s in shown.items() if s > LIVE_SECONDS}, "held back for the page"


# --- who may read and act, through the proxy ------------------------------------------------------


def cookie_attributes(set_cookie: str | None) -> tuple[str, dict[str, str]]:
    """``Set-Cookie`` as its ``name=value`` and its attributes (names lower-cased)."""
    assert set_cookie is not None, "no Set-Cookie"
    pair, *rest = [part.strip() for part in set_cookie.split(";")]
    attributes = {}
    for part in rest:
        name, _, value = part.partition("=")
        attributes[name.lower()] = value
    return pair, attributes


@pytest.mark.timeout(120)
def test_without_a_credential_nothing_a_viewer_reads_and_follows_only_the_admin_acts(
    stack: Stack, tmp_path: Path
) -> None:
    # The page's files are public, the job logs are not: through the proxy nobody is local.
    assert stack.call("GET", "/").status == 200
    assert stack.call("GET", "/static/app.js").status == 200
    assert stack.call("GET", "/healthz").status == 200
    for headers in ({}, FORGED):
        refused = stack.call("GET", "/api/job_logs", headers)
        assert refused.status == 401, (headers, refused)
        assert refused.header("WWW-Authenticate") == "Bearer"
        assert stack.call("GET", "/api/job_logs/stats", headers).status == 401
        assert stack.call("GET", "/api/events", headers).status == 401
        assert stack.call("POST", "/api/job_logs", headers).status == 401
        assert stack.call("GET", "/api/session", headers).json()["role"] is None
    # The same client past the proxy, on this machine, may read: the proxy is what counts.
    assert stack.direct("GET", "/api/job_logs").status == 200
    # A Remote-User from the address the service trusts as its proxy does count (deploy), so
    # it is the proxy that keeps a client's own out; from any other address it never counts.
    claimed = stack.direct("GET", "/api/session", {"X-Forwarded-For": "192.0.2.7", **FORGED})
    assert claimed.json()["role"] == ("admin" if stack.kind == "deploy" else None)

    viewer = bearer(VIEWER)
    assert stack.call("GET", "/api/job_logs", viewer).status == 200
    assert stack.call("GET", "/api/session", {**viewer, **FORGED}).json()["role"] == "viewer"
    for path in ("/api/job_logs", "/api/job_logs/1/cancel"):
        for headers in (viewer, {**viewer, **FORGED}):
            answer = stack.call("POST", path, headers)
            assert answer.status == 403, (path, headers, answer)

    # A browser session through the proxy: its cookie is scoped to where the service lives.
    signed = stack.call("POST", "/api/session", body={"token": VIEWER})
    assert signed.status == 200, signed
    pair, attributes = cookie_attributes(signed.header("Set-Cookie"))
    assert attributes["path"] == ("/joblog/" if stack.kind == "deploy" else "/")
    assert "httponly" in attributes
    assert attributes["samesite"] == "Strict"
    assert "secure" not in attributes  # plain http here; behind https it would be Secure
    assert stack.call("GET", "/api/job_logs", {"Cookie": pair}).status == 200
    assert stack.call("POST", "/api/job_logs", {"Cookie": pair}).status == 403

    # The viewer follows with curl, the token read from a file; the admin acts.
    header_file = write_secret(tmp_path / "view.header", f"Authorization: Bearer {VIEWER}")
    follow = CurlStream(stack.nginx.url("/joblog/api/events"), header_file)
    try:
        follow.wait_for(lambda: "retry: 2000" in follow.lines, "the stream's start")
        started = stack.call("POST", "/api/job_logs", bearer(stack.admin))
        assert started.status == 202, started
        name = started.json()["name"]
        location = started.header("Location")
        assert location == f"job_logs/{name}"  # relative: right under any prefix
        shown = stack.call("GET", f"/api/{location}", viewer)
        assert shown.status == 200
        assert shown.json()["name"] == name
        follow.wait_for(
            lambda: "Job started - SyncOpenOrdersJob" in follow.messages(name), "the run's start"
        )
        cancelled = stack.call("POST", f"/api/job_logs/{name}/cancel", bearer(stack.admin))
        assert cancelled.status == 202, cancelled
        follow.wait_for(
            lambda: "ERROR: Cancelled by request" in follow.messages(name), "the cancellation"
        )
    finally:
        follow.close()
    stats = stack.call("GET", "/api/job_logs/stats", viewer).json()
    assert stats["total"] == 1  # nothing but the admin's POST started a run
    assert stats["error"] == 1


@pytest.mark.timeout(60)
def test_the_documented_site_streams_uncompressed_where_nginx_compresses_the_rest(
    tmp_path: Path,
) -> None:
    with serve_behind_nginx("deploy", tmp_path) as stack:
        asked = {**bearer(VIEWER), "Accept-Encoding": "gzip"}
        # This nginx compresses JSON and event streams (GZIP_EVERYTHING) ...
        assert stack.call("GET", "/api/job_logs", asked).header("Content-Encoding") == "gzip"
        # ... but the site turns it off for the stream, which reaches the client as sent.
        stream = EventStream(stack.nginx.port, "/joblog/api/events", asked)
        try:
            assert stream.status == 200
            assert stream.headers["content-type"] == ["text/event-stream; charset=utf-8"]
            assert stream.headers["cache-control"] == ["no-cache"]
            assert "content-encoding" not in stream.headers
        finally:
            stream.close()
        # Without its slash the sub-path is sent to it, relative to wherever the user came in.
        moved = call(stack.nginx.port, "GET", "/joblog")
        assert moved.status == 301
        assert moved.header("Location") == "/joblog/"


# --- the real client, through the documented proxy ------------------------------------------------

# Forwarding headers a client makes up, to pass for this machine, https, another base path.
SPOOFED = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/x"}


@pytest.mark.timeout(90)
def test_a_client_of_the_documented_proxy_is_known_by_its_own_address_and_prefix(
    tmp_path: Path,
) -> None:
    with outside_address() as outside, serve_behind_nginx("deploy", tmp_path) as stack:
        for headers in ({}, SPOOFED):
            refused = stack.call("GET", "/api/job_logs", headers, source=outside)
            assert refused.status == 401, (headers, refused)
        read = stack.call(
            "GET", "/api/job_logs?per_page=3", {**bearer(VIEWER), **SPOOFED}, source=outside
        )
        assert read.status == 200
        signed = stack.call("POST", "/api/session", SPOOFED, {"token": ADMIN}, source=outside)
        assert signed.status == 200, signed
        _, attributes = cookie_attributes(signed.header("Set-Cookie"))
        assert attributes["path"] == "/joblog/"  # nginx's prefix, not the client's
        assert "secure" not in attributes  # nginx's scheme (http here), not the client's
        # The service's access log names the client, not the proxy (nor what the client said).
        logged = "GET /api/job_logs?per_page=3 200"
        wait_for(lambda: logged in stack.server.logs(), "the access line", within=30)
        (line,) = [line for line in stack.server.logs().splitlines() if logged in line]
        assert line.split()[-1] == outside, line


# --- the systemd unit -----------------------------------------------------------------------------


def test_systemd_analyze_verifies_the_unit_without_a_word(tmp_path: Path) -> None:
    analyze = require_command("systemd-analyze")

    def verify(text: str) -> tuple[int, str]:
        copy = verifiable_unit(tmp_path, text)
        done = subprocess.run(
            [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
        )
        said = "\n".join(
            line for line in (done.stdout + done.stderr).splitlines() if "joblog" in line
        )
        return done.returncode, said

    text = UNIT.read_text()
    assert verify(text) == (0, "")
    # It reads every line: a misspelt option is named.
    _, said = verify(text.replace("ProtectSystem=strict", "ProtectSystm=strict"))
    assert "Unknown key 'ProtectSystm'" in said

    # Hardened as systemd measures it: an exposure of 2.0 or less of 10 ("OK").
    copy = verifiable_unit(tmp_path, text)
    measured = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert measured.returncode == 0, measured.stdout[-2000:] + measured.stderr


def test_the_unit_runs_the_documented_service_behind_the_documented_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = unit_options()
    for key, value in {
        "DynamicUser": "yes",
        "StateDirectory": "joblog",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/joblog",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "Restart": "on-failure",
        "EnvironmentFile": "-/etc/joblog/joblog.env",
    }.items():
        assert options.get(key) == [value], key
    assert 5 < float(options["TimeoutStopSec"][0]) <= 15  # a stop takes under 5 s
    assert unit_credentials() == {
        "admin-token": "/etc/joblog/admin-token",
        "view-token": "/etc/joblog/view-token",
    }

    env = unit_environment(tmp_path)
    assert env["ADMIN_TOKEN_FILE"] == str(tmp_path / "admin-token")
    assert env["VIEW_TOKEN_FILE"] == str(tmp_path / "view-token")
    assert f"{env['HOST']}:{env['PORT']}" == DOCUMENTED_UPSTREAM  # where nginx sends requests
    proxy_passes = re.findall(
        r"^\s*proxy_pass http://([^/;]+)", DEPLOY_SITE.read_text(), re.MULTILINE
    )
    assert len(proxy_passes) == 2  # the page and API, the event stream
    assert set(proxy_passes) == {DOCUMENTED_UPSTREAM}
    write_secret(tmp_path / "admin-token", ADMIN)
    write_secret(tmp_path / "view-token", VIEWER)
    settings = settings_from(env, monkeypatch)
    assert settings.loopback_bind
    assert [str(n) for n in settings.trusted_proxies] == ["127.0.0.1/32"]
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == ADMIN
    assert settings.database_path.parent == Path("/var/lib") / options["StateDirectory"][0]


# --- the Containerfile ----------------------------------------------------------------------------


def test_the_containerfile_says_what_the_image_needs() -> None:
    (base,) = the("FROM")
    assert re.fullmatch(r"(docker\.io/(library/)?)?debian:bookworm-slim", base)
    installs = [rest for rest in the("RUN") if "apt-get install" in rest]
    assert len(installs) == 1
    packages = set(installs[0].split())
    assert {"python3", "python3-venv", "unixodbc", "tdsodbc"} <= packages
    assert "rm -rf /var/lib/apt/lists/*" in installs[0]
    (user,) = the("USER")
    assert user.partition(":")[0] not in ("root", "0")
    made = [rest for rest in the("RUN") if "useradd" in rest]
    assert len(made) == 1
    assert re.search(rf"useradd .*--system .*\b{user}\b", made[0])
    assert the("EXPOSE") == ["8080"]
    assert the("STOPSIGNAL") == ["SIGTERM"]
    env = container_env()
    assert env["HOST"] == "0.0.0.0"
    assert env["PORT"] == "8080"
    (volume,) = the("VOLUME")
    assert Path(env["DATABASE_PATH"]).parent.as_posix() in json.loads(volume)
    (healthcheck,) = the("HEALTHCHECK")
    assert "/readyz" in healthcheck
    assert not re.search(r"\b(curl|wget)\b", healthcheck)  # neither is in the image
    installs = [rest for rest in the("RUN") if "pip install" in rest]
    assert len(installs) == 1
    assert "python3 -m venv /opt/joblog" in installs[0]
    assert json.loads(the("ENTRYPOINT")[0]) == ["/opt/joblog/bin/python", "-m", "service"]
    assert json.loads(the("CMD")[0]) == ["serve"]


def test_what_the_containerfile_copies_builds_the_service(tmp_path: Path) -> None:
    """Its COPY lines, done here, give sources that build the wheel its pip install installs."""
    context = tmp_path / "context"
    for rest in the("COPY"):
        *sources, destination = rest.split()
        assert destination.startswith("/tmp/joblog")
        target = context / destination.removeprefix("/tmp/joblog").strip("/")
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                (target / origin.name).write_bytes(origin.read_bytes())
    wheel = build_wheel(context, tmp_path / "wheel")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"service/__main__.py", "service/schema.sql", "service/static/index.html"} <= names


@pytest.mark.timeout(90)
def test_the_image_environment_needs_a_view_token_and_then_passes_its_health_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**container_env(), "DATABASE_PATH": str(tmp_path / "data" / "joblog.sqlite3")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with pytest.raises(SettingsError, match="VIEW_TOKEN"):
        settings_from(env, monkeypatch)
    (healthcheck,) = the("HEALTHCHECK")
    command = json.loads(healthcheck.partition(" CMD ")[2])
    assert command[0] == "/opt/joblog/bin/python"
    command[0] = sys.executable
    port = free_port()
    (tmp_path / "work").mkdir()

    def health_check() -> int:
        done = subprocess.run(
            command, env={**os.environ, "PORT": str(port)}, capture_output=True, timeout=30
        )
        return done.returncode

    with ServerProcess(
        tmp_path / "work",
        **{**env, "PORT": str(port), "VIEW_TOKEN": VIEWER, "SYNC_ON_START": "false"},
    ) as server:
        server.wait_ready()
        assert health_check() == 0
        # Readiness, not liveness: with its database gone the service answers, but is not ready.
        Path(env["DATABASE_PATH"]).unlink()
        wait_for(lambda: health_check() != 0, "the health check failing", within=30)
        assert call(port, "GET", "/healthz").status == 200
