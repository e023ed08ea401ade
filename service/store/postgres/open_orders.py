"""``open_orders`` on PostgreSQL: each run's own staging table, and the swap in one transaction.

Each run stages into a table of its own (``open_orders_staging_<run id>``, UNLOGGED: a crash
loses only a staging table, which the next start drops), so a stale runner's rows never mix
with a live one's. The swap is one transaction, fenced by the run's lease epoch:

* columns unchanged: ``DELETE`` and ``INSERT … SELECT`` — the table, its views, indexes and
  grants stay; readers see the old set until the commit, then the new one (MVCC). Never
  ``TRUNCATE``, which is not MVCC-safe: a reader could see an empty table;
* columns changed: the views on it are dropped, the table dropped and staging renamed in its
  place, then its indexes and the views created again from their definitions (a view that
  needs a column that is gone fails the swap, and the old set stays);
* ``lock_timeout`` bounds how long the swap waits for a reader's lock instead of queueing
  every later reader behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from service.sources.base import Column, Row

from ..errors import StoreError
from ..open_orders import OPEN_ORDERS, ChangeSummary, validate_columns
from .database import Connection, PgDatabase
from .lease import fence

STAGING_PREFIX = "open_orders_staging_"
# How long the swap waits for a lock (a long reader of open_orders) before it fails.
LOCK_TIMEOUT = "5s"
# The source's column types (as the SQLite mirror declares them) in PostgreSQL.
_TYPES = {
    "BOOLEAN": "boolean",
    "INTEGER": "bigint",
    "REAL": "double precision",
    "NUMERIC": "numeric",
    "TEXT": "text",
    "BLOB": "bytea",
    "DATETIME": "timestamp(6) without time zone",
    "DATE": "date",
    "TIME": "time without time zone",
}


def staging_table(run_id: int) -> str:
    """The staging table of run ``run_id``."""
    return f"{STAGING_PREFIX}{int(run_id)}"


async def create_staging(db: PgDatabase, run_id: int, columns: Sequence[Column]) -> None:
    """An empty staging table of the run's own, with the source's columns."""
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(_TYPES.get(c.sqlite_type, "text")))
        for c in validate_columns(columns)
    )
    table = sql.Identifier(staging_table(run_id))
    async with db.transaction() as conn:
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        await conn.execute(sql.SQL("CREATE UNLOGGED TABLE {} ({})").format(table, definition))


async def stage(db: PgDatabase, run_id: int, rows: Sequence[Row]) -> None:
    """Add a batch of rows to the run's staging table (COPY), in a transaction of its own."""
    async with db.transaction() as conn, conn.cursor() as cursor:
        copy_sql = sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(staging_table(run_id)))
        async with cursor.copy(copy_sql) as copy:
            for row in rows:
                await copy.write_row(row)


async def drop_staging(db: PgDatabase, run_id: int | None = None) -> None:
    """Drop run ``run_id``'s staging table; None: every staging table (left by dead runs)."""
    async with db.transaction() as conn:
        if run_id is not None:
            names = [staging_table(run_id)]
        else:
            cursor = await conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename LIKE 'open\\_orders\\_staging\\_%'"
            )
            names = [row["tablename"] for row in await cursor.fetchall()]
        for name in names:
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


async def count_open_orders(db: PgDatabase, run_id: int | None = None) -> int:
    """Rows in open_orders (``run_id``: in that run's staging); 0 when there is no table."""
    name = OPEN_ORDERS if run_id is None else staging_table(run_id)
    async with db.transaction() as conn:
        if not await _exists(conn, name):
            return 0
        cursor = await conn.execute(
            sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(name))
        )
        row = await cursor.fetchone()
    return int(row["n"]) if row is not None else 0


