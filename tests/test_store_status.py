"""The life cycle: pending → processing → success | error, and pending → error; nothing else."""

from __future__ import annotations

import itertools

import pytest

from service.store import (
    Database,
    InvalidTransition,
    NotFound,
    create_job_log,
    fail_job_log,
    job_log_with_details,
    set_status,
)
from service.wire import Status
from tests.support.clock import FakeClock

ALLOWED = {
    (Status.pending, Status.processing),
    (Status.pending, Status.error),
    (Status.processing, Status.success),
    (Status.processing, Status.error),
}
# How to bring a fresh (pending) log to each status by allowed steps.
PATH_TO = {
    Status.pending: [],
    Status.processing: [Status.processing],
    Status.error: [Status.error],
    Status.success: [Status.processing, Status.success],
}


@pytest.mark.parametrize(
    ("current", "target"),
    list(itertools.product(Status, Status)),
    ids=lambda s: s.name,
)
async def test_every_transition(db: Database, current: Status, target: Status) -> None:
    log = await create_job_log(db)
    for step in PATH_TO[current]:
        await set_status(db, log.id, step)
    if (current, target) in ALLOWED:
        changed = await set_status(db, log.id, target)
        assert changed.status is target
    else:
        with pytest.raises(InvalidTransition, match=f"from {current.name} to {target.name}"):
            await set_status(db, log.id, target)
        assert (await job_log_with_details(db, log.id)).status is current


async def test_updated_at_moves_with_each_change(db: Database, clock: FakeClock) -> None:
    log = await create_job_log(db)
    started = clock.advance(1.5)
    processing = await set_status(db, log.id, Status.processing)
    assert processing.updated_at == started
    assert processing.created_at == log.created_at
    ended = clock.advance(20)
    done = await set_status(db, log.id, Status.success)
    assert done.updated_at == ended
    assert (await job_log_with_details(db, log.id)).updated_at == ended


async def test_refused_change_leaves_updated_at(db: Database, clock: FakeClock) -> None:
    log = await create_job_log(db)
    clock.advance(5)
    with pytest.raises(InvalidTransition):
        await set_status(db, log.id, Status.success)
    assert (await job_log_with_details(db, log.id)).updated_at == log.updated_at


async def test_unknown_log(db: Database) -> None:
    with pytest.raises(NotFound):
        await set_status(db, 4242, Status.processing)


async def test_failing_a_finished_log_writes_nothing(db: Database) -> None:
    log = await create_job_log(db)
    await set_status(db, log.id, Status.processing)
    await set_status(db, log.id, Status.success)
    assert await fail_job_log(db, log.id, "ERROR: Cancelled by request") is None
    after = await job_log_with_details(db, log.id)
    assert after.status is Status.success
    assert after.details == []


async def test_failing_an_open_log_ends_it_with_its_reason(db: Database) -> None:
    log = await create_job_log(db)
    failed = await fail_job_log(db, log.id, "ERROR: Timed out after 900 seconds")
    assert failed is not None
    ended, detail = failed
    assert ended.status is Status.error
    assert detail.message == "ERROR: Timed out after 900 seconds"
    assert (await job_log_with_details(db, log.id)).details == [detail]
