"""Every SQL statement on open_orders: the staging table, its batches, and the atomic swap.

The staging table is created and dropped here; its batches are written by the run's own
connection (:mod:`.staging`), one short transaction each, so job-log appends never wait behind
the load. The swap is one short ``BEGIN IMMEDIATE`` transaction: drop the old table, rename
staging into its place, and recreate the views, triggers and indexes that belong to
``open_orders`` — a reader sees the complete old set or the complete new set, never less.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from service.sources.base import Column

from .database import Database
from .errors import StoreError
from .rows import fetch_all, fetch_one

OPEN_ORDERS = "open_orders"
OPEN_ORDERS_STAGING = "open_orders_staging"
_MENTIONS_TARGET = re.compile(r"\bopen_orders\b", re.IGNORECASE)
_MAX_IDENTIFIER = 128

# Source values SQLite cannot bind natively, stored as the text Rails and SQLite read back:
# ISO dates and times, and decimals as exact text (NUMERIC affinity keeps them numeric).
sqlite3.register_adapter(dt.datetime, lambda value: value.isoformat(sep=" "))
sqlite3.register_adapter(dt.date, lambda value: value.isoformat())
sqlite3.register_adapter(dt.time, lambda value: value.isoformat())
sqlite3.register_adapter(decimal.Decimal, str)
sqlite3.register_adapter(uuid.UUID, str)


class InvalidColumns(StoreError):
    """The source's columns cannot be mirrored (empty, duplicate or unprintable names)."""


@dataclass(frozen=True)
class ChangeSummary:
    """How the new set differs from the old one, by key."""

    new: int
    gone: int
    changed: int

    def __str__(self) -> str:
        return f"{self.new:,} new, {self.gone:,} gone, {self.changed:,} changed"


def quote(name: str) -> str:
    """A validated identifier, double-quoted for SQLite."""
    return '"' + name.replace('"', '""') + '"'


def validate_columns(columns: Sequence[Column]) -> list[Column]:
    """The columns, checked to be mirrorable: named, printable, unique ignoring case."""
    if not columns:
        raise InvalidColumns("the source returned no columns")
    seen: set[str] = set()
    for position, column in enumerate(columns, start=1):
        name = column.name
        if not name or not name.strip():
            raise InvalidColumns(f"column {position} has no name")
        if len(name) > _MAX_IDENTIFIER or not name.isprintable():
            raise InvalidColumns(f"column {position} has an unusable name")
        if name.casefold() in seen:
            raise InvalidColumns(f"column name {name!r} appears twice")
        seen.add(name.casefold())
    return list(columns)


async def drop_staging(db: Database) -> None:
    """Remove a staging table left by a failed, cancelled or killed run."""
    async with db.transaction() as conn:
        await conn.execute_fetchall(f"DROP TABLE IF EXISTS {OPEN_ORDERS_STAGING}")


async def create_staging(db: Database, columns: Sequence[Column]) -> None:
    """An empty staging table with the source's columns."""
    definition = ", ".join(f"{quote(c.name)} {c.sqlite_type}" for c in validate_columns(columns))
    async with db.transaction() as conn:
        await conn.execute_fetchall(f"DROP TABLE IF EXISTS {OPEN_ORDERS_STAGING}")
        await conn.execute_fetchall(f"CREATE TABLE {OPEN_ORDERS_STAGING} ({definition})")


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_INT64 = range(-(2**63), 2**63)


