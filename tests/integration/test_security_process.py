"""Security of the real server process: who may POST, secrets, request bodies, slow clients.

- POSTs from a non-loopback address (a second address on ``lo``, see tests/support/netns.py)
  follow README "Who may POST": without ADMIN_TOKEN only local clients; with it, the token.
- With SOURCE_ODBC (a password), ADMIN_TOKEN and NOTIFY_WEBHOOK_URL (a token in its path) set,
  runs that fail in several ways, every endpoint, wrong-token POSTs and an archiving purge
  leave none of the three anywhere: details, stdout, stderr, answers, archive files.
- A POST with a body is answered 413 at once, before the body is sent; a client that sends its
  request head a byte a second is cut off after the request-head timeout, while an event
  stream on the same server keeps flowing.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import pytest

from service.__main__ import REQUEST_HEAD_TIMEOUT_SECONDS
from tests.support import joblogs
from tests.support.api import ADMIN
from tests.support.netns import outside_address
from tests.support.odbc import freetds
from tests.support.rawhttp import RawAnswer, exchange, read_answer, request_bytes
from tests.support.server import ServerProcess, run_service, start_service
from tests.support.silent import silent_server
from tests.support.system import free_port
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration

TOKEN = "adm1n-t0ken-9c41d7e2b5f0"
VIEW_TOKEN = "v1ew-t0ken-3b8e0f6a2c9d"
METRICS_TOKEN = "m3trics-t0ken-6d1c4a9e7b20"
PASSWORD = "S3cr3t-pw;7f3a"  # the ';' only survives inside braces
HOOK_TOKEN = "h00k-t0ken-5e8a2c6d"
# No schedule, no run at start: every run is one the test starts.
QUIET = {"SYNC_ON_START": "false", "SYNC_INTERVAL_SECONDS": "0", "DEMO_DELAY_SECONDS": "0"}


def _idle(server: ServerProcess, headers: dict[str, str] | None = None) -> None:
    """Wait until no run is in progress."""
    headers = headers or {"Authorization": f"Bearer {TOKEN}"}
    head = request_bytes("GET", "/api/status", headers, host=f"127.0.0.1:{server.port}")
    wait_for(
        lambda: exchange(("127.0.0.1", server.port), head).json()["running"] is None,
        "no run in progress",
    )


def _on_every_address(workdir: Path, port: int, **env: str) -> ServerProcess:
    """A server in a folder of its own, listening on every address at ``port``, with no
    schedule and no run at start."""
    workdir.mkdir()
    return ServerProcess(workdir, HOST="0.0.0.0", PORT=str(port), **QUIET, **env)


# --- who may POST ---------------------------------------------------------------------------


def test_from_another_address_nobody_reads_or_acts_without_a_credential(tmp_path: Path) -> None:
    """A server on every address, asked from 10.213.0.N: no credential reads nothing; forged
    forwarding and proxy-user headers change nothing; a viewer reads but does not act."""
    with outside_address() as outside:
        port = free_port()
        with _on_every_address(
            tmp_path / "open",
            port,
            VIEW_TOKEN=VIEW_TOKEN,
            ADMIN_TOKEN=TOKEN,
            # the proxy header is configured, but 10.213.0.N is not a trusted proxy
            TRUSTED_PROXIES="192.0.2.1",
            AUTH_PROXY_HEADER="Remote-User",
            AUTH_PROXY_ADMINS="admin",
        ) as server:
            server.wait_ready()
            far = (outside, port)

            def call(method: str, path: str, **headers: str) -> RawAnswer:
                head = request_bytes(method, path, headers, host=f"127.0.0.1:{port}")
                return exchange(far, head, source=outside)

            for path in ("/api/status", "/api/job_logs", "/api/events", "/metrics", "/"):
                answer = call("GET", path)
                assert answer.status == (200 if path == "/" else 401), (path, answer)
            forged = {
                "X-Forwarded-For": "127.0.0.1",
                "X-Real-IP": "127.0.0.1",
                "Forwarded": "for=127.0.0.1",
                "Remote-User": "admin",
            }
            assert call("GET", "/api/job_logs/stats", **forged).status == 401
            assert call("POST", "/api/job_logs", **forged).status == 401
            who = call("GET", "/api/session", **forged).json()
            assert who == {"role": None, "via": None, "user": None, "expires_at": None}
            # on a service listening on every address, this machine is no anonymous viewer
            local = exchange(
                ("127.0.0.1", port),
                request_bytes("GET", "/api/job_logs/stats", host=f"127.0.0.1:{port}"),
            )
            assert local.status == 401
            viewer = {"Authorization": f"Bearer {VIEW_TOKEN}"}
            assert call("GET", "/api/job_logs/stats", **viewer).json()["total"] == 0
            refused = call("POST", "/api/job_logs", **viewer)
            assert refused.status == 403
            assert "admin" in refused.json()["error"]
            ready = call("GET", "/readyz")
            assert ready.status == 200
            assert ready.json()["source"] == {"kind": "demo", "server": None}
            assert call("POST", "/api/job_logs", Authorization=f"Bearer {TOKEN}").status == 202
            _idle(server, viewer)
            assert call("GET", "/api/job_logs/stats", **viewer).json()["total"] == 1

        port = free_port()
        public = f"{outside}:{port}"
        with _on_every_address(
            tmp_path / "token",
            port,
            ADMIN_TOKEN=TOKEN,
            VIEW_TOKEN=VIEW_TOKEN,
            PUBLIC_URL=f"http://{public}",
        ) as server:
            server.wait_ready()
            far = (outside, port)

            def post(
                address: tuple[str, int], path: str = "/api/job_logs", **headers: str
            ) -> RawAnswer:
                host = public if address == far else f"127.0.0.1:{port}"
                head = request_bytes("POST", path, headers, host=host)
                return exchange(address, head, source=outside if address == far else None)

            basic = base64.b64encode(f"admin:{TOKEN}".encode()).decode()
            for headers, status in [
                ({}, 401),
                ({"Authorization": "Bearer"}, 401),
                ({"Authorization": f"Basic {basic}"}, 401),
                ({"Authorization": f"Bearer {TOKEN}x"}, 403),
                ({"Authorization": f"Bearer {TOKEN.upper()}"}, 403),
                ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 403),
            ]:
                answer = post(far, **headers)
                assert answer.status == status, (headers, answer)
                if status == 401:
                    assert answer.headers["www-authenticate"] == "Bearer"
                assert TOKEN not in answer.text
            assert post(far, "/api/job_logs/1/cancel").status == 401
            assert post(far, Authorization=f"Bearer {TOKEN}").status == 202
            _idle(server)
            loopback = ("127.0.0.1", port)
            assert post(loopback).status == 401  # the token binds loopback clients too
            assert post(loopback, Authorization=f"Bearer {TOKEN}").status == 202
            _idle(server)
            reading = request_bytes(
                "GET", "/api/job_logs/stats", {"Authorization": f"Bearer {VIEW_TOKEN}"}
            )
            stats = exchange(far, reading, source=outside)
            assert stats.json()["total"] == 2


# --- secrets ----------------------------------------------------------------------------------


def _freetds(port: int) -> str:
    return freetds(port, password=f"{{{PASSWORD}}}")  # braced: the ';' is part of it


class Corpus:
    """Every text the service showed anyone, labelled by where it came from."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        self.texts.append((where, text))

    def answer(self, server: ServerProcess, method: str, path: str, **headers: str) -> RawAnswer:
        host = headers.pop("Host", "localhost")
        head = request_bytes(method, path, headers, host=host)
        answer = exchange(("127.0.0.1", server.port), head)
        self.add(f"{method} {path}", f"{answer.status} {answer.headers} {answer.text}")
        return answer

    def leaks(self, secrets: list[str]) -> list[str]:
        return [
            f"{secret[:4]}… in {where}"
            for where, text in self.texts
            for secret in secrets
            if secret in text
        ]


