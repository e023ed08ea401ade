"""A run's lines as plain text while they are written: ``….txt?follow=true``, for ``curl -N``.

Like ``kubectl logs -f``: the lines already written, then each new one as it is committed (by
this process or another), one ``HH:MM:SS.mmm  message`` line each in the service's TIMEZONE;
the response ends when the run ends, after its last line. ``latest.txt?follow=true`` follows
the run going on, or waits for the next one to start and follows it.

Exactness does not depend on the event hub: the hub only wakes the follower, which reads what
is committed after its cursor from the database. It reads the run's status before its lines,
so once it sees the run finished, the lines it reads next are all there are. A follower is one
of the SSE_MAX_CLIENTS subscribers; it is released within the hub's tick when its client goes
away, and ended at shutdown like every stream.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

from aiohttp import web

from service import appkeys
from service.events import Batch, Event, TooManySubscribers
from service.store import JobLogStore, NotFound
from service.wire import JobLog

PAGE = 1000


class _Wake:
    """A subscriber that only says something changed (the follower reads the rest)."""

    __slots__ = ("_changed", "_request", "ended", "gone", "job_log_id")

    def __init__(self, request: web.Request, job_log_id: int | None) -> None:
        self.job_log_id = job_log_id
        self._request = request
        self._changed = asyncio.Event()
        # Ended: stop following (shutdown, or the client went away: gone).
        self.ended = False
        self.gone = False

    def offer(self, event: Event) -> bool:
        self._changed.set()
        return True

    def offer_batch(self, batch: Batch) -> bool:
        self._changed.set()
        return True

    def tick(self, now: float) -> bool:
        transport = self._request.transport
        if transport is None or transport.is_closing():
            self.gone = True
            self.end()
            return False
        return True

    def end(self) -> None:
        self.ended = True
        self._changed.set()

    def clear(self) -> None:
        self._changed.clear()

    async def wait(self) -> None:
        await self._changed.wait()


def text_line(moment: datetime, message: str, zone: ZoneInfo) -> str:
    """``14:30:22.250  Connected successfully``: one line, however many the message has."""
    local = moment.astimezone(zone)
    flat = message.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    return f"{local:%H:%M:%S}.{local.microsecond // 1000:03d}  {flat}\n"


async def follow(request: web.Request, log: JobLog | None) -> web.StreamResponse:
    """Stream ``log``'s lines until it ends; None: the run going on, or else the next one."""
    app = request.app
    store, hub = app[appkeys.STORE], app[appkeys.HUB]
    wake = _Wake(request, None if log is None else log.id)
    try:
        hub.subscribe(wake)
    except TooManySubscribers:
        raise web.HTTPServiceUnavailable(
            reason="too many event streams are open", headers={"Retry-After": "5"}
        ) from None
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/plain; charset=utf-8",
                "Cache-Control": "no-cache",
                # A proxy that buffers would hold every line until the run ends.
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        if log is None:
            log = await _next_run(store, wake)
        if log is not None:
            await _follow_run(store, log, wake, response, app[appkeys.SETTINGS].zone)
        if not wake.gone:
            await response.write_eof()
    except ConnectionResetError:  # the client went away mid-write
        pass
    finally:
        hub.unsubscribe(wake)
    return response


async def _next_run(store: JobLogStore, wake: _Wake) -> JobLog | None:
    """The newest run still open, or the next one to start; None if the stream ends first."""
    while not wake.ended:
        wake.clear()
        running = await store.open_job_logs()
        if running:
            return running[-1]
        await wake.wait()
    return None


async def _follow_run(
    store: JobLogStore, log: JobLog, wake: _Wake, response: web.StreamResponse, zone: ZoneInfo
) -> None:
    after = 0
    while not wake.ended:
        wake.clear()
        try:
            finished = (await store.job_log(log.id)).status.finished
        except NotFound:  # purged meanwhile: nothing more will come
            return
        while True:
            page = await store.detail_page(log.id, after=after, limit=PAGE)
            if page.items:
                text = "".join(text_line(d.created_at, d.message, zone) for d in page.items)
                await response.write(text.encode())
                after = page.items[-1].id
            if page.next_after is None:
                break
        if finished:
            return
        await wake.wait()
