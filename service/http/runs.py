"""Running the sync: its status, run now, cancel."""

from __future__ import annotations

from aiohttp import web

from service import appkeys
from service.http import health, payloads
from service.http.auth import Access, requires
from service.http.errors import error_body
from service.http.params import RunParams, parse
from service.http.replies import reply
from service.scheduler import RunInProgress
from service.wire import JobLog

CANCELLED = "Cancelled by request"
NO_BODY = "this request takes no body"
# How long a cancel waits for the run to write its last line before answering.
_CANCEL_WAIT_SECONDS = 4.0


async def status(request: web.Request) -> web.Response:
    """Source, schedule, the run in progress (in any process) and the last success."""
    store = request.app[appkeys.STORE]
    scheduler = request.app[appkeys.SCHEDULER]
    running = await _running(request)
    last = await store.last_success_at()
    fresh = health.sync_freshness(request.app, last)
    failed = await store.last_error()
    settings = request.app[appkeys.SETTINGS]
    several = request.app[appkeys.BACKEND].several
    if several is not None:
        sync_node = await several.sync_node()
    else:
        sync_node = settings.node if scheduler.running is not None else None
    return reply(
        payloads.StatusOut(
            source=request.app[appkeys.SOURCE].description,
            interval_seconds=request.app[appkeys.SETTINGS].sync_interval_seconds,
            next_run_at=scheduler.next_run_at,
            running=running,
            last_success_at=last,
            sync=payloads.SyncOut(
                state=fresh.state,
                late_since=fresh.late_since,
                schedule=request.app[appkeys.SETTINGS].sync_schedule,
                next_runs=health.next_runs(request.app),
                last_error=(
                    None
                    if failed is None
                    else payloads.LastErrorOut(job_log=failed.job_log, line=failed.line)
                ),
            ),
            node=settings.node,
            sync_node=sync_node,
        )
    )


def _refuse_a_body(request: web.Request) -> None:
    """413 before anything else when a body comes with the POST. It is never read: aiohttp
    discards what still arrives for its lingering time at most, then closes the connection."""
    if request.can_read_body:
        raise web.HTTPRequestEntityTooLarge(0, reason=NO_BODY)


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue``: a POST here takes no body, so it is never asked for; one that
    announces a body gets its 413 at once instead of a ``100 Continue``."""
    if not request.can_read_body:
        return None
    response = error_body(413, NO_BODY)
    response.force_close()
    return response


@requires(Access.admin)
async def run_now(request: web.Request) -> web.Response:
    """Start a run: 202 with its log, or 409 with the run in progress."""
    _refuse_a_body(request)
    params = parse(RunParams, request.query)
    try:
        log = await request.app[appkeys.SCHEDULER].trigger(force=params.force)
    except RunInProgress as busy:
        # As it is now, not as it was created (pending).
        store = request.app[appkeys.STORE]
        running = (
            await store.job_log(busy.running.id) if busy.running else None
        ) or await _running(request)
        return reply(
            payloads.ConflictOut(
                error="a sync run is already in progress",
                job_log=running,
            ),
            status=409,
        )
    return reply(log, status=202, headers={"Location": f"job_logs/{log.name}"})


@requires(Access.admin)
async def cancel(request: web.Request) -> web.Response:
    """End a running run as error (``ERROR: Cancelled by request``): 202, or 409."""
    _refuse_a_body(request)
    store = request.app[appkeys.STORE]
    log = await store.job_log(request.match_info["ref"])
    scheduler = request.app[appkeys.SCHEDULER]
    if scheduler.running is None or scheduler.running.id != log.id:
        elsewhere = "node" if request.app[appkeys.BACKEND].several else "process"
        why = "is not running" if log.status.finished else f"is run by another {elsewhere}"
        return reply(
            payloads.ConflictOut(error=f"job log {log.name} {why}", job_log=log),
            status=409,
        )
    await scheduler.cancel(CANCELLED, wait=_CANCEL_WAIT_SECONDS)
    return reply(await store.job_log(log.id), status=202)


async def _running(request: web.Request) -> JobLog | None:
    scheduler = request.app[appkeys.SCHEDULER]
    if scheduler.running is not None:
        return scheduler.running
    open_logs = await request.app[appkeys.STORE].open_job_logs()
    return open_logs[-1] if open_logs else None


def add_routes(app: web.Application) -> None:
    """Register the run routes."""
    app.router.add_get("/api/status", status)
    app.router.add_post("/api/job_logs", run_now, expect_handler=_expect)
    app.router.add_post("/api/job_logs/{ref}/cancel", cancel, expect_handler=_expect)
