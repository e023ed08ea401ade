"""Hostile requests against the real app: every malformed parameter or header is a clear 400
``{"error", "field"}`` naming it; what is over the HTTP parser's limits gets the parser's own
400; nothing is ever a 500, a traceback, a silently closed connection, or a file from outside
``static/``. Then the same for bytes no HTTP client library would send, against a real server
process over a bare socket.

The parser's limits (aiohttp): a request line or one header line over 8,190 bytes, or more
than 128 headers, is answered ``HTTP/1.0 400 Bad Request`` in plain text (aiohttp has no 414
or 431), and the connection is closed.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import TestClient

from service import appkeys
from service.http import pages
from service.resources import static_dir
from service.store import add_detail, create_job_log, set_status
from service.wire import JobLog, Status
from tests.support.api import ADMIN
from tests.support.clock import FakeClock
from tests.support.rawhttp import RawAnswer, exchange, exchange_async, request_bytes
from tests.support.server import ServerProcess

Client = TestClient[web.Request, web.Application]

SQL_LINE = 'ERROR: Fetch failed - near "\' OR 1=1 --": syntax error'
PERCENT_LINE = "Fetched 100% of 1_523 records"


@pytest.fixture
async def logs(client: Client, clock: FakeClock) -> list[JobLog]:
    """Three finished runs whose lines hold SQL and LIKE metacharacters."""
    db = client.app[appkeys.DATABASE]
    made = []
    for final, line in (
        (Status.error, SQL_LINE),
        (Status.success, PERCENT_LINE),
        (Status.success, "Job completed successfully"),
    ):
        log = await create_job_log(db)
        await set_status(db, log.id, Status.processing)
        await add_detail(db, log.id, line)
        made.append(await set_status(db, log.id, final))
        clock.advance(60)
    return made


# (path, headers, the field the 400 must name); {ref} is an existing log's name.
BAD_PARAMETERS: list[tuple[str, dict[str, str], str]] = [
    # repeated parameters: which one would count?
    ("/api/job_logs?page=1&page=2", {}, "page"),
    ("/api/job_logs?status=error&status=success", {}, "status"),
    ("/api/job_logs/{ref}/details?after=1&after=2", {}, "after"),
    # invalid percent-encoding and UTF-8
    ("/api/job_logs?q=%ff", {}, "q"),
    ("/api/job_logs?q=%zz", {}, "q"),
    ("/api/job_logs?q=%", {}, "q"),
    ("/api/job_logs?q=50%", {}, "q"),
    ("/api/job_logs?q=%C3", {}, "q"),  # a UTF-8 sequence cut short
    ("/api/job_logs?q=%ED%A0%80", {}, "q"),  # an encoded lone surrogate
    ("/api/job_logs?%ff=1", {}, "%ff"),
    ("/api/job_logs/{ref}?details=%ff", {}, "details"),
    ("/api/job_logs/{ref}/details?limit=%zz", {}, "limit"),
    # NUL
    ("/api/job_logs?q=%00", {}, "q"),
    ("/api/job_logs?q=a%00b", {}, "q"),
    ("/api/job_logs/{ref}/details?q=%00", {}, "q"),
    ("/api/events?job_log=%00", {}, "job_log"),
    ("/api/job_logs?since=2025-12-15%00", {}, "since"),
    # negative, enormous and not-quite numbers
    ("/api/job_logs?per_page=-1", {}, "per_page"),
    ("/api/job_logs?page=-1", {}, "page"),
    ("/api/job_logs?page=99999999999999999999999", {}, "page"),
    ("/api/job_logs?per_page=1_0", {}, "per_page"),
    ("/api/job_logs?per_page=%2010", {}, "per_page"),
    ("/api/job_logs?page=%2B1", {}, "page"),
    ("/api/job_logs?page=1e3", {}, "page"),
    ("/api/job_logs?page=0x10", {}, "page"),
    ("/api/job_logs/{ref}/details?after=99999999999999999999999", {}, "after"),
    ("/api/job_logs/{ref}/details?limit=-5", {}, "limit"),
    ("/api/events?last_event_id=-1", {}, "last_event_id"),
    ("/api/events?last_event_id=99999999999999999999999", {}, "last_event_id"),
    # SQL fragments where a value is not free text
    ("/api/job_logs?status=success'--", {}, "status"),
    ("/api/job_logs?status=success%27%20OR%201=1%20--", {}, "status"),
    ("/api/job_logs?since=2025-12-15'%20OR%201=1%20--", {}, "since"),
    ("/api/job_logs?page=1;DROP%20TABLE%20job_logs", {}, "page"),
    ("/api/job_logs/{ref}/details?after=0%20OR%201=1", {}, "after"),
    # huge values still under the request-line limit
    ("/api/job_logs?q=" + "x" * 7000, {}, "q"),
    ("/api/events?job_log=" + "x" * 7000, {}, "job_log"),
    # Last-Event-ID: non-numeric, negative, huge (under the header-line limit)
    ("/api/events", {"Last-Event-ID": "abc"}, "last_event_id"),
    ("/api/events", {"Last-Event-ID": "-1"}, "last_event_id"),
    ("/api/events", {"Last-Event-ID": "1 2"}, "last_event_id"),
    ("/api/events", {"Last-Event-ID": "1' OR 1=1 --"}, "last_event_id"),
    ("/api/events", {"Last-Event-ID": "9" * 7000}, "last_event_id"),
]


@pytest.mark.parametrize(
    ("path", "headers", "field"),
    BAD_PARAMETERS,
    ids=[f"{path[:60]} {sorted(headers)}" for path, headers, _ in BAD_PARAMETERS],
)
async def test_a_malformed_parameter_is_400_naming_it(
    client: Client, logs: list[JobLog], path: str, headers: dict[str, str], field: str
) -> None:
    target = yarl.URL(path.replace("{ref}", logs[0].name), encoded=True)
    response = await client.get(target, headers=headers)
    text = await response.text()
    assert response.status == 400, text
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error", "field"}
    assert body["field"] == field
    assert body["error"].startswith(f"{field}: ")
    assert len(body["error"]) < 200  # names the problem, does not echo a huge value
    assert "Traceback" not in text


@pytest.mark.parametrize(
    "query", ["force=%ff", "force=1&force=1", "force=%00", "force=yes'--", "%ff=1"]
)
async def test_a_malformed_post_parameter_is_400_and_starts_nothing(
    client: Client, query: str
) -> None:
    response = await client.post(yarl.URL(f"/api/job_logs?{query}", encoded=True), headers=ADMIN)
    assert response.status == 400, await response.text()
    assert (await response.json())["field"] in ("force", "%ff")
    stats = await (await client.get("/api/job_logs/stats")).json()
    assert stats["total"] == 0


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("' OR 1=1 --", [0]),
        ("'", [0]),
        ('"', [0]),
        ("%", [1]),
        ("_", [1]),
        ("%' OR '1'='1", []),
        ("') UNION SELECT 1,2,3,4,5 --", []),
    ],
)
async def test_sql_in_free_text_is_searched_for_literally(
    client: Client, logs: list[JobLog], q: str, expected: list[int]
) -> None:
    for path in ("/api/job_logs", f"/api/job_logs/{logs[0].name}/details"):
        response = await client.get(path, params={"q": q})
        assert response.status == 200, await response.text()
    body = await (await client.get("/api/job_logs", params={"q": q})).json()
    assert [item["id"] for item in body["items"]] == [logs[i].id for i in reversed(expected)]
    stats = await (await client.get("/api/job_logs/stats")).json()
    assert stats["total"] == 3  # nothing was dropped or changed on the way


OVER_THE_LIMITS = {
    "a 100 KB query value": ("/api/job_logs?q=" + "x" * 100_000, {}),
    "a 100 KB header": ("/api/job_logs", {"X-Padding": "x" * 100_000}),
    "a 10 KB Last-Event-ID": ("/api/events", {"Last-Event-ID": "1" * 10_000}),
    "200 headers": ("/api/job_logs", {f"X-Header-{n}": "x" for n in range(200)}),
}


@pytest.mark.parametrize("case", OVER_THE_LIMITS)
async def test_what_is_over_the_parsers_limits_gets_its_400(client: Client, case: str) -> None:
    path, headers = OVER_THE_LIMITS[case]
    response = await client.get(yarl.URL(path, encoded=True), headers=headers)
    text = await response.text()
    assert response.status == 400
    assert response.content_type == "text/plain"
    assert "Traceback" not in text
    assert len(text) < 500  # what it quotes of the request is cut short
    assert (await client.get("/healthz")).status == 200


# --- request bodies ---------------------------------------------------------------------------


async def test_a_post_with_a_body_is_413_and_starts_nothing(client: Client) -> None:
    for path in ("/api/job_logs", "/api/job_logs/1/cancel"):
        response = await client.post(path, data=io.BytesIO(b"x" * 2_000_000), headers=ADMIN)
        assert response.status == 413, await response.text()
        assert await response.json() == {"error": "this request takes no body"}
        assert response.headers["Connection"] == "close"
    stats = await (await client.get("/api/job_logs/stats")).json()
    assert stats["total"] == 0
    assert (await client.post("/api/job_logs", data=b"", headers=ADMIN)).status == 202


async def test_expect_100_continue_with_a_body_is_413_before_the_body(client: Client) -> None:
    assert client.server.host is not None
    assert client.server.port is not None
    head = request_bytes(
        "POST",
        "/api/job_logs",
        {"Content-Length": str(10**9), "Expect": "100-continue"},
    )
    answer = await exchange_async(client.server.host, client.server.port, head)
    assert answer.status == 413
    assert answer.json() == {"error": "this request takes no body"}
    stats = await (await client.get("/api/job_logs/stats")).json()
    assert stats["total"] == 0


# --- static files -----------------------------------------------------------------------------

TRAVERSALS = [
    b"/static/../schema.sql",
    b"/static/%2e%2e/schema.sql",
    b"/static/%2E%2E/%2E%2E/etc/passwd",
    b"/static/.%2e/schema.sql",
    b"/static/%2e%2e%2fschema.sql",
    b"/static/..%2fschema.sql",
    b"/static/..%5cschema.sql",
    b"/static/%252e%252e/schema.sql",
    b"/static/%c0%ae%c0%ae/schema.sql",
    b"/static//etc/passwd",
    b"/static/%2fetc%2fpasswd",
    b"/static/%2F..%2F..%2Fschema.sql",
    b"/static/./../schema.sql",
    b"/static/app.js%00.html",
    b"//etc/passwd",
    b"http://evil.example/static/../schema.sql",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=[t.decode() for t in TRAVERSALS])
async def test_static_paths_never_leave_the_folder(client: Client, target: bytes) -> None:
    assert client.server.host is not None
    assert client.server.port is not None
    answer = await exchange_async(
        client.server.host, client.server.port, request_bytes("GET", target)
    )
    assert answer.status == 404, answer
    assert b"CREATE TABLE" not in answer.body
    assert b"root:" not in answer.body


@pytest.fixture
def static_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The page's folder copied, with symlinks pointing outside it; the app serves the copy."""
    copy = tmp_path / "static"
    shutil.copytree(static_dir(), copy)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET OUTSIDE STATIC")
    (copy / "secret.txt").symlink_to(outside / "secret.txt")
    (copy / "outside").symlink_to(outside, target_is_directory=True)
    (copy / "passwd").symlink_to("/etc/passwd")
    monkeypatch.setattr(pages, "static_dir", lambda: copy)
    return copy


