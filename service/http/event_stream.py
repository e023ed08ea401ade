"""``GET /api/events``: job logs live over Server-Sent Events, resumable without loss.

Event ids are detail ids. A client resumes with ``Last-Event-ID`` (or ``?last_event_id=``) and
gets every detail with a greater id, then the live stream: the stream subscribes first, replays
from the database, then drops live details it already sent — no gap, no duplicate.

Each stream is a subscriber of the hub (:class:`service.events.Subscriber`). While it is caught
up — nothing waiting, its task idle — the hub's offer writes a detail's pre-encoded chunk
straight to the transport, without waking the task; anything else waits in the stream's own
bounded backlog, which its task writes with the stall limit. A backlog over SSE_BUFFER_EVENTS
cuts the stream off (the offer says no, the connection is aborted).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import sys
import termios
import time
from collections import deque
from datetime import datetime

from aiohttp import web

from service import appkeys
from service.events import Event, TooManySubscribers
from service.http import sse
from service.http.auth import CALLER
from service.http.params import EventParams, parse
from service.metrics import Metrics
from service.store import Database, details_after, job_log, last_detail_id, logs_with_details_after
from service.wire import JobLog, Status

logger = logging.getLogger(__name__)

RETRY_MS = 2000
REPLAY_PAGE = 500
# A caught-up stream is written straight from the hub while its transport holds less than this
# (asyncio's default high-water mark); beyond it, events wait for the stream's own task, whose
# writes wait for the client within the stall limit.
DIRECT_LIMIT = 64 * 1024


class _Gone(Exception):
    """The client stopped reading (stalled write) or went away."""


async def events(request: web.Request) -> web.StreamResponse:
    """Every log's events, or one log's (``?job_log=<ref>``), resumable after an event id."""
    app = request.app
    db = app[appkeys.DATABASE]
    hub = app[appkeys.HUB]
    settings = app[appkeys.SETTINGS]
    values = dict(request.query)
    if "Last-Event-ID" in request.headers:
        values["last_event_id"] = request.headers["Last-Event-ID"]
    params = parse(EventParams, values)
    followed = await job_log(db, params.job_log) if params.job_log else None
    last_id = params.last_event_id
    if await _has_everything(db, followed, last_id):
        return web.Response(status=204)
    stream = EventStream(
        request,
        job_log_id=followed.id if followed else None,
        buffer=settings.sse_buffer_events,
        stall=settings.sse_stall_seconds,
        metrics=app[appkeys.METRICS],
    )
    try:
        open_logs = hub.subscribe(stream)
    except TooManySubscribers:
        raise web.HTTPServiceUnavailable(
            reason="too many event streams are open", headers={"Retry-After": "5"}
        ) from None
    expires_at = request[CALLER].expires_at
    if expires_at is not None:
        # A browser session's stream ends with the session: its reconnect is then refused.
        stream.ends_at = time.monotonic() + (expires_at - app[appkeys.CLOCK]()).total_seconds()
    try:
        await stream.open()
        await stream.run(db, followed, last_id, open_logs, settings.sse_ping_seconds)
    except _Gone:
        stream.abort()
    finally:
        hub.unsubscribe(stream)
    return stream.response


async def _has_everything(db: Database, followed: JobLog | None, last_id: int | None) -> bool:
    """True when the followed log has ended and the client holds its last detail."""
    if followed is None or not followed.status.finished or last_id is None:
        return False
    return last_id >= await last_detail_id(db, followed.id)


class _Progress:
    """Whether the client is taking what is sent: bytes written, less those still waiting in
    this process's buffer or unacknowledged in the kernel's send queue.

    A client that stops reading (or is suspended, like ``curl`` after ^Z) first lets its
    kernel fill its receive window; from then on nothing more is acknowledged and its data
    waits here. A stream whose data has waited without any progress for the stall limit is
    cut off — long before the writes themselves would block behind megabytes of buffers.
    """

    def __init__(self, transport: asyncio.BaseTransport | None) -> None:
        self._transport = transport if isinstance(transport, asyncio.WriteTransport) else None
        sock = transport.get_extra_info("socket") if transport is not None else None
        self._fd: int | None = sock.fileno() if sock is not None else None
        self.written = 0
        self._taken = 0
        self._since = time.monotonic()

    def waiting(self) -> int:
        """Bytes written but not yet acknowledged by the client's kernel."""
        waiting = self._transport.get_write_buffer_size() if self._transport is not None else 0
        if self._fd is not None:
            try:
                queued = fcntl.ioctl(self._fd, termios.TIOCOUTQ, b"\0\0\0\0")
                waiting += int.from_bytes(queued, sys.byteorder, signed=True)
            except OSError:  # closed under us, or not a TCP socket
                self._fd = None
        return waiting

    def stalled_for(self) -> float:
        """Seconds the client has had data waiting without taking any of it."""
        waiting = self.waiting()
        taken = self.written - waiting
        now = time.monotonic()
        if waiting <= 0 or taken > self._taken:
            self._taken, self._since = taken, now
            return 0.0
        return now - self._since


