"""The event hub: follows committed job-log changes and fans them out to subscribers.

Data flows one way: the job commits to the store; the hub reads what is committed — by this
process or any other (run-once, the Rails app) — and offers each change to every subscriber
(:meth:`Subscriber.offer`; details read together as one :class:`Batch`). This process's own
commits wake it at once; other processes' are noticed by a cheap change check every
EVENTS_CHECK_SECONDS (``PRAGMA data_version``, :class:`service.store.ChangeWatch`), and the
hub reads only when it says something changed — or, with the check off, every
EVENTS_POLL_SECONDS. A subscriber that cannot take more says so and is forgotten; it catches
up from the database when it reconnects with its last event id. How an event is written out
is the subscriber's business (:mod:`service.http.sse`).

The hub also keeps one clock for all its subscribers (:meth:`Subscriber.tick`, every
TICK_SECONDS): a stream whose client went away is forgotten within a tick, and pings, stall
checks and session ends need no timer or wake-up per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from service.metrics import Metrics
from service.store import ChangeWatch, JobLogStore, StoreError
from service.tasks import cancel_and_wait
from service.wire import EventDetail, JobLog

logger = logging.getLogger(__name__)

# Details read per poll; a busier writer is followed over several polls in a row.
POLL_BATCH = 1000
# The subscribers' shared clock: how soon a stream whose client went away is forgotten, and
# the granularity of pings, stall checks and session ends.
TICK_SECONDS = 0.25


@dataclass(frozen=True, eq=False)
class Event:
    """One change: a detail appended, or a log created or changed.

    ``encoded`` keeps what a consumer made of the event once, for every subscriber to share
    (the event stream's frame), so a change is encoded once however many receive it.
    """

    job_log_id: int
    detail: EventDetail | None = None
    job_log: JobLog | None = None
    encoded: dict[str, bytes] = field(default_factory=dict, repr=False)


class Batch:
    """Details read together, offered to a subscriber at once so that one caught up writes
    them in one go; ``encoded`` keeps what a consumer made of them, shared like
    :attr:`Event.encoded`."""

    __slots__ = ("encoded", "events")

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.encoded: dict[str, bytes] = {}

    def only(self, job_log_id: int) -> Batch:
        """The events of one log (the same event objects)."""
        return Batch([event for event in self.events if event.job_log_id == job_log_id])


class TooManySubscribers(Exception):
    """SSE_MAX_CLIENTS streams are open already."""


class Subscriber(Protocol):
    """What the hub needs of a subscriber: a filter, and a way to be offered each change."""

    @property
    def job_log_id(self) -> int | None:
        """The one log it follows, or None for every log."""

    def offer(self, event: Event) -> bool:
        """Take ``event`` (send it now or keep it, in order); False when the subscriber cannot
        take more and is gone: the hub forgets it."""

    def offer_batch(self, batch: Batch) -> bool:
        """Take several details at once, in order; False as for :meth:`offer`."""

    def tick(self, now: float) -> bool:
        """The hub's shared clock (``time.monotonic()``), every TICK_SECONDS; False when the
        subscriber is gone: the hub forgets it."""

    def end(self) -> None:
        """Finish after what was offered (the hub stops: shutdown)."""


class EventHub:
    """Follows the database and fans out its changes; start it, then subscribe."""

    def __init__(
        self,
        store: JobLogStore,
        *,
        on_commit: list[Callable[[], None]],
        poll_seconds: float,
        buffer: int,
        max_subscribers: int,
        metrics: Metrics | None = None,
        check_seconds: float = 0.0,
        watch: ChangeWatch | None = None,
    ) -> None:
        self._store = store
        self._on_commit = on_commit
        self._metrics = metrics or Metrics()
        self._poll_seconds = poll_seconds
        self._check_seconds = check_seconds
        self._watch = watch if check_seconds > 0 else None
        self._ticker: asyncio.TimerHandle | None = None
        self._checker: asyncio.TimerHandle | None = None
        # Reads of the database so far (a change check that finds nothing is not one).
        self.reads = 0
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
        if self._watch is not None:
            self._watch.changed()
        self._log_cursor, self._detail_cursor = await self._store.high_water_marks()
        self._open = {log.id: log for log in await self._store.open_job_logs()}
        self._on_commit.append(self._wake.set)
        self._task = asyncio.create_task(self._follow(), name="event-hub")
        loop = asyncio.get_running_loop()
        self._ticker = loop.call_later(TICK_SECONDS, self._tick)
        if self._watch is not None:
            self._checker = loop.call_later(self._check_seconds, self._check)

    async def close(self) -> None:
        """Stop following and end every stream."""
        with contextlib.suppress(ValueError):
            self._on_commit.remove(self._wake.set)
        await cancel_and_wait(self._task)
        self._task = None
        for handle in (self._ticker, self._checker):
            if handle is not None:
                handle.cancel()
        self._ticker = self._checker = None
        self.end_streams()

    def end_streams(self) -> None:
        """Ask every open stream to finish now (shutdown)."""
        for subscriber in list(self._subscribers):
            self._end(subscriber)

    def subscribe(self, subscriber: Subscriber) -> dict[int, JobLog]:
        """Offer ``subscriber`` every change published from now on; the state of the
        unfinished logs as of the last published change (every later event is newer)."""
        if len(self._subscribers) >= self._max:
            raise TooManySubscribers
        self._subscribers.add(subscriber)
        return dict(self._open)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a subscriber (idempotent)."""
        self._subscribers.discard(subscriber)

    async def _follow(self) -> None:
        while True:
            await self._next_change()
            try:
                while await self._poll():
                    pass
            except StoreError as exc:  # the database restarting, busy: said in one line
                logger.warning("following the job-log database failed (%s); retrying", exc)
            except Exception:
                logger.exception("following the job-log database failed; retrying")

    async def _next_change(self) -> None:
        """Return when there may be something new to read: a commit of this process, another
        process's commit seen by the change check, or (check off) the next poll."""
        if self._watch is None:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel at a timeout.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._wake.wait()
            self._wake.clear()
            return
        await self._wake.wait()
        self._wake.clear()
        # The read below sees every commit so far: the check need not report them again.
        self._changed()

    def _check(self) -> None:
        """Every EVENTS_CHECK_SECONDS: wake the follower when another commit landed."""
        self._checker = asyncio.get_running_loop().call_later(self._check_seconds, self._check)
        if self._changed():
            self._wake.set()

    def _changed(self) -> bool:
        if self._watch is None:
            return True
        try:
            return self._watch.changed()
        except Exception:
            logger.exception("the change check failed; reading")
            return True

    def _tick(self) -> None:
        """Every TICK_SECONDS: give each subscriber the time; forget those that are gone."""
        self._ticker = asyncio.get_running_loop().call_later(TICK_SECONDS, self._tick)
        now = time.monotonic()
        for subscriber in list(self._subscribers):
            try:
                alive = subscriber.tick(now)
            except Exception:
                logger.exception("a subscriber's tick failed; dropping it")
                alive = False
            if not alive:
                self._subscribers.discard(subscriber)

    async def _poll(self) -> bool:
        """Publish one consistent batch of changes; True when more are waiting."""
        self.reads += 1
        logs, details = await self._store.changes_since(
            self._log_cursor, self._detail_cursor, list(self._open), POLL_BATCH
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
                self._metrics.run_seen(log)
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
            events = [
                Event(detail.job_log_id, detail=detail) for detail in details[start : start + step]
            ]
            if len(events) == 1:
                self._publish(events[0])
            else:
                self._publish_batch(Batch(events))
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
            try:
                taken = subscriber.offer(event)
            except Exception:
                logger.exception("offering an event to a subscriber failed; dropping it")
                taken = False
            if not taken:
                self._drop(subscriber)

    def _publish_batch(self, batch: Batch) -> None:
        """Offer several details at once; a follower of one log gets that log's part, made
        once for every follower of the log."""
        parts: dict[int, Batch] = {}
        for subscriber in list(self._subscribers):
            wanted = subscriber.job_log_id
            part = batch
            if wanted is not None:
                part = parts.get(wanted) or parts.setdefault(wanted, batch.only(wanted))
                if not part.events:
                    continue
            try:
                taken = subscriber.offer_batch(part)
            except Exception:
                logger.exception("offering events to a subscriber failed; dropping it")
                taken = False
            if not taken:
                self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        self._metrics.dropped.inc()

    def _end(self, subscriber: Subscriber) -> None:
        """Unregister a subscriber and ask it to finish."""
        self._subscribers.discard(subscriber)
        subscriber.end()
