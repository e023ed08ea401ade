"""``GET /api/events``: job logs live over Server-Sent Events, resumable without loss.

Event ids are detail ids. A client resumes with ``Last-Event-ID`` (or ``?last_event_id=``) and
gets every detail with a greater id, then the live stream: the stream subscribes first, replays
from the database, then drops live details it already sent — no gap, no duplicate.

Each stream is a subscriber of the hub (:class:`service.events.Subscriber`). While it is caught
up — nothing waiting, its task idle — the hub's offer writes a detail's pre-encoded chunk
(or several details read together, as one chunk) straight to the transport, without waking the
task; anything else waits in the stream's own bounded backlog, which its task writes with the
stall limit. A backlog over SSE_BUFFER_EVENTS cuts the stream off (the offer says no, the
connection is aborted).

An idle stream has no timer of its own: the hub's shared tick (:meth:`EventStream.tick`) finds
a client that went away (the stream is released at once), sends pings, checks that the client
still takes what it is sent and ends the stream with the caller's session.
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
from aiohttp.abc import AbstractStreamWriter

from service import appkeys
from service.events import Batch, Event, EventHub, TooManySubscribers
from service.http import sse
from service.http.auth import CALLER
from service.http.params import EventParams, parse
from service.metrics import Metrics
from service.store import JobLogStore
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
    """Every log's events, or one log's (``?job_log=<ref>``), resumable after an event id.

    Returns the stream's response unprepared: aiohttp prepares it once this handler and the
    middlewares have returned, and the stream runs from there (:class:`_LiveResponse`).
    """
    subscribed = await _subscribe(request)
    if isinstance(subscribed, web.StreamResponse):
        return subscribed
    return subscribed.response


class _LiveResponse(web.StreamResponse):
    """An event stream's response. aiohttp prepares a handler's response after the handler
    and every middleware have returned (as it does a ``FileResponse``, which sends its file
    from ``prepare``): the stream runs inside :meth:`prepare`, so each of thousands of idle
    streams holds no handler or middleware frames while it waits, only this one."""

    def __init__(self, stream: EventStream) -> None:
        super().__init__(headers=sse.HEADERS)
        self._stream: EventStream | None = stream

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        """Send the headers, then serve the stream to its end; it is always unsubscribed."""
        stream, self._stream = self._stream, None
        if stream is None:
            return await super().prepare(request)
        try:
            writer = await super().prepare(request)
            # Two steps, so the catch-up's frame is gone while the stream waits.
            if await stream.begin():
                await stream.live()
        finally:
            stream.release()
        return writer


# What a stream's catch-up needs: the database, the followed log, the client's last event id,
# the logs open when it subscribed.
_Start = tuple[JobLogStore, JobLog | None, int | None, dict[int, JobLog]]


async def _subscribe(request: web.Request) -> web.StreamResponse | EventStream:
    """The stream, subscribed to the hub, holding what its catch-up needs; or the answer
    (204) when the client has everything already."""
    app = request.app
    store = app[appkeys.STORE]
    settings = app[appkeys.SETTINGS]
    values = dict(request.query)
    if "Last-Event-ID" in request.headers:
        values["last_event_id"] = request.headers["Last-Event-ID"]
    params = parse(EventParams, values)
    followed = await store.job_log(params.job_log) if params.job_log else None
    last_id = params.last_event_id
    if await _has_everything(store, followed, last_id):
        return web.Response(status=204)
    stream = EventStream(
        request,
        job_log_id=followed.id if followed else None,
        buffer=settings.sse_buffer_events,
        stall=settings.sse_stall_seconds,
        ping=settings.sse_ping_seconds,
        metrics=app[appkeys.METRICS],
    )
    expires_at = request[CALLER].expires_at
    if expires_at is not None:
        # A browser session's stream ends with the session: its reconnect is then refused.
        stream.ends_at = time.monotonic() + (expires_at - app[appkeys.CLOCK]()).total_seconds()
    hub = app[appkeys.HUB]
    try:
        open_logs = hub.subscribe(stream)
    except TooManySubscribers:
        raise web.HTTPServiceUnavailable(
            reason="too many event streams are open", headers={"Retry-After": "5"}
        ) from None
    stream.start = (store, followed, last_id, open_logs)
    stream.hub = hub
    return stream


async def _has_everything(store: JobLogStore, followed: JobLog | None, last_id: int | None) -> bool:
    """True when the followed log has ended and the client holds its last detail."""
    if followed is None or not followed.status.finished or last_id is None:
        return False
    return last_id >= await store.last_detail_id(followed.id)


class _Progress:
    """Whether the client is taking what is sent: bytes written, less those still waiting in
    this process's buffer or unacknowledged in the kernel's send queue.

    A client that stops reading (or is suspended, like ``curl`` after ^Z) first lets its
    kernel fill its receive window; from then on nothing more is acknowledged and its data
    waits here. A stream whose data has waited without any progress for the stall limit is
    cut off — long before the writes themselves would block behind megabytes of buffers.
    """

    __slots__ = ("_fd", "_since", "_taken", "_transport", "written")

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

    def stalled_for(self, now: float) -> float:
        """Seconds the client has had data waiting without taking any of it."""
        waiting = self.waiting()
        taken = self.written - waiting
        if waiting <= 0 or taken > self._taken:
            self._taken, self._since = taken, now
            return 0.0
        return now - self._since


class EventStream:
    """One client's stream: a subscriber of the hub that remembers what it has sent, so
    nothing goes out twice or stale."""

    # Thousands are held at once: no __dict__ each.
    __slots__ = (
        "_backlog",
        "_buffer",
        "_caught_up",
        "_check_every",
        "_chunked",
        "_ending",
        "_gone",
        "_last_detail",
        "_log_state",
        "_metrics",
        "_next_check",
        "_next_ping",
        "_overflowed",
        "_ping",
        "_ping_due",
        "_progress",
        "_stall",
        "_waiter",
        "ends_at",
        "hub",
        "job_log_id",
        "request",
        "response",
        "start",
    )

    def __init__(
        self,
        request: web.Request,
        *,
        job_log_id: int | None,
        buffer: int,
        stall: float,
        ping: float,
        metrics: Metrics,
    ) -> None:
        self.request = request
        self.job_log_id = job_log_id
        self.response = _LiveResponse(self)
        # Set once subscribed: whom to leave at the end, what to catch up with first.
        self.hub: EventHub | None = None
        self.start: _Start | None = None
        # When the stream ends by itself (the caller's session expires), on the monotonic clock.
        self.ends_at: float | None = None
        self._metrics = metrics
        self._buffer = buffer
        self._stall = stall
        self._ping = ping
        self._progress = _Progress(request.transport)
        # How often to look whether the client still takes what it is sent.
        self._check_every = max(stall / 4, 0.05)
        now = time.monotonic()
        self._next_check = now + self._check_every
        self._next_ping = now + ping
        self._chunked = False
        self._last_detail = 0
        self._log_state: dict[int, tuple[datetime, Status]] | None = None
        # Made on the first event that has to wait: most streams never need one.
        self._backlog: deque[Event] | None = None
        self._waiter: asyncio.Future[None] | None = None
        # True while the task waits with nothing in the backlog: the hub may then write.
        self._caught_up = False
        self._ending = False
        self._overflowed = False
        # The client went away or stopped taking data (found by the tick): the task ends.
        self._gone = False
        self._ping_due = False

    # --- what the hub calls --------------------------------------------------------------

    def offer(self, event: Event) -> bool:
        """Write ``event`` now when caught up and it fits, else keep it in order; False (and
        the connection aborted) when SSE_BUFFER_EVENTS events already wait."""
        if self._overflowed:
            return False
        if self._caught_up and self._write_now(event):
            return True
        return self._keep(event)

    def offer_batch(self, batch: Batch) -> bool:
        """Several details: written as one chunk when caught up and they fit, else one by
        one as :meth:`offer`."""
        if self._overflowed:
            return False
        if self._caught_up and self._write_batch_now(batch):
            return True
        return all(self.offer(event) for event in batch.events)

    def tick(self, now: float) -> bool:
        """The hub's shared clock: False (and the task told to end) when the client has gone
        or stopped taking data; else ping, or end with the session, when due."""
        transport = self.request.transport
        if transport is None or transport.is_closing():
            self._gone = True
            self._wake()
            return False
        if now >= self._next_check:
            self._next_check = now + self._check_every
            if self._progress.stalled_for(now) >= self._stall:
                logger.info("an event stream took nothing for %s s; cutting it off", self._stall)
                self._metrics.dropped.inc()
                self._gone = True
                self.abort()
                self._wake()
                return False
        if self.ends_at is not None and now >= self.ends_at:
            self.end()
        elif now >= self._next_ping:
            self._next_ping = now + self._ping
            if not (self._caught_up and self._write_direct(sse.PING, sse.PING_CHUNK)):
                self._ping_due = True
                self._wake()
        return True

    def end(self) -> None:
        """Finish once what waits is written (shutdown)."""
        self._ending = True
        self._wake()

    def _keep(self, event: Event) -> bool:
        """Queue ``event`` for the task; False (cut off) when the backlog is full."""
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = deque()
        if len(backlog) >= self._buffer:
            self._overflowed = True
            logger.info("a subscriber fell %d events behind; cutting it off", self._buffer)
            self.abort()
            self._wake()
            return False
        # Once an event waits, every later one waits behind it.
        self._caught_up = False
        backlog.append(event)
        self._wake()
        return True

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- the stream's own task -----------------------------------------------------------

    async def begin(self) -> bool:
        """Once the headers are sent: the reconnection delay and the catch-up; True when
        the stream goes on :meth:`live`."""
        start, self.start = self.start, None
        assert start is not None
        try:
            self._chunked = self.response.headers.get("Transfer-Encoding") == "chunked"
            await self._write(sse.retry(RETRY_MS))
            return await self.catch_up(*start)
        except _Gone:
            self.abort()
        except Exception:
            # The headers are out: no error response can follow; the client reconnects.
            logger.exception("an event stream failed; closing it")
            self.abort()
        return False

    async def live(self) -> None:
        """Follow live until the end, a shutdown or a cut-off (one frame while it waits)."""
        try:
            loop = asyncio.get_running_loop()
            while True:
                backlog = self._backlog
                while backlog:
                    event = backlog.popleft()
                    await self._send(event)
                    self._check_progress()
                    log = event.job_log
                    if self.job_log_id is not None and log is not None and log.status.finished:
                        await self._write(sse.end(log), events=1)
                        return
                if self._overflowed or self._gone:
                    raise _Gone
                if self._ending:
                    return
                if self._ping_due:
                    self._ping_due = False
                    await self._write(sse.PING)
                    continue
                # Caught up: let the hub write the next details itself, without waking this task;
                # the hub's tick wakes it for a ping, a cut-off or the session's end.
                self._caught_up = True
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._caught_up = False
                    self._waiter = None
        except _Gone:
            self.abort()
        except Exception:
            logger.exception("an event stream failed; closing it")
            self.abort()

    def release(self) -> None:
        """Leave the hub (idempotent)."""
        if self.hub is not None:
            self.hub.unsubscribe(self)

    async def catch_up(
        self,
        store: JobLogStore,
        followed: JobLog | None,
        last_id: int | None,
        open_logs: dict[int, JobLog],
    ) -> bool:
        """Announce and replay; True when the stream goes on live (:meth:`follow`), False
        when it has ended (the followed log had finished)."""
        if followed is not None:
            # Read before the replay: once a log is seen finished, all its lines are committed.
            followed = await store.job_log(followed.id)
        later = await self._announce(store, followed, last_id, open_logs)
        if last_id is not None or followed is not None:
            await self._replay(store, last_id or 0, followed)
        for log in later:
            await self._send_log(log)
        if followed is not None and followed.status.finished:
            await self._write(sse.end(followed), events=1)
            return False
        return True

    async def _announce(
        self,
        store: JobLogStore,
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
            logs |= {log.id: log for log in await store.logs_with_details_after(last_id)}
        later = []
        for log in sorted(logs.values(), key=lambda item: item.id):
            if log.status.finished:
                later.append(log)
            else:
                await self._send_log(log)
        return later

    async def _replay(self, store: JobLogStore, after: int, followed: JobLog | None) -> None:
        job_log_id = followed.id if followed else None
        while True:
            page = await store.details_after(after, limit=REPLAY_PAGE, job_log_id=job_log_id)
            fresh = [d for d in page if d.id > self._last_detail]
            if fresh:
                # One write per page: a long replay is bounded by the network, not by writes.
                self._last_detail = fresh[-1].id
                data = sse.frames(Event(d.job_log_id, detail=d) for d in fresh)
                await self._write(data, events=len(fresh))
            if len(page) < REPLAY_PAGE:
                return
            after = page[-1].id

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
        if not self._write_direct(sse.frame(event), sse.chunk(event) if self._chunked else b""):
            return False
        self._last_detail = detail.id
        self._metrics.events_sent.inc()
        return True

    def _write_batch_now(self, batch: Batch) -> bool:
        """Several details as one write (the hub's offer while caught up); False leaves them
        to :meth:`offer`, one by one."""
        events = batch.events
        first = events[0].detail
        last = events[-1].detail
        # Replay may have sent some already: then one by one, skipping those.
        if first is None or last is None or first.id <= self._last_detail:
            return False
        frames = sse.batch_frames(batch)
        if not self._write_direct(frames, sse.batch_chunk(batch) if self._chunked else b""):
            return False
        self._last_detail = last.id
        self._metrics.events_sent.inc(len(events))
        return True

    def _write_direct(self, frame: bytes, chunk: bytes) -> bool:
        """Write ``frame`` (``chunk``, its HTTP/1.1 chunk, when the response is chunked) to
        the transport now, unless it is closing or already holds DIRECT_LIMIT bytes."""
        transport = self.request.transport
        data = chunk if self._chunked else frame
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() + len(data) > DIRECT_LIMIT
        ):
            return False
        transport.write(data)
        self._progress.written += len(data)
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
        if self._log_state is None:
            self._log_state = {}
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
        if self._progress.stalled_for(now) >= self._stall:
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