async def test_symlinks_out_of_the_folder_are_not_followed(
    static_copy: Path, make_client: Any
) -> None:
    client = await make_client()
    served = await client.get("/static/style.css")
    assert served.status == 200  # the copy is what is served
    for path in ("/static/secret.txt", "/static/outside/secret.txt", "/static/passwd"):
        response = await client.get(path)
        assert response.status == 404, path
        text = await response.text()
        assert "SECRET" not in text
        assert "root:" not in text


# --- what every page carries ------------------------------------------------------------------


class _PageAudit(HTMLParser):
    """Collects what a CSP without 'unsafe-inline' would block in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name.lower(): value or "" for name, value in attrs}
        if tag == "script" and "src" not in names:
            self.inline.append("<script> without src")
        if tag == "style":
            self.inline.append("<style>")
        for name, value in names.items():
            if name.startswith("on") or name == "style":
                self.inline.append(f"{tag} {name}=")
            if value.strip().lower().startswith("javascript:"):
                self.inline.append(f"{tag} {name}=javascript:")


async def test_pages_carry_a_strict_policy_and_have_nothing_inline(
    client: Client, logs: list[JobLog]
) -> None:
    for path in ("/", f"/runs/{logs[0].name}", "/api/job_logs?page=0", "/no-such-page"):
        response = await client.get(path)
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] in ("same-origin", "no-referrer")
        policy = {
            directive.split()[0]: directive.split()[1:]
            for directive in headers["Content-Security-Policy"].split(";")
            if directive.strip()
        }
        assert policy["frame-ancestors"] == ["'none'"]
        assert policy["script-src"] == ["'self'"]
        assert policy["default-src"] == ["'self'"]
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
        assert "'unsafe-eval'" not in headers["Content-Security-Policy"]
    audit = _PageAudit()
    audit.feed(await (await client.get("/")).text())
    assert audit.inline == []


# --- a real server process, over a bare socket ------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server process for the raw requests (no schedule, no run)."""
    workdir = tmp_path_factory.mktemp("raw-server")
    with ServerProcess(workdir, SYNC_ON_START="false", SYNC_INTERVAL_SECONDS="0") as process:
        process.wait_ready()
        yield process


