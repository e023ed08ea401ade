"""Liveness (/healthz), readiness (/readyz) and the Prometheus metrics (/metrics).

The probes are open (health checkers carry no credentials); what they say to a caller who is
not a viewer names no server, file or run: the status code and the word for each check only.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from service import appkeys
from service.credentials import Role
from service.http import payloads
from service.http.auth import CALLER, Access, requires
from service.http.replies import NO_STORE, reply
from service.schedule import Cron, Freshness, freshness
from service.sources import SourceDescription
from service.store import StoreError, Unready
from service.wire import JobLog


@requires(Access.public)
async def healthz(request: web.Request) -> web.Response:
    """200 ``{"status": "ok"}`` while the event loop runs; touches no database."""
    return web.json_response({"status": "ok"}, headers=NO_STORE)


@requires(Access.public)
async def readyz(request: web.Request) -> web.Response:
    """200 when a real write reaches the database file and the scheduler runs; else 503.

    A failing source does not make the service unready: it makes the sync late. Nor does a
    search index still being built for an adopted database (``search: building``, with its
    progress): meanwhile every request is answered, and answered right — searches scan the
    lines instead, slower — so taking the service out of a load balancer's rotation (hours at
    most, once) would only turn slow answers into none. Only a viewer is told which server,
    file and run.
    """
    app = request.app
    try:
        await app[appkeys.BACKEND].check_ready()
        database = "ok"
    except Unready as exc:
        database = str(exc)
    scheduler = app[appkeys.SCHEDULER]
    scheduler_check = "ok" if scheduler.alive else "the scheduler loop has stopped"
    # Read after the write check, so a failed read is reported over a passed write.
    store = app[appkeys.STORE]
    last_run: JobLog | None = None
    last_success: datetime | None = None
    search_progress: float | None = None
    try:
        last_run = await store.latest_job_log()
        last_success = await store.last_success_at()
        search_progress = await store.search_progress()
    except (StoreError, sqlite3.Error) as exc:
        database = f"reading the database failed: {exc}"
    ready = database == "ok" and scheduler_check == "ok"
    body = payloads.ReadyOut(
        status="ready" if ready else "unready",
        checks=payloads.ReadyChecksOut(database=database, scheduler=scheduler_check),
        source=app[appkeys.SOURCE].description,
        last_run=last_run,
        last_success_at=last_success,
        next_run_at=scheduler.next_run_at,
        sync=sync_state(app, last_success),
        search="ready" if search_progress is None else "building",
        search_progress=search_progress,
    )
    if request[CALLER].role < Role.viewer:
        body = _discreet(body)
    return reply(body, status=200 if ready else 503, headers=NO_STORE)


def _discreet(body: payloads.ReadyOut) -> payloads.ReadyOut:
    """What anyone may know: ready or not, each check ``ok`` or ``failing``, the sync's state."""
    checks = body.checks
    return body.model_copy(
        update={
            "checks": payloads.ReadyChecksOut(
                database="ok" if checks.database == "ok" else "failing",
                scheduler="ok" if checks.scheduler == "ok" else "failing",
            ),
            "source": SourceDescription(kind=body.source.kind, server=None),
            "last_run": None,
            "last_success_at": None,
            "next_run_at": None,
        }
    )


def sync_state(
    app: web.Application, last_success: datetime | None
) -> Literal["ok", "late", "never", "paused"]:
    """The sync's state for /readyz: ``ok`` when fresh (see :func:`sync_freshness`)."""
    state = sync_freshness(app, last_success).state
    return "ok" if state == "fresh" else state


def sync_freshness(app: web.Application, last_success: datetime | None) -> Freshness:
    """How fresh open_orders is now, by the settings' schedule."""
    settings = app[appkeys.SETTINGS]
    now = app[appkeys.CLOCK]()
    return freshness(last_success, now, settings.plan(), settings.late_after)


def next_runs(app: web.Application, count: int = 3) -> list[datetime]:
    """The next ``count`` scheduled runs: the cron schedule's, or the grid's from the
    scheduler's next tick."""
    settings = app[appkeys.SETTINGS]
    plan = settings.plan()
    if isinstance(plan, Cron):
        return plan.upcoming(app[appkeys.CLOCK](), count)
    first = app[appkeys.SCHEDULER].next_run_at
    if first is None or settings.sync_interval_seconds <= 0:
        return []
    interval = timedelta(seconds=settings.sync_interval_seconds)
    return [first + k * interval for k in range(count)]


@requires(Access.metrics)
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
