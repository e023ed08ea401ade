"""Real ODBC sources for the sync tests: SQLite files through the SQLite3 ODBC driver, FreeTDS."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from .system import missing

ODBCINST_INI = Path("/etc/odbcinst.ini")
VIEW = "vwZSDOrder_Advanced"
COLUMNS = ("OrderNumber", "Customer", "Quantity", "Price", "OrderDate", "Note")


def require_driver(name: str, package: str) -> None:
    """Skip (fail under CI) unless pyodbc loads and unixODBC knows the driver ``name``."""
    try:
        import pyodbc  # noqa: F401
    except ImportError:
        missing("unixODBC (the Debian package unixodbc)")
    try:
        registered = f"[{name}]" in ODBCINST_INI.read_text()
    except OSError:
        registered = False
    if not registered:
        missing(f"the ODBC driver {name} (the Debian package {package})")


def sqlite_odbc(path: Path) -> str:
    """The connection string for a SQLite file through the SQLite3 ODBC driver, streaming."""
    require_driver("SQLite3", "libsqliteodbc")
    return f"DRIVER={{SQLite3}};Database={path};StepAPI=1"


def freetds(port: int, *, password: str = "s3cret-Pa55") -> str:
    """A FreeTDS connection string to a server on loopback at ``port``."""
    require_driver("FreeTDS", "tdsodbc")
    return (
        f"DRIVER={{FreeTDS}};SERVER=127.0.0.1;PORT={port};DATABASE=orders;"
        f"UID=zsdOrder8800;PWD={password};TDS_Version=7.4;ClientCharset=UTF-8"
    )


def order_rows(count: int, *, version: int = 0) -> list[tuple[object, ...]]:
    """``count`` order lines; ``version`` changes every seventh quantity, to make changes."""
    return [
        (
            1000 + n,
            f"Customer {n % 37}",
            n % 50 + (version if n % 7 == 0 else 0),
            round(1.25 * (n % 13), 2),
            f"2025-12-{n % 28 + 1:02d}",
            'quote\'s "text"\nline two' if n % 11 == 0 else None,
        )
        for n in range(count)
    ]


def write_orders(path: Path, rows: list[tuple[object, ...]]) -> None:
    """Make ``path`` a source holding ``rows`` in a table behind the view."""
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            f"""
            DROP VIEW IF EXISTS {VIEW};
            DROP TABLE IF EXISTS order_lines;
            CREATE TABLE order_lines (
              OrderNumber INTEGER PRIMARY KEY, Customer TEXT, Quantity INTEGER,
              Price REAL, OrderDate DATE, Note TEXT);
            CREATE VIEW {VIEW} AS SELECT * FROM order_lines;
            """
        )
        conn.executemany("INSERT INTO order_lines VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.commit()