class EventStream:
    """One client's stream: a subscriber of the hub that remembers what it has sent, so
    nothing goes out twice or stale."""

    def __init__(
        self,
        request: web.Request,
        *,
        job_log_id: int | None,
        buffer: int,
        stall: float,
        metrics: Metrics,
    ) -> None:
        self.request = request
        self.job_log_id = job_log_id
        self.response = web.StreamResponse(headers=sse.HEADERS)
        # When the stream ends by itself (the caller's session expires), on the monotonic clock.
        self.ends_at: float | None = None
        self._metrics = metrics
        self._buffer = buffer
        self._stall = stall
        self._progress = _Progress(request.transport)
        # How often to look whether the client still takes what it is sent.
        self._check_every = max(stall / 4, 0.05)
        self._next_check = 0.0
        self._chunked = False
        self._last_detail = 0
        self._log_state: dict[int, tuple[datetime, Status]] = {}
        self._backlog: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        # True while the task waits with nothing in the backlog: the hub may then write.
        self._caught_up = False
        self._ending = False
        self._overflowed = False

    # --- what the hub calls --------------------------------------------------------------

    def offer(self, event: Event) -> bool:
        """Write ``event`` now when caught up and it fits, else keep it in order; False (and
        the connection aborted) when SSE_BUFFER_EVENTS events already wait."""
        if self._overflowed:
            return False
        if self._caught_up and self._write_now(event):
            return True
        if len(self._backlog) >= self._buffer:
            self._overflowed = True
            logger.info("a subscriber fell %d events behind; cutting it off", self._buffer)
            self.abort()
            self._wake()
            return False
        # Once an event waits, every later one waits behind it.
        self._caught_up = False
        self._backlog.append(event)
        self._wake()
        return True

    def end(self) -> None:
        """Finish once what waits is written (shutdown)."""
        self._ending = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- the stream's own task -----------------------------------------------------------

    async def open(self) -> None:
        """Send the headers and the reconnection delay."""
        await self.response.prepare(self.request)
        self._chunked = self.response.headers.get("Transfer-Encoding") == "chunked"
        await self._write(sse.retry(RETRY_MS))

    async def run(
        self,
        db: Database,
        followed: JobLog | None,
        last_id: int | None,
        open_logs: dict[int, JobLog],
        ping: float,
    ) -> None:
        """Announce, replay, then follow live until the end, a shutdown or a cut-off."""
        if followed is not None:
            # Read before the replay: once a log is seen finished, all its lines are committed.
            followed = await job_log(db, followed.id)
        later = await self._announce(db, followed, last_id, open_logs)
        if last_id is not None or followed is not None:
            await self._replay(db, last_id or 0, followed)
        for log in later:
            await self._send_log(log)
        if followed is not None and followed.status.finished:
            await self._write(sse.end(followed), events=1)
            return
        await self._follow(followed, ping)

    async def _announce(
        self,
        db: Database,
        followed: JobLog | None,
        last_id: int | None,
        open_logs: dict[int, JobLog],
    ) -> list[JobLog]:
        """Send the state of the logs the client should know; finished ones wait (returned)
        until their details are replayed, so a log's last line precedes its final status."""
        logs = dict(open_logs)
        if followed is not None:
            logs = {followed.id: followed}
        elif last_id is not None:
            logs |= {log.id: log for log in await logs_with_details_after(db, last_id)}
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
            page = await details_after(db, after, limit=REPLAY_PAGE, job_log_id=job_log_id)
            fresh = [d for d in page if d.id > self._last_detail]
            if fresh:
                # One write per page: a long replay is bounded by the network, not by writes.
                self._last_detail = fresh[-1].id
                data = sse.frames(Event(d.job_log_id, detail=d) for d in fresh)
                await self._write(data, events=len(fresh))
            if len(page) < REPLAY_PAGE:
                return
            after = page[-1].id

    async def _follow(self, followed: JobLog | None, ping: float) -> None:
        check = min(ping, self._check_every)
        next_ping = time.monotonic() + ping
        loop = asyncio.get_running_loop()
        while True:
            while self._backlog:
                event = self._backlog.popleft()
                await self._send(event)
                self._check_progress()
                log = event.job_log
                if followed is not None and log is not None and log.status.finished:
                    await self._write(sse.end(log), events=1)
                    return
            if self._overflowed:
                raise _Gone
            if self._ending:
                return
            # Caught up: let the hub write the next details itself, without waking this task.
            self._caught_up = True
            self._waiter = loop.create_future()
            try:
                async with asyncio.timeout(check):
                    await self._waiter
                continue
            except TimeoutError:
                pass
            finally:
                self._caught_up = False
                self._waiter = None
            if self.ends_at is not None and time.monotonic() >= self.ends_at:
                return
            self._check_progress()
            if time.monotonic() >= next_ping:
                next_ping = time.monotonic() + ping
                await self._write(sse.PING)

    def _write_now(self, event: Event) -> bool:
        """Write a detail straight to the transport (the hub's offer while this stream is
        caught up); False leaves the event to the stream's task: a log change, a closing
        connection, or a transport already holding DIRECT_LIMIT bytes the client has not taken.
        """
        detail = event.detail
        if detail is None:
            return False
        if detail.id <= self._last_detail:
            return True
        transport = self.request.transport
        data = sse.chunk(event) if self._chunked else sse.frame(event)
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() + len(data) > DIRECT_LIMIT
        ):
            return False
        transport.write(data)
        self._last_detail = detail.id
        self._progress.written += len(data)
        self._metrics.events_sent.inc()
        return True

    async def _send(self, event: Event) -> None:
        if event.detail is not None:
            if event.detail.id <= self._last_detail:
                return
            self._last_detail = event.detail.id
            await self._write(sse.frame(event), events=1)
        elif event.job_log is not None:
            await self._send_log(event.job_log, event)

    async def _send_log(self, log: JobLog, event: Event | None = None) -> None:
        """A log's state, unless the client has it already or has a newer one."""
        state = (log.updated_at, log.status)
        known = self._log_state.get(log.id)
        if known is not None and (known == state or known[0] > log.updated_at):
            return
        self._log_state[log.id] = state
        await self._write(sse.frame(event or Event(log.id, job_log=log)), events=1)

    def _check_progress(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self._check_every
        if self._progress.stalled_for() >= self._stall:
            logger.info("an event stream took nothing for %s s; cutting it off", self._stall)
            self._metrics.dropped.inc()
            raise _Gone

    async def _write(self, data: bytes, *, events: int = 0) -> None:
        """Write ``data`` (holding ``events`` events) unless the client stalls or is gone."""
        self._progress.written += len(data)
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