def storable(value: object) -> object:
    """``value`` as SQLite can store it: a lone surrogate (UTF-8 cannot encode it) becomes
    U+FFFD, an integer beyond 64 bits its decimal text; anything else is kept as it is."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        return str(value)
    return value


async def count_open_orders(db: Database, table: str = OPEN_ORDERS) -> int:
    """Rows in ``open_orders`` (or staging); 0 when the table does not exist yet."""
    if table not in (OPEN_ORDERS, OPEN_ORDERS_STAGING):
        raise ValueError(f"not a sync table: {table}")
    async with db.snapshot() as conn:
        if not await _exists(conn, table):
            return 0
        row = await fetch_one(conn, f"SELECT count(*) FROM {table}", ())
    return int(row[0]) if row is not None else 0


async def change_summary(db: Database, key: str) -> ChangeSummary | None:
    """New, gone and changed keys of staging against open_orders; None when not comparable."""
    async with db.snapshot() as conn:
        if not await _exists(conn, OPEN_ORDERS):
            return None
        old = await _columns(conn, OPEN_ORDERS)
        new = await _columns(conn, OPEN_ORDERS_STAGING)
        by_fold = {name.casefold(): name for name in new}
        if key.casefold() not in by_fold or key.casefold() not in {n.casefold() for n in old}:
            return None
        k = quote(by_fold[key.casefold()])
        common = ", ".join(quote(n) for n in new if n.casefold() in {o.casefold() for o in old})
        new_set, old_set = OPEN_ORDERS_STAGING, OPEN_ORDERS
        counts = await _fetch_counts(
            conn,
            f"""
            SELECT
              (SELECT count(*) FROM (SELECT {k} FROM {new_set} EXCEPT SELECT {k} FROM {old_set})),
              (SELECT count(*) FROM (SELECT {k} FROM {old_set} EXCEPT SELECT {k} FROM {new_set})),
              (SELECT count(DISTINCT {k}) FROM (
                  SELECT {common} FROM {new_set} EXCEPT SELECT {common} FROM {old_set}
               ) WHERE {k} IN (SELECT {k} FROM {old_set}))
            """,
        )
    return ChangeSummary(*counts)


async def swap_open_orders(db: Database) -> None:
    """Replace open_orders by staging in one short transaction, keeping what depends on it."""
    async with db.transaction() as conn:
        if not await _exists(conn, OPEN_ORDERS_STAGING):
            raise StoreError("there is no staging table to swap in")
        dependants = await _dependants(conn)
        for kind, name, _ in dependants:
            if kind in ("view", "trigger"):
                await conn.execute_fetchall(f"DROP {kind.upper()} IF EXISTS {quote(name)}")
        await conn.execute_fetchall(f"DROP TABLE IF EXISTS {OPEN_ORDERS}")
        await conn.execute_fetchall(f"ALTER TABLE {OPEN_ORDERS_STAGING} RENAME TO {OPEN_ORDERS}")
        for _, _, sql in dependants:
            await conn.execute_fetchall(sql)


async def _dependants(conn: aiosqlite.Connection) -> list[tuple[str, str, str]]:
    """Indexes and triggers on open_orders and views or triggers that mention it, in order."""
    rows = await fetch_all(
        conn,
        "SELECT type, name, tbl_name, sql FROM sqlite_master "
        "WHERE type IN ('index', 'view', 'trigger') AND sql IS NOT NULL ORDER BY rowid",
    )
    found = []
    for kind, name, table, sql in rows:
        if table.casefold() == OPEN_ORDERS_STAGING or name.casefold().startswith(
            OPEN_ORDERS_STAGING
        ):
            continue
        if table.casefold() == OPEN_ORDERS or (kind != "index" and _MENTIONS_TARGET.search(sql)):
            found.append((kind, name, sql))
    # Views first, then indexes, then triggers: a trigger may read a view.
    order = {"view": 0, "index": 1, "trigger": 2}
    return sorted(found, key=lambda item: order[item[0]])


async def _exists(conn: aiosqlite.Connection, table: str) -> bool:
    found = await fetch_one(
        conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    )
    return found is not None


async def _columns(conn: aiosqlite.Connection, table: str) -> list[str]:
    return [row[1] for row in await fetch_all(conn, f"PRAGMA table_info({table})")]


async def _fetch_counts(conn: aiosqlite.Connection, sql: str) -> tuple[int, int, int]:
    row = await fetch_one(conn, sql, ())
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])
