"""``GET /api/events``: job logs live over Server-Sent Events, resumable without loss.

Event ids are detail ids. A client resumes with ``Last-Event-ID`` (or ``?last_event_id=``) and
gets every detail with a greater id, then the live stream: the stream subscribes first, replays
from the database, then drops live details it already sent — no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from aiohttp import web

from service import appkeys
from service.events import Event, Subscriber, TooManySubscribers
from service.http import payloads
from service.http.params import EventParams, parse
from service.metrics import Metrics
from service.store import Database, JobLog, Status, history

logger = logging.getLogger(__name__)

RETRY_MS = 2000
REPLAY_PAGE = 500
_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class _Gone(Exception):
    """The client stopped reading (stalled write) or went away."""


async def events(request: web.Request) -> web.StreamResponse:
    """Every log's events, or one log's (``?job_log=<ref>``), resumable after an event id."""
    db = request.app[appkeys.DATABASE]
    hub = request.app[appkeys.HUB]
    values = dict(request.query)
    if "Last-Event-ID" in request.headers:
        values["last_event_id"] = request.headers["Last-Event-ID"]
    params = parse(EventParams, values)
    followed = await history.find_job_log(db, params.job_log) if params.job_log else None
    last_id = params.last_event_id
    if await _has_everything(db, followed, last_id):
        return web.Response(status=204)
    try:
        subscriber = hub.subscribe(followed.id if followed else None)
    except TooManySubscribers:
        raise web.HTTPServiceUnavailable(
            reason="too many event streams are open", headers={"Retry-After": "5"}
        ) from None
    stream = _Stream(
        request,
        subscriber,
        request.app[appkeys.SETTINGS].sse_stall_seconds,
        request.app[appkeys.METRICS],
    )
    subscriber.on_cut_off = stream.abort
    try:
        await stream.open()
        await stream.run(db, followed, last_id, request.app[appkeys.SETTINGS].sse_ping_seconds)
    except _Gone:
        stream.abort()
    finally:
        hub.unsubscribe(subscriber)
    return stream.response


async def _has_everything(db: Database, followed: JobLog | None, last_id: int | None) -> bool:
    """True when the followed log has ended and the client holds its last detail."""
    if followed is None or not followed.status.finished or last_id is None:
        return False
    return last_id >= await history.last_detail_id(db, followed.id)


class _Stream:
    """One subscriber's stream: what it has sent, so nothing goes out twice or stale."""

    def __init__(
        self, request: web.Request, subscriber: Subscriber, stall: float, metrics: Metrics
    ) -> None:
        self.request = request
        self._metrics = metrics
        self.subscriber = subscriber
        self.response = web.StreamResponse(headers=_HEADERS)
        self._stall = stall
        self._last_detail = 0
        self._log_state: dict[int, tuple[datetime, Status]] = {}

    async def open(self) -> None:
        await self.response.prepare(self.request)
        await self._write(f"retry: {RETRY_MS}\n\n".encode())

    async def run(
        self, db: Database, followed: JobLog | None, last_id: int | None, ping: float
    ) -> None:
        """Announce, replay, then follow live until the end, a shutdown or a cut-off."""
        if followed is not None:
            # Read before the replay: once a log is seen finished, all its lines are committed.
            followed = await history.load_job_log(db, followed.id)
        later = await self._announce(db, followed, last_id)
        if last_id is not None or followed is not None:
            await self._replay(db, last_id or 0, followed)
        for log in later:
            await self._send_log(log)
        if followed is not None and followed.status.finished:
            await self._end(followed)
            return
        await self._follow(followed, ping)

    async def _announce(
        self, db: Database, followed: JobLog | None, last_id: int | None
    ) -> list[JobLog]:
        """Send the state of the logs the client should know; finished ones wait (returned)
        until their details are replayed, so a log's last line precedes its final status."""
        logs = {log.id: log for log in self.subscriber.open_logs.values()}
        if followed is not None:
            logs = {followed.id: followed}
        elif last_id is not None:
            logs |= {log.id: log for log in await history.logs_with_details_after(db, last_id)}
        later = []
        for log in sorted(logs.values(), key=lambda item: item.id):
            if log.status.finished:
                later.append(log)
            else:
                await self._send_log(log)
        return later

    async def _replay(self, db: Database, after: int, followed: JobLog | None) -> None:
        job_log_id = followed.id if followed else None
        while True:
            page = await history.details_after(db, after, limit=REPLAY_PAGE, job_log_id=job_log_id)
            fresh = [d for d in page if d.id > self._last_detail]
            if fresh:
                # One write per page: a long replay is bounded by the network, not by writes.
                self._last_detail = fresh[-1].id
                frames = b"".join(Event(d.job_log_id, detail=d).frame for d in fresh)
                await self._write(frames, events=len(fresh))
            if len(page) < REPLAY_PAGE:
                return
            after = page[-1].id

    async def _follow(self, followed: JobLog | None, ping: float) -> None:
        queue = self.subscriber.queue
        while True:
            # Cut off with a full queue, the end marker may not fit: stop once it is drained.
            if self.subscriber.closed and queue.empty():
                if self.subscriber.overflowed:
                    raise _Gone
                return
            try:
                async with asyncio.timeout(ping):
                    event = await queue.get()
            except TimeoutError:
                await self._write(b": ping\n\n")
                continue
            if event is None:
                if self.subscriber.overflowed:
                    raise _Gone
                return
            await self._send(event)
            log = event.job_log
            if followed is not None and log is not None and log.status.finished:
                await self._end(log)
                return

    async def _send(self, event: Event) -> None:
        if event.detail is not None:
            if event.detail.id <= self._last_detail:
                return
            self._last_detail = event.detail.id
            await self._write(event.frame, events=1)
        elif event.job_log is not None:
            await self._send_log(event.job_log, event.frame)

    async def _send_log(self, log: JobLog, frame: bytes | None = None) -> None:
        """A log's state, unless the client has it already or has a newer one."""
        state = (log.updated_at, log.status)
        known = self._log_state.get(log.id)
        if known is not None and (known == state or known[0] > log.updated_at):
            return
        self._log_state[log.id] = state
        await self._write(frame or Event(log.id, job_log=log).frame, events=1)

    async def _end(self, log: JobLog) -> None:
        data = payloads.job_log_out(log).model_dump_json()
        await self._write(f"event: end\ndata: {data}\n\n".encode(), events=1)

    async def _write(self, data: bytes, *, events: int = 0) -> None:
        """Write ``data`` (holding ``events`` events) unless the client stalls or is gone."""
        try:
            async with asyncio.timeout(self._stall):
                await self.response.write(data)
        except TimeoutError:
            logger.info("an event stream stalled for %s s; cutting it off", self._stall)
            self._metrics.dropped.inc()
            raise _Gone from None
        except (ConnectionResetError, ConnectionError):
            raise _Gone from None
        if events:
            self._metrics.events_sent.inc(events)

    def abort(self) -> None:
        """Drop the connection without waiting on a client that does not read."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()


def add_routes(app: web.Application) -> None:
    """Register the event stream."""
    app.router.add_get("/api/events", events)