@pytest.fixture
def secret_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The three secrets set, a source that never answers, a webhook that refuses."""
    refused = free_port()
    with silent_server() as silent:
        yield {
            "SOURCE_ODBC": _freetds(silent),
            "SOURCE_LOGIN_TIMEOUT": "1",
            "SOURCE_QUERY_TIMEOUT": "1",
            "ADMIN_TOKEN": TOKEN,
            "VIEW_TOKEN": VIEW_TOKEN,
            "METRICS_TOKEN": METRICS_TOKEN,
            "NOTIFY_WEBHOOK_URL": f"http://127.0.0.1:{refused}/hooks/{HOOK_TOKEN}",
            "PUBLIC_URL": "http://joblog.plant.example",
            "DATABASE_PATH": str(tmp_path / "data" / "joblog.sqlite3"),
            "SYNC_ON_START": "false",
            "SYNC_INTERVAL_SECONDS": "0",
        }


def _length(body: str) -> dict[str, str]:
    return {"Content-Length": str(len(body.encode()))}


def _wait_finished(server: ServerProcess, name: str) -> None:
    head = request_bytes("GET", f"/api/job_logs/{name}?details=false")
    wait_for(
        lambda: exchange(("127.0.0.1", server.port), head).json()["status"] in ("success", "error"),
        f"run {name} ended",
    )


def test_no_secret_appears_anywhere(tmp_path: Path, secret_env: dict[str, str]) -> None:
    env = secret_env
    database = Path(env["DATABASE_PATH"])
    corpus = Corpus()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    viewer = {"Authorization": f"Bearer {VIEW_TOKEN}"}
    metrics = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    with ServerProcess(tmp_path, **env) as server:
        server.wait_ready()
        # a browser session: its cookie is a secret too (this one answer is its only place)
        body = json.dumps({"token": TOKEN})
        head = request_bytes(
            "POST", "/api/session", {"Content-Type": "application/json", **_length(body)}
        )
        signed_in = exchange(("127.0.0.1", server.port), head + body.encode())
        assert signed_in.status == 200, signed_in
        cookie = signed_in.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        session = {"Cookie": f"joblog_session={cookie}"}
        # 1. the server's own run: a source that never answers (login timeout)
        started = corpus.answer(server, "POST", "/api/job_logs", **bearer)
        assert started.status == 202, started
        name = started.json()["name"]
        _wait_finished(server, name)
        # 2. run-once against a closed port, then 3. with a driver that is not installed
        closed = {**env, "SOURCE_ODBC": _freetds(free_port())}
        missing_driver = {
            **env,
            "SOURCE_ODBC": f"DRIVER={{No Such Driver}};SERVER=db.example;UID=u;PWD={{{PASSWORD}}}",
        }
        once = [start_service(tmp_path, "run-once", **closed)]
        wait_for(
            lambda: len(runs := joblogs.statuses(database)) >= 2 and runs[-1][1] >= 2,
            lambda: f"the run-once ended: {joblogs.statuses(database)}",
        )
        once.append(start_service(tmp_path, "run-once", **missing_driver))
        # 4. every endpoint, right and wrong, while the notices are being refused
        for method, path, headers in [
            ("GET", "/healthz", {}),
            ("GET", "/readyz", {}),
            ("GET", "/readyz", viewer),
            ("GET", "/metrics", {}),
            ("GET", "/metrics", metrics),
            ("GET", "/api/job_logs", metrics),
            ("GET", "/api/session", session),
            ("GET", "/api/job_logs", {"Cookie": f"joblog_session={cookie[:-3]}xyz"}),
            ("GET", "/api/job_logs", {**viewer, "Cookie": f"joblog_session={cookie}"}),
            ("POST", "/api/session", {"Content-Type": "application/json"}),
            ("DELETE", "/api/session", session),
            ("GET", "/api/status", {}),
            ("GET", "/api/openapi.json", {}),
            ("GET", "/api/job_logs", {}),
            ("GET", "/api/job_logs?q=ERROR", {}),
            ("GET", "/api/job_logs/stats", {}),
            ("GET", "/api/job_logs/latest", {}),
            ("GET", f"/api/job_logs/{name}", {}),
            ("GET", f"/api/job_logs/{name}/details", {}),
            ("GET", f"/api/job_logs/{name}.txt", {}),
            ("GET", f"/api/events?job_log={name}", {}),
            ("GET", "/", {}),
            ("GET", f"/runs/{name}", {}),
            ("GET", "/static/app.js", {}),
            ("GET", "/no-such-page", {}),
            ("GET", "/api/job_logs?page=0", {}),
            ("GET", "/api/job_logs/99999", {}),
            ("POST", "/healthz", {}),
            ("POST", "/api/job_logs", {}),
            ("POST", "/api/job_logs", {"Authorization": f"Bearer {TOKEN}-wrong"}),
            ("POST", "/api/job_logs", {"Authorization": f"Bearer {TOKEN[:-2]}"}),
            ("POST", "/api/job_logs", {"Authorization": f"Token {TOKEN}"}),
            ("POST", "/api/job_logs", {**bearer, "Origin": "https://evil.example"}),
            ("POST", "/api/job_logs", {**bearer, "Host": "evil.example"}),
            ("POST", f"/api/job_logs/{name}/cancel", {"Authorization": "Bearer nope"}),
            ("POST", f"/api/job_logs/{name}/cancel", bearer),
            ("POST", f"/api/job_logs/{name}/cancel", viewer),
            ("POST", f"/api/job_logs/{name}/cancel", session),
        ]:
            answer = corpus.answer(server, method, path, **headers)
            assert answer.status < 500, (path, answer)
        for process in once:
            stdout, stderr = process.communicate(timeout=40)
            corpus.add("run-once stdout", stdout)
            corpus.add("run-once stderr", stderr)
            assert process.returncode == 1, stderr
        # the server's notice for its failed run is given up on (refused: 4 attempts, 7 s)
        wait_for(
            lambda: "not delivered" in server.logs(),
            lambda: f"the notice given up on: {server.logs()}",
            every=0.1,
        )
        code, _ = server.stop()
        assert code == 0
        corpus.add("server stdout", server.output.read_text())
        corpus.add("server stderr", server.errors.read_text())

    # every run failed, each in its own way
    with closing(sqlite3.connect(database)) as conn:
        details = [row[0] for row in conn.execute("SELECT message FROM job_log_details")]
        ends = [
            row[0]
            for row in conn.execute(
                "SELECT message FROM job_log_details WHERE message LIKE 'ERROR:%' ORDER BY id"
            )
        ]
        # 5. age the runs, then purge them into the archive
        conn.execute("UPDATE job_logs SET created_at = '2020-01-15 10:00:00.000000'")
        conn.commit()
    for detail in details:
        corpus.add("a detail", detail)
    assert len(ends) == 3, ends
    assert "[HYT00]" in ends[0]  # silent server: login timeout
    assert "[08S01]" in ends[1]  # closed port
    assert "[01000]" in ends[2]  # no such driver
    archive = tmp_path / "archive"
    purged = run_service(
        tmp_path, "purge", "--older-than", "1", "--archive-dir", str(archive), **env
    )
    assert purged.returncode == 0, purged.stderr
    corpus.add("purge stdout", purged.stdout)
    corpus.add("purge stderr", purged.stderr)
    files = sorted(archive.glob("*.jsonl.gz"))
    assert files, "the purge archived the runs"
    archived = [gzip.decompress(file.read_bytes()).decode() for file in files]
    assert sum(len(text.splitlines()) for text in archived) == 3
    for file, text in zip(files, archived, strict=True):
        assert all(json.loads(line)["status"] == "error" for line in text.splitlines())
        corpus.add(f"archive {file.name}", text)
    corpus.add("the database file", database.read_bytes())
    logs = corpus.texts
    assert any("not delivered" in text for _, text in logs)  # the webhook was really refused
    assert any(w == "POST /api/job_logs" and t.startswith("403") for w, t in logs)
    secrets = [
        PASSWORD,
        PASSWORD.split(";")[0],  # what a parser splitting at ';' would leak
        TOKEN,
        VIEW_TOKEN,
        METRICS_TOKEN,
        cookie,
        cookie.rsplit(".", 1)[1],  # the session's MAC
        HOOK_TOKEN,
        env["NOTIFY_WEBHOOK_URL"],
        env["SOURCE_ODBC"],
    ]
    assert corpus.leaks(secrets) == []


# --- request bodies and slow clients ----------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with a quick keep-alive comment on its event streams."""
    workdir = tmp_path_factory.mktemp("limits")
    with ServerProcess(
        workdir, SYNC_ON_START="false", SYNC_INTERVAL_SECONDS="0", SSE_PING_SECONDS="1"
    ) as process:
        process.wait_ready()
        yield process


