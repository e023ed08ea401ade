"""Hostile source data through unixODBC and the SQLite3 ODBC driver into open_orders.

Column names with quotes, spaces and brackets are mirrored exactly; values with CR/LF, quotes,
markup and 1 MB of text round-trip; what cannot cross (text the driver hands over undecodable,
a duplicate column) ends the run as error with one readable line and keeps the old set; a
driver message with line breaks, control characters or a huge text becomes one safe line.
Through all of it the job log and the event stream stay well-formed.

What the SQLite3 ODBC driver does on its own, seen here: it cuts a text value at its first NUL
(it reads C strings), and it caps its error messages at about 500 characters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import pytest
from aiohttp import ClientResponse

from service import appkeys
from service.settings import Settings
from service.sources.base import Column
from service.sources.connection_string import MAX_ERROR_CHARS, describe_driver_error
from service.store import (
    OPEN_ORDERS_STAGING,
    Database,
    create_staging,
    job_log_with_details,
    open_staging,
)
from service.wire import Status
from tests.support.api import ADMIN, Client, MakeClient
from tests.support.odbc import sqlite_odbc
from tests.support.sse import SSEEvent, SSEReader
from tests.support.sync import sync_service, table_rows, tables, with_source
from tests.support.wait import wait_for_async

pytestmark = pytest.mark.integration

COLUMNS = ["id", 'a"b', "two words", "[x]", "]", "Note"]
MEGABYTE = "m" * 1_000_000
ROWS: list[tuple[object, ...]] = [
    (1, 'say "hi"', "cr\rlf\nand\r\nboth", "[bracket]", "'; DROP TABLE open_orders; --", MEGABYTE),
    (2, "emoji 🎉 𝄞", "<script>alert(1)</script>", "line\u2028sep\u0085", None, ""),
    (3, "tab\there", "back\\slash", "  spaces  ", "]", "ok"),
]
# The driver reads C strings: this value arrives cut at its NUL.
NUL_ROW = (4, "nul\x00byte", "x", "y", "z", "w")
# Not valid UTF-8 (an encoded lone surrogate; a stray 0xFF): SQLite keeps the bytes, the driver
# hands them over as UTF-16 that pyodbc cannot decode.
UNDECODABLE = "CAST(X'EDA080' AS TEXT)", "CAST(X'FF41' AS TEXT)"
INSERT_UNDECODABLE = (
    f"INSERT INTO hostile VALUES (99, {UNDECODABLE[0]}, {UNDECODABLE[1]}, 'a', 'b', 'c')"
)
VIEW = "vwZSDOrder_Advanced"
# Only LF, CR, NUL, C1 controls, U+2028/2029 or a lone surrogate could break a line or a log.
BREAKING = ("\n", "\r", "\x00", "\x85", "\u2028", "\u2029", "\x0b", "\x0c")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def write_source(
    path: Path, rows: Sequence[tuple[object, ...]], *, undecodable: bool = False
) -> None:
    """A source whose view has the hostile columns and ``rows``; plus one row of text that is
    not valid UTF-8 when ``undecodable``."""
    columns = ", ".join(
        f"{_quote(name)} {'INTEGER' if name == 'id' else 'TEXT'}" for name in COLUMNS
    )
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            f"""
            DROP VIEW IF EXISTS {VIEW};
            DROP TABLE IF EXISTS hostile;
            CREATE TABLE hostile ({columns});
            CREATE VIEW {VIEW} AS SELECT * FROM hostile;
            """
        )
        conn.executemany(f"INSERT INTO hostile VALUES ({', '.join('?' * len(COLUMNS))})", rows)
        if undecodable:
            conn.execute(INSERT_UNDECODABLE)
        conn.commit()


def declared_columns(database: Path) -> list[str]:
    with closing(sqlite3.connect(database)) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(open_orders)")]


def assert_one_safe_line(message: str) -> None:
    for char in BREAKING:
        assert char not in message, f"{char!r} in {message[:200]!r}"
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in message)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "hostile-source.sqlite3"
    write_source(path, [*ROWS, NUL_ROW])
    return path


async def test_hostile_names_and_values_are_mirrored_exactly(
    settings: Settings, source: Path, database_path: Path
) -> None:
    async with sync_service(with_source(settings, sqlite_odbc(source))) as service:
        log = await service.scheduler.run_once()
        assert log is not None
        messages = await service.messages(log.id)
    assert log.status is Status.success, messages
    assert declared_columns(database_path) == COLUMNS
    stored = table_rows(database_path)
    assert stored[:3] == ROWS
    assert stored[3] == (4, "nul", "x", "y", "z", "w")  # the driver's cut at the NUL
    assert len(stored[0][5]) == 1_000_000  # type: ignore[arg-type]
    for message in messages:
        assert_one_safe_line(message)


async def test_undecodable_text_ends_the_run_with_one_line_and_keeps_the_old_set(
    settings: Settings, source: Path, database_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with sync_service(with_source(settings, sqlite_odbc(source))) as service:
        first = await service.scheduler.run_once()
        assert first is not None
        assert first.status is Status.success
        write_source(source, ROWS, undecodable=True)
        with caplog.at_level(logging.WARNING):
            log = await service.scheduler.run_once()
        assert log is not None
        messages = await service.messages(log.id)
    assert log.status is Status.error
    assert messages[-1] == (
        "ERROR: Fetch failed - the driver sent text that is not valid utf-16-le "
        "(unexpected end of data)"
    )
    assert len(table_rows(database_path)) == 4  # the first run's set
    assert "open_orders_staging" not in tables(database_path)
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a source's data"
    with closing(sqlite3.connect(source, timeout=0.5)) as conn:  # the run let go of the source
        conn.execute("DELETE FROM hostile WHERE id = 99")
        conn.commit()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT id, id FROM hostile", "ERROR: Import failed - column name 'id' appears twice"),
        (
            'SELECT id, "a""b" AS "ID" FROM hostile',
            "ERROR: Import failed - column name 'ID' appears twice",
        ),
        (
            'SELECT id AS "line\nbreak", "a""b" FROM hostile',
            "ERROR: Import failed - column 1 has an unusable name",
        ),
        (
            'SELECT id AS "bell\x07", "a""b" FROM hostile',
            "ERROR: Import failed - column 1 has an unusable name",
        ),
        ('SELECT id, "a""b" AS "" FROM hostile', "ERROR: Import failed - column 2 has no name"),
        (
            'SELECT * FROM "no\r\nsuch\x01table\tat all"',
            "ERROR: Fetch failed - [HY000] no such table: no such\ufffdtable at all",
        ),
        (
            'SELECT * FROM "sep\u2028arated\u0085too"',
            "ERROR: Fetch failed - [HY000] no such table: sep arated too",
        ),
    ],
)
async def test_columns_and_driver_errors_that_cannot_be_mirrored_end_the_run_cleanly(
    settings: Settings, source: Path, database_path: Path, query: str, expected: str
) -> None:
    async with sync_service(with_source(settings, sqlite_odbc(source))) as service:
        first = await service.scheduler.run_once()
        assert first is not None
        assert first.status is Status.success
        odd = with_source(settings, sqlite_odbc(source), source_query=query)
    async with sync_service(odd) as service:
        log = await service.scheduler.run_once()
        assert log is not None
        messages = await service.messages(log.id)
    assert log.status is Status.error
    assert messages[-1] == expected
    assert_one_safe_line(messages[-1])
    assert declared_columns(database_path) == COLUMNS  # the old set, untouched
    assert "open_orders_staging" not in tables(database_path)


async def test_a_huge_driver_message_is_one_bounded_line(settings: Settings, source: Path) -> None:
    query = 'SELECT * FROM "' + "x" * 90_000 + '"'
    async with sync_service(with_source(settings, sqlite_odbc(source), source_query=query)) as svc:
        log = await svc.scheduler.run_once()
        assert log is not None
        last = (await svc.messages(log.id))[-1]
    assert log.status is Status.error
    assert last.startswith("ERROR: Fetch failed - [HY000] no such table: xxxxxxxx")
    assert len(last) <= len("ERROR: Fetch failed - ") + MAX_ERROR_CHARS
    assert_one_safe_line(last)


class FakeDriverError(Exception):
    """Shaped like pyodbc.Error: ``args == (SQLSTATE, "[SQLSTATE] message (native) (call)")``."""


# A ';' and braces (braced in the connection string), and whitespace a one-line message folds.
PASSWORD = "s3cr3t;  {pa\tss}"


@pytest.mark.parametrize(
    "text",
    [
        "[HY000] [vendor]failed: nul\x00 cr\r lf\n tab\t vt\x0b ff\x0c del\x7f c1\x85 sep\u2028",
        "[HY000] [vendor]lone surrogate \ud800 and \udfff (1) (SQLExecDirectW)",
        "[28000] [vendor]login failed for pwd " + PASSWORD + " (18456) (SQLDriverConnect)",
        "[HY000] [vendor]" + " " * 1_000_000 + "after a megabyte of spaces (1)",
        "[HY000] [vendor]" + "y" * 1_000_000 + " " + PASSWORD,
        "[HY000] [vendor]" + "z" * (MAX_ERROR_CHARS - 30) + PASSWORD + "z" * 100,
    ],
    ids=["controls", "surrogates", "password", "spaces", "huge", "password-at-the-cut"],
)
def test_a_driver_error_is_described_as_one_bounded_scrubbed_line(text: str) -> None:
    hidden = [f"DRIVER={{X}};PWD={{{PASSWORD}}}", PASSWORD]
    started = time.perf_counter()
    message = describe_driver_error(FakeDriverError(text[1:6], text), hidden)
    assert time.perf_counter() - started < 0.5  # no regular expression gone quadratic
    assert_one_safe_line(message)
    assert len(message) <= MAX_ERROR_CHARS
    assert PASSWORD not in message
    assert " ".join(PASSWORD.split()) not in message  # nor its folded form
    assert PASSWORD[:6] not in message  # nor the half a cut would leave
    assert message.startswith(f"[{text[1:6]}] ")


async def test_values_sqlite_cannot_hold_are_replaced_visibly(db: Database) -> None:
    """A lone surrogate (no UTF-8 for it) becomes U+FFFD; an integer beyond 64 bits its exact
    text, which an INTEGER column turns into the nearest REAL, as SQLite does such literals."""
    columns = [Column("text", "TEXT"), Column("big", "TEXT"), Column("number", "INTEGER")]
    await create_staging(db, columns)
    async with open_staging(db, 3) as staging:
        batch = [("lone \ud800 surrogate", 2**70, 2**70), ("fine", 7, 7)]
        await asyncio.to_thread(staging.append, batch)
    async with db.snapshot() as conn:
        rows = [
            tuple(r) for r in await conn.execute_fetchall(f"SELECT * FROM {OPEN_ORDERS_STAGING}")
        ]
    assert rows == [("lone \ufffd surrogate", str(2**70), float(2**70)), ("fine", "7", 7)]


# --- the job log and the event stream, end to end -------------------------------------------


async def accepted(client: Client) -> ClientResponse | None:
    """``POST /api/job_logs``'s answer, or None when it is a 409 (a run is still going)."""
    started = await client.post("/api/job_logs", headers=ADMIN)
    return None if started.status == 409 else started


