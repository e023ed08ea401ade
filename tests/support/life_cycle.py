"""The steps the job-log life cycle allows from a new (pending) run to each status."""

from __future__ import annotations

from service.wire import Status

STEPS_TO: dict[Status, list[Status]] = {
    Status.pending: [],
    Status.processing: [Status.processing],
    Status.error: [Status.error],
    Status.success: [Status.processing, Status.success],
}