def _head(*lines: bytes) -> bytes:
    return b"\r\n".join([*lines, b"Connection: close", b"", b""])


RAW_REQUESTS: dict[str, tuple[bytes, int, bool]] = {
    # name: (bytes sent, status, whether the service itself answers in JSON)
    "invalid UTF-8 in the query": (
        _head(b"GET /api/job_logs?q=\xff\xfe HTTP/1.1", b"Host: localhost"),
        400,
        False,
    ),
    "invalid UTF-8 in the path": (
        _head(b"GET /api/job_logs/\xc3\x28 HTTP/1.1", b"Host: localhost"),
        400,
        False,
    ),
    "unencoded UTF-8 in the query": (
        _head(b"GET /api/job_logs?q=caf\xc3\xa9 HTTP/1.1", b"Host: localhost"),
        400,
        False,
    ),
    "a space in the query": (
        _head(b"GET /api/job_logs?q=' OR 1=1 -- HTTP/1.1", b"Host: localhost"),
        400,
        False,
    ),
    "NUL in a header": (
        _head(b"GET /api/events HTTP/1.1", b"Host: localhost", b"Last-Event-ID: 1\x00"),
        400,
        False,
    ),
    "a bare CR in a header": (
        _head(b"GET /healthz HTTP/1.1", b"Host: localhost", b"X-Injected: a\rSet-Cookie: x=1"),
        400,
        False,
    ),
    "invalid UTF-8 in Last-Event-ID": (
        _head(b"GET /api/events HTTP/1.1", b"Host: localhost", b"Last-Event-ID: \xff\xfe"),
        400,
        True,
    ),
    "a 10 KB Last-Event-ID": (
        _head(b"GET /api/events HTTP/1.1", b"Host: localhost", b"Last-Event-ID: " + b"7" * 10_000),
        400,
        False,
    ),
    "a 100 KB header": (
        _head(b"GET /healthz HTTP/1.1", b"Host: localhost", b"X-Padding: " + b"x" * 100_000),
        400,
        False,
    ),
    "a 100 KB request line": (
        _head(b"GET /api/job_logs?q=" + b"x" * 100_000 + b" HTTP/1.1", b"Host: localhost"),
        400,
        False,
    ),
    "200 headers": (
        _head(b"GET /healthz HTTP/1.1", b"Host: localhost", *(b"X-%d: x" % n for n in range(200))),
        400,
        False,
    ),
    "a header name with a space": (
        _head(b"GET /healthz HTTP/1.1", b"Host: localhost", b"Bad Name: x"),
        400,
        False,
    ),
    "an unknown HTTP version": (_head(b"GET / HTTP/9.9", b"Host: localhost"), 400, False),
    "TLS on the HTTP port": (
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64,
        400,
        False,
    ),
}


