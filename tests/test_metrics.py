"""GET /metrics: the Prometheus text format, with values that move with real runs and streams."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from service import appkeys
from service.backend import open_database
from service.settings import Settings
from service.sources.demo import ROWS
from service.store import job_log_with_details, to_db
from service.wire import Status
from tests.support.api import ADMIN, Client, MakeClient, run_to_end
from tests.support.clock import FakeClock
from tests.support.event_streams import raw_stream
from tests.support.wait import wait_for_async

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SECRET = "hunter2-not-for-anyone"

NAMES = {
    "joblog_runs_total",
    "joblog_run_duration_seconds_bucket",
    "joblog_run_duration_seconds_count",
    "joblog_run_duration_seconds_sum",
    "joblog_last_run_rows",
    "joblog_last_success_timestamp_seconds",
    "joblog_skipped_ticks_total",
    "joblog_details_appended_total",
    "joblog_sse_subscribers",
    "joblog_sse_events_sent_total",
    "joblog_sse_subscribers_dropped_total",
    "joblog_purged_logs_total",
    "joblog_asyncio_tasks",
}


async def scrape(client: Client) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def eventually(client: Client, name: str, expected: float, **labels: str) -> Samples:
    """Scrape until ``name`` reaches ``expected`` (the hub publishes within a poll)."""
    key = (name, tuple(sorted(labels.items())))

    async def reached() -> Samples | None:
        samples = await scrape(client)
        return samples if samples.get(key) == expected else None

    return await wait_for_async(reached, f"{name}{labels} = {expected}", within=10)


async def test_every_metric_is_there_before_any_run(make_client: MakeClient) -> None:
    samples = await scrape(await make_client())
    assert {name for name, _ in samples} >= NAMES
    assert value(samples, "joblog_runs_total", status="success") == 0
    assert value(samples, "joblog_runs_total", status="error") == 0
    assert value(samples, "joblog_last_success_timestamp_seconds") == 0
    assert value(samples, "joblog_sse_subscribers") == 0


async def test_a_successful_run_moves_the_run_metrics(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()
    job_log_id = (await run_to_end(client))["id"]
    log = await job_log_with_details(client.app[appkeys.DATABASE], job_log_id)
    samples = await eventually(client, "joblog_runs_total", 1, status="success")
    assert value(samples, "joblog_runs_total", status="error") == 0
    assert value(samples, "joblog_run_duration_seconds_count") == 1
    assert value(samples, "joblog_last_run_rows") == ROWS
    assert value(samples, "joblog_last_success_timestamp_seconds") == log.updated_at.timestamp()
    samples = await eventually(client, "joblog_details_appended_total", len(log.details))
    assert len(log.details) > 5


async def test_a_failed_run_counts_as_error_and_hides_the_connection_string(
    make_client: MakeClient,
) -> None:
    odbc = f"Driver={{No Such Driver}};Server=db.plant.example;PWD={SECRET}"
    client = await make_client(source_odbc=SecretStr(odbc))
    job_log_id = (await run_to_end(client))["id"]
    assert (
        await job_log_with_details(client.app[appkeys.DATABASE], job_log_id)
    ).status is Status.error
    samples = await eventually(client, "joblog_runs_total", 1, status="error")
    assert value(samples, "joblog_runs_total", status="success") == 0
    assert value(samples, "joblog_last_run_rows") == 0
    assert value(samples, "joblog_last_success_timestamp_seconds") == 0
    text = await (await client.get("/metrics")).text()
    assert SECRET not in text
    assert "db.plant.example" not in text


async def test_a_run_written_by_another_process_counts_too(
    make_client: MakeClient, database_path: Path, clock: FakeClock
) -> None:
    client = await make_client()
    started, ended = clock(), clock.advance(42)
    with closing(sqlite3.connect(database_path)) as conn, conn:
        conn.execute(
            "INSERT INTO job_logs (name, status, created_at, updated_at) VALUES (?, 3, ?, ?)",
            ("20251215143022", to_db(started), to_db(ended)),
        )
    samples = await eventually(client, "joblog_runs_total", 1, status="success")
    assert value(samples, "joblog_run_duration_seconds_sum") == 42
    assert value(samples, "joblog_run_duration_seconds_bucket", le="60.0") == 1
    assert value(samples, "joblog_run_duration_seconds_bucket", le="30.0") == 0
    assert value(samples, "joblog_last_success_timestamp_seconds") == ended.timestamp()


async def test_a_tick_that_finds_a_run_going_is_counted(make_client: MakeClient) -> None:
    client = await make_client(demo_delay_seconds=0.3)
    assert (await client.post("/api/job_logs", headers=ADMIN)).status == 202
    assert await client.app[appkeys.SCHEDULER].run_once() is None
    samples = await scrape(client)
    assert value(samples, "joblog_skipped_ticks_total") == 1


async def test_streams_are_counted_and_a_subscriber_cut_off_is_dropped(
    make_client: MakeClient, database_path: Path, clock: FakeClock
) -> None:
    client = await make_client(sse_buffer_events=1000, sse_stall_seconds=0.5)
    reader = await client.get("/api/events")
    await eventually(client, "joblog_sse_subscribers", 1)
    job_log_id = (await run_to_end(client))["id"]
    log = await job_log_with_details(client.app[appkeys.DATABASE], job_log_id)

    # The run's lines (and its log's changes) reach the reader, one event at a time.
    async def all_sent() -> Samples | None:
        samples = await scrape(client)
        return (
            samples if value(samples, "joblog_sse_events_sent_total") >= len(log.details) else None
        )

    samples = await wait_for_async(all_sent, "every line sent", within=10)
    assert value(samples, "joblog_sse_events_sent_total") >= len(log.details)
    assert value(samples, "joblog_sse_subscribers_dropped_total") == 0
    reader.close()
    await eventually(client, "joblog_sse_subscribers", 0)
    # A client that stops reading: once its window is full, nothing more is taken: cut off.
    assert client.server.port is not None
    async with raw_stream(client.server.port):
        await eventually(client, "joblog_sse_subscribers", 1)
        stamp = to_db(clock())
        with closing(sqlite3.connect(database_path)) as conn, conn:
            conn.executemany(
                "INSERT INTO job_log_details (job_log_id, message, created_at, updated_at) "
                "VALUES (?, ?, ?, ?)",
                [(job_log_id, f"{i:04d} " + "x" * 4000, stamp, stamp) for i in range(100)],
            )
        await eventually(client, "joblog_sse_subscribers_dropped_total", 1)
        await eventually(client, "joblog_sse_subscribers", 0)


async def test_the_daily_purge_counts_what_it_deleted(
    make_client: MakeClient, database_path: Path, settings: Settings, clock: FakeClock
) -> None:
    old, recent = clock() - timedelta(days=40), clock() - timedelta(days=20)
    async with open_database(settings, clock):
        pass  # the schema, so rows can be written as another process would
    with closing(sqlite3.connect(database_path)) as conn, conn:
        for name, status, moment in [
            ("20251105143020", Status.success, old),
            ("20251105143021", Status.error, old),
            ("20251125143022", Status.success, recent),
        ]:
            conn.execute(
                "INSERT INTO job_logs (name, status, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (name, int(status), to_db(moment), to_db(moment)),
            )
    client = await make_client(retention_days=30)
    await eventually(client, "joblog_purged_logs_total", 2)
    with closing(sqlite3.connect(database_path)) as conn:
        assert conn.execute("SELECT name FROM job_logs").fetchall() == [("20251125143022",)]
