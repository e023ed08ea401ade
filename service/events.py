"""The event hub: follows committed job-log changes and fans them out to subscribers.

Data flows one way: the job commits to the store; the hub reads what is committed — by this
process or any other (run-once, the Rails app) — and hands each change, encoded once, to every
subscriber's bounded queue. It polls every EVENTS_POLL_SECONDS and is woken at once by this
process's own commits. A subscriber that falls further behind than its queue allows is cut off;
it catches up from the database when it reconnects with its last event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from service.http import payloads
from service.metrics import Metrics
from service.store import Database, JobLog, history
from service.store.models import EventDetail

logger = logging.getLogger(__name__)

# Details read per poll; a busier writer is followed over several polls in a row.
POLL_BATCH = 1000


@dataclass(frozen=True)
class Event:
    """One change: a detail appended, or a log created or changed."""

    job_log_id: int
    detail: EventDetail | None = None
    job_log: JobLog | None = None

    @cached_property
    def frame(self) -> bytes:
        """The event encoded for ``text/event-stream``, JSON on one line."""
        return encode(self)

    @cached_property
    def chunk(self) -> bytes:
        """The frame as one HTTP/1.1 chunk, for streams written straight to their transport."""
        frame = self.frame
        return b"%x\r\n%s\r\n" % (len(frame), frame)


def encode(event: Event) -> bytes:
    """``id:``/``event:``/``data:`` lines of an event; data is one line of JSON."""
    if event.detail is not None:
        data = payloads.event_detail_out(event.detail).model_dump_json()
        return f"id: {event.detail.id}\nevent: detail\ndata: {data}\n\n".encode()
    assert event.job_log is not None
    data = payloads.job_log_out(event.job_log).model_dump_json()
    return f"event: job_log\ndata: {data}\n\n".encode()


class TooManySubscribers(Exception):
    """SSE_MAX_CLIENTS streams are open already."""


@dataclass(eq=False)
class Subscriber:
    """One open stream: its queue, its filter, and whether it fell too far behind."""

    queue: asyncio.Queue[Event | None]
    job_log_id: int | None
    open_logs: dict[int, JobLog]
    overflowed: bool = False
    closed: bool = field(default=False)
    # Called when the hub cuts the subscriber off, to drop a connection blocked on a write.
    on_cut_off: Callable[[], None] | None = None
    # Set by a stream that is caught up (its queue empty, its task idle): the hub hands it each
    # event to write at once, without waking its task; False means "queue it instead".
    direct: Callable[[Event], bool] | None = None


class EventHub:
    """Follows the database and fans out its changes; start it, then subscribe."""

    def __init__(
        self,
        db: Database,
        *,
        poll_seconds: float,
        buffer: int,
        max_subscribers: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics or Metrics()
        self._poll_seconds = poll_seconds
        self._buffer = buffer
        self._max = max_subscribers
        self._subscribers: set[Subscriber] = set()
        self._open: dict[int, JobLog] = {}
        self._log_cursor = 0
        self._detail_cursor = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def subscriber_count(self) -> int:
        """Streams open now."""
        return len(self._subscribers)

    async def start(self) -> None:
        """Begin following from what is committed now (the hub starts live)."""
        self._log_cursor, self._detail_cursor = await history.high_water_marks(self._db)
        self._open = {log.id: log for log in await history.open_job_logs(self._db)}
        self._db.on_commit.append(self._wake.set)
        self._task = asyncio.create_task(self._follow(), name="event-hub")

    async def close(self) -> None:
        """Stop following and end every stream."""
        with contextlib.suppress(ValueError):
            self._db.on_commit.remove(self._wake.set)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.end_streams()

    def end_streams(self) -> None:
        """Ask every open stream to finish now (shutdown)."""
        for subscriber in list(self._subscribers):
            self._end(subscriber)

    def subscribe(self, job_log_id: int | None = None) -> Subscriber:
        """Register a stream; it receives every change published from now on.

        ``open_logs`` is the state of the unfinished logs as of the last published change, so
        every event queued afterwards is newer than it.
        """
        if len(self._subscribers) >= self._max:
            raise TooManySubscribers
        subscriber = Subscriber(
            queue=asyncio.Queue(self._buffer), job_log_id=job_log_id, open_logs=dict(self._open)
        )
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a stream (idempotent)."""
        self._subscribers.discard(subscriber)

    async def _follow(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel at a timeout.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                while await self._poll():
                    pass
            except Exception:
                logger.exception("following the job-log database failed; retrying")

    async def _poll(self) -> bool:
        """Publish one consistent batch of changes; True when more are waiting."""
        logs, details = await history.changes_since(
            self._db, self._log_cursor, self._detail_cursor, list(self._open), POLL_BATCH
        )
        if len(details) == POLL_BATCH:
            # A backlog: publish details only; log changes wait until it is read, so a log's
            # last detail always goes out before the change that announces its end.
            await self._publish_details(details)
            return True
        changed = [log for log in logs if self._is_change(log)]
        for log in changed:
            if not log.status.finished:
                self._publish(Event(log.id, job_log=log))
        await self._publish_details(details)
        for log in changed:
            if log.status.finished:
                self._publish(Event(log.id, job_log=log))
                self._metrics.run_ended(log)
        for log in logs:
            self._log_cursor = max(self._log_cursor, log.id)
            if log.status.finished:
                self._open.pop(log.id, None)
            else:
                self._open[log.id] = log
        return False

    async def _publish_details(self, details: list[EventDetail]) -> None:
        """Publish in slices of half a subscriber's buffer, letting every stream write what it
        holds in between: a burst (another process's transaction) overflows only a reader
        that is stuck, never one that keeps up."""
        step = max(1, self._buffer // 2)
        for start in range(0, len(details), step):
            if start:
                await asyncio.sleep(0)
            for detail in details[start : start + step]:
                self._publish(Event(detail.job_log_id, detail=detail))
        if details:
            self._detail_cursor = details[-1].id
            self._metrics.details.inc(len(details))

    def _is_change(self, log: JobLog) -> bool:
        known = self._open.get(log.id)
        if known is None:
            return log.id > self._log_cursor
        return (known.status, known.updated_at) != (log.status, log.updated_at)

    def _publish(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            if subscriber.job_log_id not in (None, event.job_log_id):
                continue
            if subscriber.direct is not None and self._write_direct(subscriber, event):
                continue
            # Once an event waits in the queue, every later one must wait behind it.
            subscriber.direct = None
            try:
                subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:
                subscriber.overflowed = True
                self._metrics.dropped.inc()
                logger.info("a subscriber fell %d events behind; cutting it off", self._buffer)
                self._end(subscriber)
                if subscriber.on_cut_off is not None:
                    subscriber.on_cut_off()

    @staticmethod
    def _write_direct(subscriber: Subscriber, event: Event) -> bool:
        assert subscriber.direct is not None
        try:
            return subscriber.direct(event)
        except Exception:
            logger.exception("writing an event to a stream failed; queueing it")
            return False

    def _end(self, subscriber: Subscriber) -> None:
        """Unregister and wake the stream so it finishes (its queue may be full)."""
        self._subscribers.discard(subscriber)
        subscriber.closed = True
        subscriber.direct = None
        with contextlib.suppress(asyncio.QueueFull):
            subscriber.queue.put_nowait(None)
