"""Liveness (/healthz), readiness (/readyz) and the Prometheus metrics (/metrics)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from service import appkeys
from service.http import payloads
from service.http.replies import reply
from service.store import JobLog, StoreError, history, latest_job_log
from service.store.heartbeat import Unready

NO_STORE = {"Cache-Control": "no-store"}
# The sync is late when its last success is older than this many intervals.
LATE_AFTER_INTERVALS = 3


async def healthz(request: web.Request) -> web.Response:
    """200 ``{"status": "ok"}`` while the event loop runs; touches no database."""
    return web.json_response({"status": "ok"}, headers=NO_STORE)


async def readyz(request: web.Request) -> web.Response:
    """200 when a real write reaches the database file and the scheduler runs; else 503.

    A failing source does not make the service unready: it makes the sync late.
    """
    app = request.app
    try:
        await app[appkeys.HEARTBEAT].check()
        database = "ok"
    except Unready as exc:
        database = str(exc)
    scheduler = app[appkeys.SCHEDULER]
    scheduler_check = "ok" if scheduler.alive else "the scheduler loop has stopped"
    # Read after the write check, so a failed read is reported over a passed write.
    db = app[appkeys.DATABASE]
    last_run: JobLog | None = None
    last_success: datetime | None = None
    try:
        last_run = await latest_job_log(db)
        last_success = await history.last_success_at(db)
    except (StoreError, sqlite3.Error) as exc:
        database = f"reading the database failed: {exc}"
    interval = app[appkeys.SETTINGS].sync_interval_seconds
    ready = database == "ok" and scheduler_check == "ok"
    body = payloads.ReadyOut(
        status="ready" if ready else "unready",
        checks=payloads.ReadyChecksOut(database=database, scheduler=scheduler_check),
        source=payloads.source_out(app[appkeys.SOURCE].description),
        last_run=payloads.job_log_out(last_run) if last_run else None,
        last_success_at=payloads.iso_z(last_success) if last_success else None,
        next_run_at=payloads.iso_z(scheduler.next_run_at) if scheduler.next_run_at else None,
        sync=sync_state(last_success, app[appkeys.CLOCK](), interval),
    )
    return reply(body, status=200 if ready else 503, headers=NO_STORE)


def sync_state(
    last_success: datetime | None, now: datetime, interval_seconds: float
) -> Literal["ok", "late", "never"]:
    """``never`` before the first success; ``late`` when it is older than 3 intervals."""
    if last_success is None:
        return "never"
    if interval_seconds <= 0:  # no schedule: nothing is ever late
        return "ok"
    late = timedelta(seconds=LATE_AFTER_INTERVALS * interval_seconds)
    return "late" if now - last_success > late else "ok"


async def metrics(request: web.Request) -> web.Response:
    """Every metric in the Prometheus text format."""
    body = request.app[appkeys.METRICS].render()
    response = web.Response(body=body, headers=NO_STORE)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def add_routes(app: web.Application) -> None:
    """Register the probes and the metrics."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
