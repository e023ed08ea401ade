"""Small indexed reads run on the event loop's thread, and never depend on it: when that
connection cannot answer (busy, or failing in any way), the reader's thread answers instead."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from service.store import (
    Database,
    JobLogQuery,
    add_detail,
    count_by_status,
    create_job_log,
    job_log,
    job_log_with_details_json,
    list_job_logs_json,
)


class _Busy:
    """A connection that answers every statement as a locked database does."""

    def __init__(self) -> None:
        self.asked = 0

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.asked += 1
        raise sqlite3.OperationalError("database is locked")

    def close(self) -> None:
        pass


async def _answers(db: Database, name: str) -> list[object]:
    return [
        await count_by_status(db),
        await job_log(db, name),
        await list_job_logs_json(db, JobLogQuery()),
        await job_log_with_details_json(db, name),
    ]


async def test_reads_answer_the_same_when_the_loop_reader_is_busy(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = await create_job_log(db)
    await add_detail(db, log.id, "Connecting to CASQL2")
    on_loop = await _answers(db, log.name)
    busy = _Busy()
    monkeypatch.setattr(db, "_on_loop", busy)
    assert await _answers(db, log.name) == on_loop
    assert busy.asked >= 4
    monkeypatch.setattr(db, "_on_loop", None)
    assert await _answers(db, log.name) == on_loop


async def test_the_loop_reader_sees_every_commit(db: Database) -> None:
    log = await create_job_log(db)
    assert (await count_by_status(db)).total == 1
    await add_detail(db, log.id, "one line")
    second = await create_job_log(db)
    assert (await count_by_status(db)).total == 2
    assert (await job_log(db, second.id)).id == second.id
