"""Searching runs by text: the same answer from the index and from a scan, an exact total up
to a cap, and pages that neither skip nor repeat a run whichever way they are found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiosqlite
import pytest

from service.store import (
    Database,
    JobLogQuery,
    add_detail,
    create_job_log,
    list_job_logs,
    set_status,
)
from service.wire import JobLogPage, Status
from tests.support.clock import FakeClock


async def _runs(db: Database, clock: FakeClock, lines: list[list[str]]) -> list[int]:
    ids = []
    for messages in lines:
        log = await create_job_log(db)
        for message in messages:
            await add_detail(db, log.id, message)
        ids.append(log.id)
        clock.advance(300)
    return ids


def _shown(page: JobLogPage) -> tuple[list[int], int, bool]:
    return [log.id for log in page.items], page.total, page.total_is_lower_bound


QUERIES = [
    JobLogQuery(q="deadlock victim"),
    JobLogQuery(q="LOGIN failed"),
    JobLogQuery(q="casql2", per_page=2, page=2),
    JobLogQuery(q="casql2", status=Status.error),
    JobLogQuery(q="casql2", since=datetime.now(UTC) - timedelta(days=3650)),
    JobLogQuery(q="0% d"),
    JobLogQuery(q="e_n"),
    JobLogQuery(q="a%b"),
    JobLogQuery(q="back\\slash"),
    JobLogQuery(q="ÄBC"),
    JobLogQuery(q="äbc"),
    JobLogQuery(q="eR"),
]


async def test_a_scan_answers_as_the_index_does_while_it_is_not_ready(
    db: Database, clock: FakeClock
) -> None:
    ids = await _runs(
        db,
        clock,
        [
            ["Connecting to CASQL2", "ERROR: Deadlock victim (process 52)"],
            ["Connecting to CASQL2", "Login failed for user 'zsd'"],
            ["Connecting to casql2", "100% done_now", "a back\\slash"],
            ["Connecting to CASQL2", "Ünïcode ÄBC", "Login FAILED again"],
        ],
    )
    await set_status(db, ids[1], Status.error)
    indexed = [_shown(await list_job_logs(db, query)) for query in QUERIES]
    db.search_ready = False
    scanned = [_shown(await list_job_logs(db, query)) for query in QUERIES]
    assert scanned == indexed
    assert indexed[1] == ([ids[3], ids[1]], 2, False)
    assert indexed[2] == ([ids[1], ids[0]], 4, False)
    assert indexed[3] == ([ids[1]], 1, False)
    assert indexed[5][0] == indexed[6][0] == indexed[8][0] == [ids[2]]
    assert indexed[7] == ([], 0, False)
    assert (indexed[9][1], indexed[10][1], indexed[11][1]) == (1, 0, 2)


@pytest.mark.parametrize("strategy", ["probing", "index", "scan"])
async def test_past_the_cap_the_total_is_a_lower_bound_and_pages_stay_exact(
    db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    # Twelve runs; "needle" in the even ones (six), "login" in every third (four).
    ids = await _runs(
        db,
        clock,
        [
            ["Job started", *(["a needle here"] if n % 2 == 0 else []), "done"]
            + (["Login failed"] if n % 3 == 0 else [])
            for n in range(12)
        ],
    )
    monkeypatch.setattr("service.store.search.SEARCH_TOTAL_CAP", 3)

    async def probing(conn: aiosqlite.Connection, density: float, end: int) -> bool:
        return strategy == "probing"

    monkeypatch.setattr("service.store.search._probing_is_cheaper", probing)
    db.search_ready = strategy != "scan"
    needles = [ids[n] for n in reversed(range(0, 12, 2))]
    pages = [
        await list_job_logs(db, JobLogQuery(q="NEEDLE", per_page=2, page=n)) for n in (1, 2, 3, 4)
    ]
    assert [log.id for page in pages for log in page.items] == needles
    assert all((page.total, page.total_is_lower_bound) == (3, True) for page in pages)
    # At the cap or under it, the total is exact.
    everything = await list_job_logs(db, JobLogQuery(per_page=100))
    since = {log.id: log.created_at for log in everything.items}[ids[6]]
    three = await list_job_logs(db, JobLogQuery(q="needle", since=since))
    assert _shown(three) == ([ids[10], ids[8], ids[6]], 3, False)
    logins = await list_job_logs(db, JobLogQuery(q="login", per_page=1, page=3))
    assert _shown(logins)[1:] == (3, True)
    assert [log.id for log in logins.items] == [ids[3]]
    late = datetime.now(UTC) - timedelta(days=3650)
    few = await list_job_logs(db, JobLogQuery(q="needle", until=late))
    assert _shown(few) == ([], 0, False)