def test_a_post_with_a_large_body_is_refused_before_the_body_comes(server: ServerProcess) -> None:
    address = ("127.0.0.1", server.port)
    gigabyte = {"Content-Length": str(10**9), "Content-Type": "application/octet-stream"}
    with closing(socket.create_connection(address, timeout=5)) as conn:
        conn.sendall(request_bytes("POST", "/api/job_logs", {**gigabyte, **ADMIN}) + b"x" * 65536)
        answer = read_answer(conn)
        assert answer.seconds < 1.0
    assert answer.status == 413
    assert answer.json() == {"error": "this request takes no body"}
    assert answer.headers["connection"] == "close"
    # without a credential: refused as fast, and the body is not read either
    with closing(socket.create_connection(address, timeout=5)) as conn:
        conn.sendall(request_bytes("POST", "/api/job_logs", gigabyte) + b"x" * 65536)
        answer = read_answer(conn)
        assert answer.seconds < 1.0
    assert answer.status == 401
    assert answer.headers["connection"] == "close"
    with closing(socket.create_connection(address, timeout=5)) as conn:
        conn.sendall(request_bytes("POST", "/api/job_logs", {**gigabyte, "Expect": "100-continue"}))
        answer = read_answer(conn)  # not "100 Continue": the body is never asked for
        assert answer.seconds < 1.0
    assert answer.status == 413
    stats = exchange(address, request_bytes("GET", "/api/job_logs/stats")).json()
    assert stats["total"] == 0


