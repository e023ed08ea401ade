"""The service's Prometheus metrics, in a registry of the app's own (two apps never share one).

Counts of runs, details and purged logs move with what the event hub sees committed, so a run
written by ``run-once`` or by the Rails app counts too; the rows of the last run come from this
process's scheduler; gauges that describe live state are read when scraped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.wire import JobLog, Status

# Run durations, in seconds: a demo run takes a few, a big import minutes, the timeout 15.
RUN_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600)


class Metrics:
    """Every metric the service exposes, and the hooks that move them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter(
            "joblog_runs", "Runs that ended, by final status.", ["status"], registry=r
        )
        for status in (Status.success, Status.error):
            self.runs.labels(status=status.name)
        self.run_duration = Histogram(
            "joblog_run_duration_seconds",
            "How long ended runs took, from start to end.",
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.last_run_rows = Gauge(
            "joblog_last_run_rows",
            "Records the last run of this process fetched from the source (also when it failed).",
            registry=r,
        )
        self.last_success = Gauge(
            "joblog_last_success_timestamp_seconds",
            "When the last successful run ended (Unix time); 0 before the first.",
            registry=r,
        )
        self._last_success = 0.0
        self.details = Counter(
            "joblog_details_appended", "Detail lines committed to the job log.", registry=r
        )
        self.events_sent = Counter(
            "joblog_sse_events_sent", "Events written to event-stream subscribers.", registry=r
        )
        self.dropped = Counter(
            "joblog_sse_subscribers_dropped",
            "Event-stream subscribers cut off for falling behind or stalling.",
            registry=r,
        )
        self.purged = Counter(
            "joblog_purged_logs", "Job logs deleted by the retention purge.", registry=r
        )

    def watch(self, *, skipped_ticks: Callable[[], int], subscribers: Callable[[], int]) -> None:
        """Read the scheduler's skipped ticks and the open streams whenever scraped."""
        self.registry.register(_LiveState(skipped_ticks, subscribers))

    def run_ended(self, log: JobLog) -> None:
        """A run's end was committed (by any process)."""
        if not log.status.finished:
            return
        self.runs.labels(status=log.status.name).inc()
        self.run_duration.observe(max(0.0, (log.updated_at - log.created_at).total_seconds()))
        if log.status is Status.success:
            self.succeeded_at(log.updated_at)

    def succeeded_at(self, moment: datetime) -> None:
        """The last success ended at ``moment`` (kept if a later one is known)."""
        self._last_success = max(self._last_success, moment.timestamp())
        self.last_success.set(self._last_success)

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class _LiveState(Collector):
    """Values that live elsewhere, read at scrape time."""

    def __init__(self, skipped_ticks: Callable[[], int], subscribers: Callable[[], int]) -> None:
        self._skipped_ticks = skipped_ticks
        self._subscribers = subscribers

    def collect(self) -> Iterator[Metric]:
        """The skipped ticks counter and the subscribers gauge."""
        yield CounterMetricFamily(
            "joblog_skipped_ticks",
            "Scheduled ticks skipped because a run was still in progress.",
            value=self._skipped_ticks(),
        )
        yield GaugeMetricFamily(
            "joblog_sse_subscribers", "Event streams open now.", value=self._subscribers()
        )
        yield GaugeMetricFamily(
            "joblog_asyncio_tasks",
            "Tasks alive in the server's event loop (a leak shows as growth).",
            value=len(asyncio.all_tasks()),
        )
