"""The embedded demo source: about 1,500 realistic open orders in a local SQLite file.

It serves a newcomer's first runs through the same interface as ODBC, with a pause after each
batch so that a run lasts a few seconds and the live view has something to show. The file is
made on first use, beside the service's database, from a fixed seed: every run sees the same set.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from datetime import date, timedelta
from pathlib import Path

import aiosqlite

from .base import Column, Row, SourceDescription, SourceError

VIEW = "vwZSDOrder_Advanced"
ROWS = 1523
_SEED = 8800
_VERSION = 1

_COLUMNS = (
    ("SalesOrder", "TEXT"),
    ("Item", "INTEGER"),
    ("SoldTo", "TEXT"),
    ("CustomerName", "TEXT"),
    ("ShipTo", "TEXT"),
    ("Plant", "TEXT"),
    ("Material", "TEXT"),
    ("MaterialDescription", "TEXT"),
    ("OrderDate", "DATE"),
    ("RequestedDeliveryDate", "DATE"),
    ("ConfirmedDeliveryDate", "DATE"),
    ("OrderQuantity", "NUMERIC"),
    ("OpenQuantity", "NUMERIC"),
    ("Unit", "TEXT"),
    ("NetPrice", "NUMERIC"),
    ("Currency", "TEXT"),
    ("NetValue", "NUMERIC"),
    ("SalesOrganization", "TEXT"),
    ("DeliveryStatus", "TEXT"),
    ("CreatedBy", "TEXT"),
)
_CUSTOMERS = (
    ("Northwind Fasteners", "100482"),
    ("Contoso Machining", "100517"),
    ("Fabrikam Tooling", "100613"),
    ("Adventure Works Cycles", "100790"),
    ("Tailspin Aerostructures", "100834"),
    ("Litware Pumps", "100902"),
    ("Proseware Hydraulics", "101045"),
    ("Wide World Logistics", "101177"),
    ("Coho Marine Systems", "101233"),
    ("Lucerne Medical Devices", "101388"),
)
_MATERIALS = (
    ("ZX-1040", "Hex bolt M10x40 zinc", "EA", 0.18),
    ("ZX-1260", "Hex bolt M12x60 stainless", "EA", 0.62),
    ("WS-0012", "Flat washer 12 mm", "EA", 0.03),
    ("BR-6204", "Deep groove ball bearing 6204-2RS", "EA", 3.85),
    ("SH-2500", "Steel shaft 25 mm x 500 mm", "EA", 14.20),
    ("PL-3015", "Aluminium plate 3 mm 1000x2000", "EA", 88.00),
    ("TB-4020", "Steel tube 40x20x2", "M", 6.75),
    ("GS-0100", "Nitrile gasket 100 mm", "EA", 1.40),
    ("HY-0800", "Hydraulic hose 8 mm", "M", 4.10),
    ("PW-0500", "Powder coat RAL 9005", "KG", 9.60),
    ("SP-0316", "Compression spring 3x16", "EA", 0.21),
    ("CB-1800", "Control cable 18 AWG", "M", 0.95),
)
_CLERKS = ("MSCHMIDT", "JNOVAK", "AROSSI", "KTANAKA", "LGARCIA")


def ensure_demo_file(path: Path) -> None:
    """Create the demo file with its table and view unless it is already there."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with closing(sqlite3.connect(partial)) as conn:
        columns = ", ".join(f'"{name}" {kind}' for name, kind in _COLUMNS)
        conn.execute(f"CREATE TABLE open_order_lines ({columns})")
        conn.execute(f"CREATE VIEW {VIEW} AS SELECT * FROM open_order_lines")
        conn.executemany(
            f"INSERT INTO open_order_lines VALUES ({', '.join('?' * len(_COLUMNS))})",
            demo_rows(),
        )
        conn.execute(f"PRAGMA user_version = {_VERSION}")
        conn.commit()
    partial.replace(path)


