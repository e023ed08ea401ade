"""The event hub on its own: a real database, subscribers that only record what they are
offered — no sockets, no HTTP."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path

import pytest

from service.events import POLL_BATCH, Batch, Event, EventHub, TooManySubscribers
from service.metrics import Metrics
from service.store import (
    ChangeWatch,
    Database,
    SqliteStore,
    add_detail,
    create_job_log,
    set_status,
    to_db,
)
from service.wire import JobLog, Status
from tests.support.clock import FakeClock
from tests.support.wait import wait_for_async


class Recorder:
    """A subscriber that takes every event offered, until told to refuse or to fail."""

    def __init__(self, job_log_id: int | None = None) -> None:
        self.job_log_id = job_log_id
        self.events: list[Event] = []
        self.refuse = False
        self.fail = False
        self.ended = False
        self.gone = False
        self.batches: list[Batch] = []
        self.ticks = 0

    def offer(self, event: Event) -> bool:
        if self.fail:
            raise RuntimeError("this subscriber breaks")
        if self.refuse:
            return False
        self.events.append(event)
        return True

    def offer_batch(self, batch: Batch) -> bool:
        self.batches.append(batch)
        return all(self.offer(event) for event in batch.events)

    def tick(self, now: float) -> bool:
        self.ticks += 1
        return not self.gone

    def end(self) -> None:
        self.ended = True

    def seen(self) -> list[tuple[str, int, str]]:
        """Each event as (kind, id, message or status)."""
        return [
            ("detail", e.detail.id, e.detail.message)
            if e.detail is not None
            else ("job_log", e.job_log_id, e.job_log.status.name if e.job_log else "")
            for e in self.events
        ]


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture(params=[0.0, 0.01], ids=["poll", "change-check"])
async def hub(
    db: Database, metrics: Metrics, request: pytest.FixtureRequest
) -> AsyncIterator[EventHub]:
    """A hub that polls (the change check off), or reads only when the check finds a commit."""
    check: float = request.param
    watch = ChangeWatch(db.path) if check else None
    events = EventHub(
        SqliteStore(db),
        on_commit=db.on_commit,
        poll_seconds=0.05 if not check else 1.0,
        buffer=10,
        max_subscribers=3,
        metrics=metrics,
        check_seconds=check,
        watch=watch,
    )
    await events.start()
    yield events
    await events.close()
    if watch is not None:
        watch.close()


async def settle(condition: Callable[[], bool], what: str) -> None:
    """Return once ``condition()`` holds; fail naming ``what`` after 5 s."""
    await wait_for_async(condition, what, within=5, every=0.01)


def subscribed(hub: EventHub, count: int) -> list[Recorder]:
    """``count`` recorders of every log, subscribed."""
    recorders = [Recorder() for _ in range(count)]
    for recorder in recorders:
        hub.subscribe(recorder)
    return recorders


def write_elsewhere(
    database: Path, job_log_id: int, lines: list[str], stamp: str, *, end: Status | None = None
) -> None:
    """Lines (and the log's end) in one transaction of another connection, as another process
    writes them: no commit hook of this process wakes the hub."""
    with closing(sqlite3.connect(database)) as other:
        other.executemany(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (?, ?, ?, ?)",
            [(job_log_id, line, stamp, stamp) for line in lines],
        )
        if end is not None:
            other.execute("UPDATE job_logs SET status = ? WHERE id = ?", (int(end), job_log_id))
        other.commit()


async def run(db: Database, clock: FakeClock, *lines: str) -> JobLog:
    """A run from pending to success, with ``lines``."""
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    for line in lines:
        await add_detail(db, log.id, line)
    clock.advance(1)
    return await set_status(db, log.id, Status.success)


async def test_every_change_is_offered_in_commit_order_last_line_before_the_end(
    hub: EventHub, db: Database, clock: FakeClock
) -> None:
    recorder = Recorder()
    hub.subscribe(recorder)
    log = await run(db, clock, "one", "two", "three")
    await settle(
        lambda: any(e.job_log and e.job_log.status.finished for e in recorder.events), "the end"
    )
    seen = recorder.seen()
    details = [s for s in seen if s[0] == "detail"]
    assert [d[2] for d in details] == ["one", "two", "three"]
    assert [d[1] for d in details] == sorted(d[1] for d in details)
    assert seen[-1] == ("job_log", log.id, "success")
    assert seen.index(details[-1]) < len(seen) - 1


async def test_a_follower_of_one_log_is_offered_that_log_only(
    hub: EventHub, db: Database, clock: FakeClock
) -> None:
    first = await create_job_log(db)
    follower, everyone = Recorder(job_log_id=first.id), Recorder()
    hub.subscribe(follower)
    hub.subscribe(everyone)
    await add_detail(db, first.id, "mine")
    await run(db, clock, "not mine")
    await settle(lambda: sum(e.detail is not None for e in everyone.events) == 2, "both lines")
    assert {e.job_log_id for e in follower.events} == {first.id}
    assert [e.detail.message for e in follower.events if e.detail] == ["mine"]


async def test_every_subscriber_gets_the_same_event_object(
    hub: EventHub, db: Database, clock: FakeClock
) -> None:
    """A change is encoded once for all: the subscribers share one event (and its bytes)."""
    first, second = Recorder(), Recorder()
    hub.subscribe(first)
    hub.subscribe(second)
    await run(db, clock, "shared")
    await settle(lambda: len(second.events) == len(first.events) > 0, "both offered")
    await settle(lambda: len(first.events) >= 3, "the whole run")
    assert all(a is b for a, b in zip(first.events, second.events, strict=True))


async def test_a_subscriber_that_refuses_is_forgotten_and_counted_as_dropped(
    hub: EventHub, db: Database, clock: FakeClock, metrics: Metrics
) -> None:
    slow, fine = Recorder(), Recorder()
    slow.refuse = True
    hub.subscribe(slow)
    hub.subscribe(fine)
    await run(db, clock, "a", "b")
    await settle(lambda: hub.subscriber_count == 1, "the refusing subscriber forgotten")
    await settle(lambda: len(fine.events) >= 4, "the other got everything")
    assert slow.events == []
    assert metrics.registry.get_sample_value("joblog_sse_subscribers_dropped_total") == 1
    slow.refuse = False
    await run(db, clock, "c")
    await settle(lambda: len(fine.events) >= 8, "more")
    assert slow.events == [], "a forgotten subscriber is offered nothing more"


async def test_a_subscriber_that_fails_does_not_stop_the_others(
    hub: EventHub, db: Database, clock: FakeClock
) -> None:
    broken, fine = Recorder(), Recorder()
    broken.fail = True
    hub.subscribe(broken)
    hub.subscribe(fine)
    await run(db, clock, "still delivered")
    await settle(lambda: len(fine.events) >= 3, "delivered to the healthy subscriber")
    assert hub.subscriber_count == 1


async def test_no_more_subscribers_than_allowed(hub: EventHub) -> None:
    recorders = subscribed(hub, 3)
    with pytest.raises(TooManySubscribers):
        hub.subscribe(Recorder())
    hub.unsubscribe(recorders[0])
    hub.unsubscribe(recorders[0])  # idempotent
    hub.subscribe(Recorder())
    assert hub.subscriber_count == 3


async def test_subscribing_returns_the_logs_still_open(
    hub: EventHub, db: Database, clock: FakeClock
) -> None:
    [witness] = subscribed(hub, 1)
    running = await create_job_log(db)
    running = await set_status(db, running.id, Status.processing)
    await run(db, clock, "done")
    await settle(
        lambda: any(e.job_log and e.job_log.status is Status.success for e in witness.events),
        "the finished run published",
    )
    open_logs = hub.subscribe(Recorder())
    assert list(open_logs) == [running.id]
    assert open_logs[running.id].status is Status.processing


async def test_closing_the_hub_ends_every_subscriber(hub: EventHub) -> None:
    recorders = subscribed(hub, 2)
    await hub.close()
    assert all(recorder.ended for recorder in recorders)
    assert hub.subscriber_count == 0


async def test_another_process_s_writes_are_found_by_the_poll(
    hub: EventHub, db: Database, database_path: Path
) -> None:
    [recorder] = subscribed(hub, 1)
    log = await create_job_log(db)
    write_elsewhere(database_path, log.id, ["from elsewhere"], to_db(db.clock()))
    await settle(lambda: any(e.detail for e in recorder.events), "the other writer's line")
    assert [e.detail.message for e in recorder.events if e.detail] == ["from elsewhere"]


async def test_a_burst_bigger_than_a_poll_arrives_whole_before_the_log_ends(
    hub: EventHub, db: Database, database_path: Path
) -> None:
    recorder = Recorder()
    hub.subscribe(recorder)
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    count = POLL_BATCH * 2 + 7
    lines = [f"line {n}" for n in range(count)]
    write_elsewhere(database_path, log.id, lines, to_db(db.clock()), end=Status.success)
    await settle(
        lambda: any(e.job_log and e.job_log.status is Status.success for e in recorder.events),
        "the end",
    )
    assert [e.detail.message for e in recorder.events if e.detail] == lines
    assert recorder.events[-1].job_log is not None


async def test_details_read_together_are_offered_as_one_batch_per_log(
    hub: EventHub, db: Database, database_path: Path
) -> None:
    everything = Recorder()
    hub.subscribe(everything)
    first, second = await create_job_log(db), await create_job_log(db)
    one = Recorder(job_log_id=second.id)
    hub.subscribe(one)
    stamp = to_db(db.clock())
    with closing(sqlite3.connect(database_path)) as other:
        other.executemany(
            "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
            "VALUES (?, ?, ?, ?)",
            [
                (log_id, f"line {n}", stamp, stamp)
                for n, log_id in enumerate([first.id, second.id] * 2)
            ],
        )
        other.commit()
    await settle(lambda: len([e for e in everything.events if e.detail]) == 4, "four lines")
    await settle(lambda: len([e for e in one.events if e.detail]) == 2, "the second log's lines")
    # Within half a subscriber's buffer (5 here), a read is one batch.
    assert [len(batch.events) for batch in everything.batches] == [4]
    assert [len(batch.events) for batch in one.batches] == [2]
    assert {e.job_log_id for e in one.events} == {second.id}
    lines = [e for e in everything.events if e.detail and e.job_log_id == second.id]
    assert [e for e in one.events if e.detail] == lines


async def test_the_shared_tick_forgets_a_subscriber_that_is_gone(hub: EventHub) -> None:
    staying, leaving = subscribed(hub, 2)
    await settle(lambda: staying.ticks > 0 and leaving.ticks > 0, "a tick")
    leaving.gone = True
    await settle(lambda: hub.subscriber_count == 1, "the gone subscriber forgotten")
    ticks = leaving.ticks
    await settle(lambda: staying.ticks > ticks + 1, "more ticks")
    assert leaving.ticks == ticks, "a forgotten subscriber gets no more ticks"
    assert not leaving.ended


async def test_with_the_change_check_an_idle_hub_reads_only_after_a_commit(
    db: Database, database_path: Path, metrics: Metrics
) -> None:
    watch = ChangeWatch(db.path)
    hub = EventHub(
        SqliteStore(db),
        on_commit=db.on_commit,
        poll_seconds=0.05,
        buffer=10,
        max_subscribers=3,
        metrics=metrics,
        check_seconds=0.01,
        watch=watch,
    )
    await hub.start()
    try:
        [recorder] = subscribed(hub, 1)
        log = await create_job_log(db)
        await settle(lambda: any(e.job_log for e in recorder.events), "the new log")
        reads = hub.reads
        await asyncio.sleep(0.3)  # thirty change checks
        assert hub.reads == reads, "no read without a commit"
        write_elsewhere(database_path, log.id, ["from elsewhere"], to_db(db.clock()))
        await settle(lambda: any(e.detail for e in recorder.events), "the other writer's line")
        assert hub.reads == reads + 1
    finally:
        await hub.close()
        watch.close()


def test_the_change_watch_sees_every_other_connection_s_commit(tmp_path: Path) -> None:
    database_path = tmp_path / "watched.sqlite3"
    with closing(sqlite3.connect(database_path)) as other:
        other.execute("PRAGMA journal_mode=WAL")
        other.execute("CREATE TABLE t (x)")
        other.commit()
        watch = ChangeWatch(database_path)
        try:
            assert watch.changed(), "the first look"
            assert not watch.changed()
            other.execute("INSERT INTO t VALUES (1)")
            assert not watch.changed(), "not committed yet"
            other.commit()
            assert watch.changed()
            assert not watch.changed()
            other.execute("SELECT count(*) FROM t").fetchall()
            assert not watch.changed(), "a read is no change"
        finally:
            watch.close()
