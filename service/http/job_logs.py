"""Reading the history: ``/api/job_logs`` and its sub-resources."""

from __future__ import annotations

from aiohttp import web

from service import appkeys
from service.http import payloads, text_follow
from service.http.params import (
    DetailParams,
    ListParams,
    OneParams,
    TextParams,
    TimelineParams,
    parse,
)
from service.http.replies import reply
from service.schedule import gaps
from service.store import (
    Database,
    NotFound,
    buckets,
    count_by_status,
    detail_page_json,
    first_run_at,
    iter_details,
    job_log,
    job_log_with_details_json,
    latest_job_log,
    latest_with_details_json,
    list_job_logs_json,
    neighbours,
)
from service.sync import records_imported
from service.wire import JobLog, iso_z


async def list_logs(request: web.Request) -> web.Response:
    """Logs most recent first, filtered by status, created_at range and message text."""
    params = parse(ListParams, request.query)
    page = await list_job_logs_json(request.app[appkeys.DATABASE], params.query())
    return web.Response(text=page, content_type="application/json")


async def stats(request: web.Request) -> web.Response:
    """Counts in all and per status."""
    return reply(await count_by_status(request.app[appkeys.DATABASE]))


async def latest(request: web.Request) -> web.Response:
    """The most recent log with its details."""
    text = await latest_with_details_json(request.app[appkeys.DATABASE])
    if text is None:
        raise NotFound("there are no job logs yet")
    return web.Response(text=text, content_type="application/json")


async def one(request: web.Request) -> web.Response:
    """A log by name or id, with its details in chronological order (unless details=false)."""
    db = request.app[appkeys.DATABASE]
    if not parse(OneParams, request.query).details:
        return reply(await job_log(db, request.match_info["ref"]))
    text = await job_log_with_details_json(db, request.match_info["ref"])
    return web.Response(text=text, content_type="application/json")


async def details(request: web.Request) -> web.Response:
    """A page of a log's details after a cursor, optionally only those containing text."""
    db = request.app[appkeys.DATABASE]
    log = await job_log(db, request.match_info["ref"])
    params = parse(DetailParams, request.query)
    page = await detail_page_json(db, log.id, after=params.after, limit=params.limit, q=params.q)
    return web.Response(text=page.text(), content_type="application/json")


async def timeline(request: web.Request) -> web.Response:
    """Runs per time bucket over a window (the overview's chart; scripts too), and the gaps
    where the schedule wanted runs and none started."""
    app = request.app
    params = parse(TimelineParams, request.query)
    since, until = params.window(app[appkeys.CLOCK]())
    if since == until:  # an empty window holds nothing
        return reply(
            payloads.TimelineOut(since=since, until=until, bucket_seconds=0, buckets=[], gaps=[])
        )
    width = (until - since) / params.buckets
    db = app[appkeys.DATABASE]
    found = await buckets(db, since, width, params.buckets)
    filled = {bucket.index for bucket in found}
    first = await first_run_at(db)
    if first is None:
        filled = set(range(params.buckets))  # no history: nothing was missed
    elif first > since:
        filled |= set(range(min(params.buckets, int((first - since) / width) + 1)))
    missed = gaps(
        app[appkeys.SETTINGS].plan(), since, width, params.buckets, filled, app[appkeys.CLOCK]()
    )
    return reply(
        payloads.TimelineOut(
            since=since,
            until=until,
            bucket_seconds=width.total_seconds(),
            buckets=[
                payloads.BucketOut(
                    start=since + width * bucket.index,
                    runs=bucket.runs,
                    succeeded=bucket.succeeded,
                    failed=bucket.failed,
                    going=bucket.going,
                    longest_seconds=bucket.longest_seconds,
                    latest_name=bucket.latest_name,
                    latest_status=bucket.latest_status.name,
                    latest_records=records_imported(bucket.latest_last_line),
                )
                for bucket in found
            ],
            gaps=[payloads.GapOut(start=start, end=end) for start, end in missed],
        )
    )


async def around(request: web.Request) -> web.Response:
    """The runs just before and after this one (the run view's previous and next links)."""
    previous, following = await neighbours(request.app[appkeys.DATABASE], request.match_info["ref"])
    return reply(payloads.NeighboursOut(previous=previous, next=following))


async def text(request: web.Request) -> web.StreamResponse:
    """The whole log as text, one line per detail, streamed page by page; ``follow=true``:
    its lines as they are written, until it ends (see :mod:`service.http.text_follow`)."""
    db = request.app[appkeys.DATABASE]
    params = parse(TextParams, request.query)
    ref = request.match_info.get("ref")
    log = await (job_log(db, ref) if ref is not None else _latest(db, params.follow))
    if params.follow:
        return await text_follow.follow(request, log)
    assert log is not None  # without follow, _latest raises NotFound instead
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{log.name}.txt"',
        }
    )
    await response.prepare(request)
    async for page in iter_details(db, log.id):
        lines = "".join(f"{iso_z(d.created_at)}  {_one_line(d.message)}\n" for d in page)
        await response.write(lines.encode())
    await response.write_eof()
    return response


async def _latest(db: Database, follow: bool) -> JobLog | None:
    """``latest.txt``: the newest run; to follow, None (the run going on, or the next)."""
    if follow:
        return None
    log = await latest_job_log(db)
    if log is None:
        raise NotFound("there is no job log yet")
    return log


def _one_line(message: str) -> str:
    return message.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def add_routes(app: web.Application) -> None:
    """Register the history routes (fixed paths before the ``{ref}`` ones)."""
    app.router.add_get("/api/job_logs", list_logs)
    app.router.add_get("/api/job_logs/stats", stats)
    app.router.add_get("/api/job_logs/latest", latest)
    app.router.add_get("/api/job_logs/latest.txt", text)
    app.router.add_get("/api/job_logs/timeline", timeline)
    app.router.add_get("/api/job_logs/{ref}.txt", text)
    app.router.add_get("/api/job_logs/{ref}/details", details)
    app.router.add_get("/api/job_logs/{ref}/neighbours", around)
    app.router.add_get("/api/job_logs/{ref}", one)
