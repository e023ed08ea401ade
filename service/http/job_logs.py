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
from service.store import JobLogStore, NotFound
from service.sync import records_imported
from service.wire import JobLog, iso_z


async def list_logs(request: web.Request) -> web.Response:
    """Logs most recent first, filtered by status, created_at range and message text."""
    params = parse(ListParams, request.query)
    page = await request.app[appkeys.STORE].list_job_logs_json(params.query())
    return web.Response(text=page, content_type="application/json")


async def stats(request: web.Request) -> web.Response:
    """Counts in all and per status."""
    return reply(await request.app[appkeys.STORE].count_by_status())


async def latest(request: web.Request) -> web.Response:
    """The most recent log with its details."""
    text = await request.app[appkeys.STORE].latest_with_details_json()
    if text is None:
        raise NotFound("there are no job logs yet")
    return web.Response(text=text, content_type="application/json")


async def one(request: web.Request) -> web.Response:
    """A log by name or id, with its details in chronological order (unless details=false)."""
    store = request.app[appkeys.STORE]
    if not parse(OneParams, request.query).details:
        return reply(await store.job_log(request.match_info["ref"]))
    text = await store.job_log_with_details_json(request.match_info["ref"])
    return web.Response(text=text, content_type="application/json")


async def details(request: web.Request) -> web.Response:
    """A page of a log's details after a cursor, optionally only those containing text."""
    store = request.app[appkeys.STORE]
    log = await store.job_log(request.match_info["ref"])
    params = parse(DetailParams, request.query)
    page = await store.detail_page_json(log.id, after=params.after, limit=params.limit, q=params.q)
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
    store = app[appkeys.STORE]
    found = await store.buckets(since, width, params.buckets)
    filled = {bucket.index for bucket in found}
    first = await store.first_run_at()
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
    previous, following = await request.app[appkeys.STORE].neighbours(request.match_info["ref"])
    return reply(payloads.NeighboursOut(previous=previous, next=following))


async def text(request: web.Request) -> web.StreamResponse:
    """The whole log as text, one line per detail, streamed page by page; ``follow=true``:
    its lines as they are written, until it ends (see :mod:`service.http.text_follow`)."""
    store = request.app[appkeys.STORE]
    params = parse(TextParams, request.query)
    ref = request.match_info.get("ref")
    log = await (store.job_log(ref) if ref is not None else _latest(store, params.follow))
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
    async for page in store.iter_details(log.id):
        lines = "".join(f"{iso_z(d.created_at)}  {_one_line(d.message)}\n" for d in page)
        await response.write(lines.encode())
    await response.write_eof()
    return response


async def _latest(store: JobLogStore, follow: bool) -> JobLog | None:
    """``latest.txt``: the newest run; to follow, None (the run going on, or the next)."""
    if follow:
        return None
    log = await store.latest_job_log()
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