def demo_rows() -> list[tuple[object, ...]]:
    """The demo's open order lines, the same every time."""
    rng = random.Random(_SEED)
    rows: list[tuple[object, ...]] = []
    order = 4_512_000
    start = date(2025, 10, 1)
    while len(rows) < ROWS:
        order += rng.randint(1, 9)
        customer, sold_to = rng.choice(_CUSTOMERS)
        ordered = start + timedelta(days=rng.randint(0, 75))
        for item in range(1, rng.randint(1, 6) + 1):
            material, text, unit, price = rng.choice(_MATERIALS)
            quantity = rng.choice((10, 25, 50, 100, 250, 500, 1000)) * (2 if unit == "EA" else 1)
            open_quantity = quantity - rng.choice((0, 0, 0, quantity // 4, quantity // 2))
            requested = ordered + timedelta(days=rng.randint(7, 45))
            confirmed = (
                requested + timedelta(days=rng.randint(0, 10)) if rng.random() < 0.8 else None
            )
            rows.append(
                (
                    f"{order:010d}",
                    item * 10,
                    sold_to,
                    customer,
                    sold_to if rng.random() < 0.7 else str(int(sold_to) + 5000),
                    "8800",
                    material,
                    text,
                    ordered.isoformat(),
                    requested.isoformat(),
                    confirmed.isoformat() if confirmed else None,
                    f"{quantity:.3f}",
                    f"{open_quantity:.3f}",
                    unit,
                    f"{price:.2f}",
                    "USD",
                    f"{open_quantity * price:.2f}",
                    "8800",
                    "A" if open_quantity == quantity else "B",
                    rng.choice(_CLERKS),
                )
            )
            if len(rows) == ROWS:
                break
    return rows


class DemoSource:
    """Serves the demo file's view, pausing ``delay`` seconds after each batch."""

    def __init__(self, path: Path, *, delay: float) -> None:
        self.path = path
        self._delay = delay

    @property
    def description(self) -> SourceDescription:
        """``demo`` with no server."""
        return SourceDescription(kind="demo", server=None)

    @property
    def connecting_message(self) -> str:
        """``Connecting to demo source...``."""
        return "Connecting to demo source..."

    @property
    def fetching_from(self) -> str:
        """The demo view's name."""
        return VIEW

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[DemoSession]:
        """A read-only session on the demo file (made first if missing)."""
        try:
            await asyncio.to_thread(ensure_demo_file, self.path)
            conn = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True)
        except (OSError, sqlite3.Error) as exc:
            raise SourceError(f"demo source {self.path}: {exc}") from None
        try:
            yield DemoSession(conn, self._delay)
        finally:
            await conn.close()


class DemoSession:
    """Count, execute and fetch over the demo view."""

    def __init__(self, conn: aiosqlite.Connection, delay: float) -> None:
        self._conn = conn
        self._delay = delay
        self._cursor: aiosqlite.Cursor | None = None
        self._started = False

    async def count(self) -> int | None:
        """The number of demo rows."""
        async with self._conn.execute(f"SELECT COUNT(*) FROM {VIEW}") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else None

    async def execute(self) -> list[Column]:
        """Open the view; its columns as declared."""
        try:
            self._cursor = await self._conn.execute(f"SELECT * FROM {VIEW}")
        except sqlite3.Error as exc:
            raise SourceError(f"demo source: {exc}") from None
        return [Column(name, kind) for name, kind in _COLUMNS]

    def warnings(self) -> list[str]:
        """The demo source never warns."""
        return []

    async def fetch_each(self, size: int, each: Callable[[list[Row]], bool]) -> None:
        """Batches of ``size`` rows, each after the demo's pause (from the second on), handed
        to ``each`` on a worker thread, as it does blocking work."""
        assert self._cursor is not None, "execute() first"
        while True:
            if self._started and self._delay:
                await asyncio.sleep(self._delay)
            self._started = True
            rows: list[Row] = list(await self._cursor.fetchmany(size))
            if not await asyncio.to_thread(each, rows) or not rows:
                return