async def test_the_event_stream_stays_well_formed_through_hostile_runs(
    make_client: MakeClient, settings: Settings, source: Path
) -> None:
    """Runs that succeed with hostile columns, fail on undecodable text, fail on a column name
    with a control character and fail with a driver message holding CR, LF and a control
    character, watched live."""
    name = "hostile\r\nview\x01"
    query = f"SELECT * FROM {_quote(name)}"
    client = await make_client(with_source(settings, sqlite_odbc(source), source_query=query))
    db = client.app[appkeys.DATABASE]
    stream = await client.get("/api/events")
    assert stream.status == 200
    reader = SSEReader(stream)
    setups = [
        f"CREATE VIEW {_quote(name)} AS SELECT * FROM hostile",  # success
        INSERT_UNDECODABLE,
        # (a view renames a duplicate column itself: "id", "id:1")
        f"DROP VIEW {_quote(name)};"
        f'CREATE VIEW {_quote(name)} AS SELECT id AS "bell\x07", "a""b" FROM hostile',
        f"DROP VIEW {_quote(name)}",  # no such table: <name with CR, LF and \x01>
    ]
    events: list[SSEEvent] = []
    ids = []
    for sql in setups:
        with closing(sqlite3.connect(source)) as conn:
            conn.executescript(sql)
        # The run before may still be leaving the scheduler after its last event.
        started = await wait_for_async(
            lambda: accepted(client), "the run before left the scheduler", every=0.01
        )
        assert started.status == 202, await started.text()
        log_id = (await started.json())["id"]
        ids.append(log_id)

        def ended(item: object, log_id: int = log_id) -> bool:
            return (
                isinstance(item, SSEEvent)
                and item.type == "job_log"
                and item.json()["id"] == log_id
                and item.json()["status"] in ("success", "error")
            )

        async with asyncio.timeout(20):
            events += await reader.read_until(ended)
    stream.close()
    logs = [await job_log_with_details(db, log_id) for log_id in ids]
    assert [log.status for log in logs] == [Status.success, *[Status.error] * 3]
    assert logs[1].details[-1].message.startswith("ERROR: Fetch failed - the driver sent text")
    assert logs[2].details[-1].message == "ERROR: Import failed - column 1 has an unusable name"
    assert logs[3].details[-1].message == (
        "ERROR: Fetch failed - [HY000] no such table: hostile view\ufffd"
    )
    details = [e for e in events if e.type == "detail"]
    for event in events:
        assert "\n" not in event.data  # one data line
        json.loads(event.data)
    stored = [(d.id, d.message) for log in logs for d in log.details]
    assert [(e.json()["id"], e.json()["message"]) for e in details] == stored  # once each, in order
    for log in logs:
        text = await (await client.get(f"/api/job_logs/{log.name}.txt")).text()
        assert len(text.splitlines()) == len(log.details)