@pytest.mark.integration  # a server in a process of its own
@pytest.mark.parametrize("name", RAW_REQUESTS)
def test_raw_bytes_get_a_400_answer_not_a_500_or_silence(server: ServerProcess, name: str) -> None:
    sent, status, from_service = RAW_REQUESTS[name]
    answer: RawAnswer = exchange(("127.0.0.1", server.port), sent)
    assert answer.status == status, answer
    assert "Traceback" not in answer.text
    assert 'File "' not in answer.text
    if from_service:
        assert answer.json()["field"] == "last_event_id"
    else:  # aiohttp's parser: plain text, the offending bytes quoted at most 100 at a time
        assert answer.headers["content-type"].startswith("text/plain")
        assert len(answer.body) < 500
    assert answer.closed
    healthz = exchange(("127.0.0.1", server.port), request_bytes("GET", "/healthz"))
    assert healthz.status == 200
    assert server.process is not None
    assert server.process.poll() is None
    access_statuses = [
        line.split()[6]
        for line in server.output.read_text().splitlines()
        if " service.access: " in line
    ]
    assert not [s for s in access_statuses if s.startswith("5")], access_statuses
    # Garbage costs one WARNING line, never a logged traceback.
    logs = server.logs()
    assert "Traceback" not in logs
    assert " ERROR " not in logs