async def change_summary(db: PgDatabase, run_id: int, key: str) -> ChangeSummary | None:
    """New, gone and changed keys of run ``run_id``'s staging against open_orders (``key``
    matched ignoring case, as in SQLite mode); None when they cannot be compared."""
    staging = staging_table(run_id)
    async with db.transaction() as conn:
        if not await _exists(conn, OPEN_ORDERS) or not await _exists(conn, staging):
            return None
        old = [name for name, _ in await _columns(conn, OPEN_ORDERS)]
        new = [name for name, _ in await _columns(conn, staging)]
        by_fold = {name.casefold(): name for name in new}
        if key.casefold() not in by_fold or key.casefold() not in {n.casefold() for n in old}:
            return None
        folded_old = {o.casefold() for o in old}
        k = sql.Identifier(by_fold[key.casefold()])
        common = sql.SQL(", ").join(sql.Identifier(n) for n in new if n.casefold() in folded_old)
        new_set, old_set = sql.Identifier(staging), sql.Identifier(OPEN_ORDERS)
        cursor = await conn.execute(
            sql.SQL(
                "SELECT "
                "(SELECT count(*) FROM (SELECT {k} FROM {new} EXCEPT SELECT {k} FROM {old}) AS a) "
                "AS new, "
                "(SELECT count(*) FROM (SELECT {k} FROM {old} EXCEPT SELECT {k} FROM {new}) AS b) "
                "AS gone, "
                "(SELECT count(DISTINCT {k}) FROM (SELECT {common} FROM {new} "
                "EXCEPT SELECT {common} FROM {old}) AS c WHERE {k} IN (SELECT {k} FROM {old})) "
                "AS changed"
            ).format(k=k, new=new_set, old=old_set, common=common)
        )
        row = await cursor.fetchone()
    assert row is not None
    return ChangeSummary(int(row["new"]), int(row["gone"]), int(row["changed"]))


async def swap_open_orders(db: PgDatabase, run_id: int, epoch: int) -> None:
    """Replace open_orders by run ``run_id``'s staging in one transaction, fenced by
    ``epoch`` (LeaseLost: the lease moved on, nothing changes)."""
    staging = staging_table(run_id)
    async with db.transaction() as conn:
        await conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        await fence(conn, epoch)
        if not await _exists(conn, staging):
            raise StoreError(f"run {run_id} has no staging table to swap in")
        new = await _columns(conn, staging)
        target, source = sql.Identifier(OPEN_ORDERS), sql.Identifier(staging)
        if await _exists(conn, OPEN_ORDERS) and await _columns(conn, OPEN_ORDERS) == new:
            await conn.execute(sql.SQL("DELETE FROM {}").format(target))
            await conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(target, source))
            await conn.execute(sql.SQL("DROP TABLE {}").format(source))
            return
        views, indexes = await _dependants(conn)
        for name, _ in reversed(views):
            await conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(name)))
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
        # The staging table was UNLOGGED; open_orders is a table like any other.
        await conn.execute(sql.SQL("ALTER TABLE {} SET LOGGED").format(source))
        await conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(source, target))
        for definition in indexes:
            await conn.execute(definition.encode())
        for name, definition in views:
            await conn.execute(
                sql.SQL("CREATE VIEW {} AS ").format(sql.Identifier(name)) + sql.SQL(definition)
            )


async def _dependants(conn: Connection) -> tuple[list[tuple[str, str]], list[str]]:
    """The views that read open_orders (name, definition; in creation order) and the
    definitions of its indexes other than a primary key's."""
    cursor = await conn.execute(
        "SELECT DISTINCT v.oid, v.relname AS name, pg_get_viewdef(v.oid) AS definition "
        "FROM pg_depend AS d JOIN pg_rewrite AS r ON r.oid = d.objid "
        "JOIN pg_class AS v ON v.oid = r.ev_class "
        "WHERE d.refobjid = to_regclass(%s) AND v.oid <> d.refobjid ORDER BY v.oid",
        (OPEN_ORDERS,),
    )
    views = [(row["name"], row["definition"]) for row in await cursor.fetchall()]
    cursor = await conn.execute(
        "SELECT pg_get_indexdef(i.indexrelid) AS definition FROM pg_index AS i "
        "WHERE i.indrelid = to_regclass(%s) AND NOT i.indisprimary ORDER BY i.indexrelid",
        (OPEN_ORDERS,),
    )
    indexes = [row["definition"] for row in await cursor.fetchall()]
    return views, indexes


async def _exists(conn: Connection, table: str) -> bool:
    cursor = await conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL AS found", (sql.Identifier(table).as_string(),)
    )
    row: dict[str, Any] | None = await cursor.fetchone()
    return bool(row and row["found"])


async def _columns(conn: Connection, table: str) -> list[tuple[str, str]]:
    cursor = await conn.execute(
        "SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (sql.Identifier(table).as_string(),),
    )
    return [(row["name"], row["type"]) for row in await cursor.fetchall()]
