"""The floor of the history benchmark: minimal aiohttp handlers that run the service's own SQL
for each endpoint through one aiosqlite connection and answer ``json.dumps`` of the rows.

No validation, no access control, no models, no error mapping: what any aiohttp service reading
this database through aiosqlite pays at least. The service is asked to reach 0.9x its req/s.

    python -m bench.history_floor PORT DATABASE
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
from aiohttp import web

DB = web.AppKey("db", aiosqlite.Connection)
_LOG = "l.id, l.name, l.status, l.created_at, l.updated_at"
_STATUS = {"pending": 0, "processing": 1, "error": 2, "success": 3}


def _rows(rows: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in rows]


def _answer(value: object) -> web.Response:
    return web.Response(text=json.dumps(value), content_type="application/json")


async def list_logs(request: web.Request) -> web.Response:
    """The service's statement for a page of runs without a time range or text."""
    page = int(request.query.get("page", "1"))
    status = request.query.get("status")
    runs, where, params = "job_logs", "", []
    total = "SELECT coalesce(sum(n), 0) FROM job_log_counts"
    if status is not None:
        # A status filter reads the runs by status, as the service does.
        runs, where, params = "job_logs_by_status", " WHERE status = ?", [_STATUS[status]]
        total += " WHERE status = ?"
    rows = await request.app[DB].execute_fetchall(
        f"WITH page AS (SELECT id FROM {runs}{where} "
        "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?) "
        f"SELECT ({total}) AS total, {_LOG} FROM (SELECT 1) "
        "LEFT JOIN job_logs AS l ON l.id IN (SELECT id FROM page) "
        "ORDER BY l.created_at DESC, l.id DESC",
        [*params, 25, (page - 1) * 25, *params],
    )
    items = [dict(row) for row in rows if row["id"] is not None]
    total_of = next(iter(rows))["total"] if rows else 0
    return _answer({"items": items, "page": page, "per_page": 25, "total": total_of})


async def stats(request: web.Request) -> web.Response:
    """The service's statement for the counts."""
    rows = await request.app[DB].execute_fetchall(
        "SELECT status, n FROM job_log_counts WHERE n > 0"
    )
    return _answer(_rows(rows))


async def _with_details(db: aiosqlite.Connection, column: str, key: object) -> web.Response:
    rows = _rows(
        await db.execute_fetchall(
            f"SELECT {_LOG}, d.id AS d_id, d.job_log_id AS d_job_log_id, "
            "d.message AS d_message, d.created_at AS d_created_at, "
            "d.updated_at AS d_updated_at FROM job_logs AS l "
            "LEFT JOIN job_log_details AS d ON d.job_log_id = l.id "
            f"WHERE l.{column} = ? ORDER BY d.created_at, d.id",
            (key,),
        )
    )
    if not rows:
        raise web.HTTPNotFound()
    return _answer({**rows[0], "details": rows})


async def one(request: web.Request) -> web.Response:
    """The service's statement for a run with its lines."""
    return await _with_details(request.app[DB], "name", request.match_info["ref"])


async def latest(request: web.Request) -> web.Response:
    """The service's two statements for the latest run with its lines."""
    db = request.app[DB]
    rows = await db.execute_fetchall(
        "SELECT id, name, status, created_at, updated_at FROM job_logs "
        "ORDER BY created_at DESC, id DESC LIMIT 1"
    )
    return await _with_details(db, "id", next(iter(rows))["id"])


async def details(request: web.Request) -> web.Response:
    """The service's statements for a page of a run's lines (no text): the run, then the page
    as JSON written by SQLite and whether more follow, in one statement."""
    db = request.app[DB]
    found = await db.execute_fetchall(
        "SELECT id, name, status, created_at, updated_at FROM job_logs WHERE name = ?",
        (request.match_info["ref"],),
    )
    log_id = next(iter(found))["id"]
    after, limit = int(request.query.get("after", "0")), 100
    where = "job_log_id = ? AND id > ?"
    rows = await db.execute_fetchall(
        "WITH p AS (SELECT id, job_log_id, message, created_at FROM job_log_details "
        f"WHERE {where} ORDER BY id LIMIT ?), "
        "a AS (SELECT json_group_array(json_object('id', id, 'job_log_id', job_log_id, "
        "'message', message, 'created_at', created_at)) AS items, max(id) AS last FROM p) "
        f"SELECT a.*, EXISTS (SELECT 1 FROM job_log_details WHERE {where} AND id > a.last) "
        "AS more FROM a",
        (log_id, after, limit, log_id, after),
    )
    row = next(iter(rows))
    more = bool(row["more"])
    next_after = json.dumps(row["last"] if more else None)
    return web.Response(
        text=f'{{"items":{row["items"]},"next_after":{next_after}}}',
        content_type="application/json",
    )


async def healthz(request: web.Request) -> web.Response:
    """What ServerProcess waits for."""
    return web.Response(text="ok")


def create_app(path: str) -> web.Application:
    """The floor's app on the database at ``path``."""
    app = web.Application()

    async def database(app: web.Application) -> AsyncIterator[None]:
        db = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        db.row_factory = sqlite3.Row
        app[DB] = db
        yield
        await db.close()

    app.cleanup_ctx.append(database)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/job_logs", list_logs)
    app.router.add_get("/api/job_logs/stats", stats)
    app.router.add_get("/api/job_logs/latest", latest)
    app.router.add_get("/api/job_logs/{ref}/details", details)
    app.router.add_get("/api/job_logs/{ref}", one)
    return app


def main() -> None:
    web.run_app(
        create_app(sys.argv[2]),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