def test_a_slow_sender_is_cut_off_while_event_streams_flow(server: ServerProcess) -> None:
    """A request head sent a byte a second never completes: the connection is closed after
    REQUEST_HEAD_TIMEOUT_SECONDS; an event stream opened at the same moment lives on."""
    address = ("127.0.0.1", server.port)
    with ExitStack() as stack:
        stream = stack.enter_context(closing(socket.create_connection(address, timeout=5)))
        stream.sendall(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        slow = stack.enter_context(closing(socket.create_connection(address, timeout=5)))
        head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"s" * 100
        started = time.monotonic()
        cut_off_after: float | None = None
        answered = b""
        for byte in head:
            try:
                slow.sendall(bytes([byte]))
                slow.settimeout(1.0)  # one byte a second
                answered = slow.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                answered = b""
            cut_off_after = time.monotonic() - started
            break
        assert cut_off_after is not None, "the slow sender was never cut off"
        assert answered == b""  # closed, without an answer to a request never completed
        assert REQUEST_HEAD_TIMEOUT_SECONDS - 1 <= cut_off_after <= REQUEST_HEAD_TIMEOUT_SECONDS + 2
        # the stream, open as long as the slow sender and more, still gets its pings
        stream.settimeout(3)
        received = b""
        pinged_after_cut = 0
        while pinged_after_cut < 2:
            chunk = stream.recv(4096)
            assert chunk, f"the event stream ended: {received[-200:]!r}"
            received += chunk
            if time.monotonic() - started > cut_off_after + 0.5:
                pinged_after_cut += chunk.count(b": ping")
        assert received.startswith(b"HTTP/1.1 200 OK")
    healthz = exchange(address, request_bytes("GET", "/healthz"))
    assert healthz.status == 200
