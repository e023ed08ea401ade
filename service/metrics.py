"""The service's Prometheus metrics, in a registry of the app's own (two apps never share one).

Counts of runs, details and purged logs move with what the event hub sees committed, so a run
written by ``run-once`` or by the Rails app counts too; the rows of the last run come from this
process's scheduler; gauges that describe live state are read when scraped.

With several nodes (PostgreSQL mode) every metric carries a ``node`` label, and a run is counted
by the node that ended it — its runner, or the node that closed it as lost — not by every node's
hub, so the sum over nodes counts each run once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.wire import JobLog, Status

_M = TypeVar("_M", Counter, Gauge, Histogram)

# Run durations, in seconds: a demo run takes a few, a big import minutes, the timeout 15.
RUN_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600)


class Metrics:
    """Every metric the service exposes, and the hooks that move them."""

    def __init__(self, node: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.node = node
        # With several nodes, the hub does not count runs (each node's hub sees every run).
        self.runs_from_hub = node is None
        self._fixed = {"node": node} if node is not None else {}
        names = list(self._fixed)
        self._runs = Counter(
            "joblog_runs", "Runs that ended, by final status.", [*names, "status"], registry=r
        )
        for status in (Status.success, Status.error):
            self._runs.labels(**self._fixed, status=status.name)
        self.run_duration = self._one(
            Histogram(
                "joblog_run_duration_seconds",
                "How long ended runs took, from start to end.",
                names,
                buckets=RUN_BUCKETS,
                registry=r,
            )
        )
        self.last_run_rows = self._one(
            Gauge(
                "joblog_last_run_rows",
                "Records the last run of this process fetched from the source (also when it "
                "failed).",
                names,
                registry=r,
            )
        )
        self.last_success = self._one(
            Gauge(
                "joblog_last_success_timestamp_seconds",
                "When the last successful run ended (Unix time); 0 before the first.",
                names,
                registry=r,
            )
        )
        self._last_success = 0.0
        self.details = self._one(
            Counter(
                "joblog_details_appended",
                "Detail lines committed to the job log.",
                names,
                registry=r,
            )
        )
        self.events_sent = self._one(
            Counter(
                "joblog_sse_events_sent",
                "Events written to event-stream subscribers.",
                names,
                registry=r,
            )
        )
        self.dropped = self._one(
            Counter(
                "joblog_sse_subscribers_dropped",
                "Event-stream subscribers cut off for falling behind or stalling.",
                names,
                registry=r,
            )
        )
        self.purged = self._one(
            Counter(
                "joblog_purged_logs",
                "Job logs deleted by the retention purge.",
                names,
                registry=r,
            )
        )

    def _one(self, metric: _M) -> _M:
        """The metric itself, or with several nodes its child for this node."""
        return metric.labels(**self._fixed) if self._fixed else metric

    def watch(self, *, skipped_ticks: Callable[[], int], subscribers: Callable[[], int]) -> None:
        """Read the scheduler's skipped ticks and the open streams whenever scraped."""
        self.registry.register(_LiveState(skipped_ticks, subscribers, self._fixed))

    def run_seen(self, log: JobLog) -> None:
        """The hub saw a run's end committed (by any process): counted with one node only."""
        if self.runs_from_hub:
            self.run_ended(log)
        elif log.status is Status.success:
            self.succeeded_at(log.updated_at)

    def run_ended(self, log: JobLog) -> None:
        """A run's end was committed: by any process (one node), by this node (several)."""
        if not log.status.finished:
            return
        self._runs.labels(**self._fixed, status=log.status.name).inc()
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

    def __init__(
        self,
        skipped_ticks: Callable[[], int],
        subscribers: Callable[[], int],
        fixed: dict[str, str],
    ) -> None:
        self._skipped_ticks = skipped_ticks
        self._subscribers = subscribers
        self._fixed = fixed

    def collect(self) -> Iterator[Metric]:
        """The skipped ticks counter and the subscribers gauge."""
        yield self._family(
            CounterMetricFamily,
            "joblog_skipped_ticks",
            "Scheduled ticks skipped because a run was still in progress.",
            self._skipped_ticks(),
        )
        yield self._family(
            GaugeMetricFamily,
            "joblog_sse_subscribers",
            "Event streams open now.",
            self._subscribers(),
        )
        yield self._family(
            GaugeMetricFamily,
            "joblog_asyncio_tasks",
            "Tasks alive in the server's event loop (a leak shows as growth).",
            len(asyncio.all_tasks()),
        )

    def _family(
        self,
        kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
        name: str,
        documentation: str,
        value: float,
    ) -> Metric:
        if not self._fixed:
            return kind(name, documentation, value=value)
        family = kind(name, documentation, labels=list(self._fixed))
        family.add_metric(list(self._fixed.values()), value)
        return family
