"""The wording of the job's lines and the safety of driver messages."""

from __future__ import annotations

import pytest

from service.sources import connection_string as cs
from service.sources import diagnostics
from service.sync import batch_line, records_imported


@pytest.mark.parametrize(
    ("batch", "planned", "rows", "line"),
    [
        (1, 4, 500, "Batch 1/4 imported (500 records)"),
        (4, 4, 23, "Batch 4/4 imported (23 records)"),
        (5, 4, 500, "Batch 5/5 imported (500 records)"),
        (1, 0, 12, "Batch 1/1 imported (12 records)"),
        (1024, 2000, 500, "Batch 1,024/2,000 imported (500 records)"),
        (3, None, 500, "Batch 3 imported (500 records)"),
        (2, 2, 10_000, "Batch 2/2 imported (10,000 records)"),
    ],
)
def test_batch_lines(batch: int, planned: int | None, rows: int, line: str) -> None:
    assert batch_line(batch, planned, rows) == line


def test_connection_strings_parse_with_braces() -> None:
    pairs = cs.parse("Driver={ODBC Driver 18 for SQL Server};Server=tcp:CASQL2,1433;PWD={a;b}}c}")
    assert pairs == {
        "driver": "ODBC Driver 18 for SQL Server",
        "server": "tcp:CASQL2,1433",
        "pwd": "a;b}c",
    }
    assert cs.is_sql_server(pairs)
    assert cs.server_label(pairs) == "tcp:CASQL2,1433"


@pytest.mark.parametrize(
    ("text", "label", "sql_server"),
    [
        ("DRIVER={FreeTDS};SERVER=db1;PORT=1433", "db1", True),
        ("DSN=orders", "orders", False),
        ("DRIVER={PostgreSQL Unicode};Database=orders", "orders", False),
        ("DRIVER={SQLite3}", "SQLite3", False),
    ],
)
def test_what_the_source_is_called(text: str, label: str, sql_server: bool) -> None:
    pairs = cs.parse(text)
    assert cs.server_label(pairs) == label
    assert cs.is_sql_server(pairs) is sql_server


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("SERVER=x;PWD=y", "neither a DRIVER nor a DSN"),
        ("DRIVER={FreeTDS;SERVER=x", "never closed"),
        ("DRIVER=x;justtext", "without '='"),
        ("=x;DSN=y", "empty attribute name"),
    ],
)
def test_invalid_connection_strings(text: str, says: str) -> None:
    with pytest.raises(cs.ConnectionStringError, match=says) as caught:
        cs.parse(text)
    assert text not in str(caught.value)


def test_driver_errors_are_short_and_never_hold_the_password() -> None:
    text = "DRIVER={FreeTDS};SERVER=db;UID=zsdOrder8800;PWD=hunter2"
    hidden = cs.secrets(text, cs.parse(text))
    error = Exception(
        "28000",
        "[28000] [FreeTDS][SQL Server]Login failed for user 'zsdOrder8800' "
        "(password hunter2). (18456) (SQLDriverConnect)",
    )
    assert cs.describe_driver_error(error, hidden) == (
        "[28000] Login failed for user 'zsdOrder8800' (password ***)."
    )


def test_a_drivers_warnings_become_lines() -> None:
    """SQL Server's own warning keeps its SQLSTATE; vendor tags and native codes go; the
    password never shows; PostgreSQL's notices (SQLSTATE 00000) are split, one line each."""
    hidden = ["s3cret"]
    said = [
        (
            "[01003] (8153)",
            "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Warning: Null value is "
            "eliminated by an aggregate or other SET operation. (8153) (SQLExecDirectW)",
        ),
        ("[01000] (0)", "[FreeTDS][SQL Server]login as sa with s3cret"),
        ("[00000] (-1)", "NOTICE: rate table of 2025;WARNING: order 7 late; kept"),
    ]
    assert diagnostics.warnings_from(said, hidden) == [
        "[01003] Warning: Null value is eliminated by an aggregate or other SET operation.",
        "[01000] login as sa with ***",
        "NOTICE: rate table of 2025",
        "order 7 late; kept",
    ]


def test_a_long_warning_in_pieces_is_put_back_together() -> None:
    """A diagnostic longer than the driver's buffer arrives as pieces of the buffer's length
    and a shorter last one; short records of one state stay apart."""
    notices = ";".join(f"WARNING: order {n} late" for n in range(1, 400))
    pieces = [notices[i : i + 1022] for i in range(0, len(notices), 1022)]
    said = [("[00000] (-1)", piece) for piece in pieces]
    said += [("[01000] (0)", "first"), ("[01000] (0)", "second")]
    found = diagnostics.warnings_from(said, [])
    assert found == [f"order {n} late" for n in range(1, 400)] + ["[01000] first", "[01000] second"]


@pytest.mark.parametrize(
    ("line", "records"),
    [
        ("Job completed successfully - Total: 1,523 records in 2.3 seconds", 1523),
        ("Job completed successfully - Total: 0 records in 0.1 seconds (3 gone)", 0),
        ("ERROR: Fetch failed - Total: 5 records in 1 s", None),
        ("Fetched 1,523 records", None),
        (None, None),
    ],
)
def test_the_records_a_run_imported_are_read_from_its_last_line(
    line: str | None, records: int | None
) -> None:
    assert records_imported(line) == records
