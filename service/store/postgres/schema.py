"""Applies schema.sql (beside this module) to a PostgreSQL database, and adopts one the Rails
migrations made.

The script runs in one transaction, under a transaction-scoped advisory lock so that nodes
starting together apply it one after the other. A database without the per-status counts has
them filled in that transaction: creating their triggers locks ``job_logs`` against writes until
the commit, so the fill counts exactly the rows the triggers then keep counting (one
``GROUP BY`` over the status index; the Rails app's line inserts are not held up by it).

The composite index and the trigram index over existing rows are created afterwards with
``CREATE INDEX CONCURRENTLY``, which never blocks writers; one node builds them (a session
advisory lock), and a build that was interrupted (left INVALID) is dropped and built again.
Until the trigram index is valid, a search reads the lines themselves: same answers, slower.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from service.store.errors import IncompatibleSchema
from service.store.schema import REQUIRED_COLUMNS

logger = logging.getLogger(__name__)

SCHEMA = Path(__file__).with_name("schema.sql")
# The service's advisory locks are (19020, n): 19020 is 0x4A4C, 'JL'. 1: commit-ordered ids
# (schema.sql); 2: applying the schema; 3: building the indexes.
_SCHEMA_LOCK = (19020, 2)
_INDEX_LOCK = (19020, 3)
# The sequences schema.sql's id triggers draw from: what Rails' bigserial columns make.
_SEQUENCES = {"job_logs": "job_logs_id_seq", "job_log_details": "job_log_details_id_seq"}
# The trigram index that searches of lines use.
SEARCH_INDEX = "index_job_log_details_on_message_trgm"
INDEXES: dict[str, LiteralString] = {
    "index_job_logs_on_status_and_created_at": (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS index_job_logs_on_status_and_created_at "
        "ON job_logs (status, created_at)"
    ),
    "index_job_log_details_on_message_trgm": (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS index_job_log_details_on_message_trgm "
        "ON job_log_details USING gin (message gin_trgm_ops)"
    ),
}

Connection = psycopg.AsyncConnection[Any]


async def apply_schema(conn: Connection) -> None:
    """Check the tables already there, then apply schema.sql in one transaction. ``conn`` is
    in autocommit mode (no transaction of its own open)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _SCHEMA_LOCK)
        await _check_tables(conn)
        had_counts = await _exists(conn, "job_log_counts")
        new = not await _exists(conn, "job_log_details")
        await conn.execute(SCHEMA.read_text(encoding="utf-8").encode())
        if new:
            # Empty tables: the indexes cost nothing now (CONCURRENTLY is for existing rows).
            for create in INDEXES.values():
                await conn.execute(create.replace(" CONCURRENTLY", ""))
        if not had_counts:
            started = time.monotonic()
            await conn.execute(
                "INSERT INTO job_log_counts (status, n) "
                "SELECT status, count(*) FROM job_logs GROUP BY status"
            )
            logger.info("filled job_log_counts in %.3f s", time.monotonic() - started)


async def build_indexes(conn: Connection) -> bool:
    """Create the indexes over existing rows CONCURRENTLY (writers go on meanwhile); False
    when another node is building them. ``conn`` is in autocommit mode."""
    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", _INDEX_LOCK)
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return False
    try:
        for name, create in INDEXES.items():
            if await index_state(conn, name) == "invalid":
                # A build that was interrupted leaves its index INVALID: never used, still
                # kept up by every write. Drop it and build it again.
                logger.warning("index %s was left invalid; building it again", name)
                await conn.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
                )
            started = time.monotonic()
            await conn.execute(create)
            logger.info("index %s ready (%.1f s)", name, time.monotonic() - started)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s, %s)", _INDEX_LOCK)
    return True


async def index_state(conn: Connection, name: str) -> str:
    """``valid``, ``invalid`` (being built, or a build that was interrupted) or ``missing``."""
    cursor = await conn.execute(
        "SELECT i.indisvalid FROM pg_index AS i "
        "JOIN pg_class AS c ON c.oid = i.indexrelid "
        "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
        (name,),
    )
    row = await cursor.fetchone()
    return "missing" if row is None else "valid" if row[0] else "invalid"


async def _check_tables(conn: Connection) -> None:
    """The columns this service needs, and the sequences its id triggers draw from."""
    for table, required in REQUIRED_COLUMNS.items():
        cursor = await conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
        present = {row[0] for row in await cursor.fetchall()}
        if not present:
            continue
        missing = required - present
        if missing:
            raise IncompatibleSchema(f"table {table} lacks column(s) {', '.join(sorted(missing))}")
        cursor = await conn.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,))
        row = await cursor.fetchone()
        sequence = None if row is None or row[0] is None else str(row[0]).split(".")[-1]
        if sequence != _SEQUENCES[table]:
            raise IncompatibleSchema(
                f"table {table}: its id is not drawn from the sequence {_SEQUENCES[table]} "
                f"(found {sequence or 'none'})"
            )


async def _exists(conn: Connection, table: str) -> bool:
    cursor = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
    row = await cursor.fetchone()
    return bool(row and row[0])
