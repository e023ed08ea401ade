"""The ``sync_late`` notice: once when the sync turns late, again only after it has recovered.

A run that fails is noticed by its own notice; a sync that stops running — stuck behind a lock,
a scheduler that died, a service that was down for hours — produces no run to notice. This
watch looks at the freshness every few seconds (and at once at start, so a service back after
hours says so) and posts ``sync_late`` when the state turns late (see service/schedule.py:
paused is not late). One notice per episode in a process: the episode ends when the state is
no longer late; a restart during one posts it once more.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from service.clock import Clock
from service.notify import Notifier
from service.schedule import Plan, freshness
from service.store import JobLogStore
from service.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


class LateWatch:
    """Checks the freshness every ``every_seconds`` and tells ``notifier`` when it turns late."""

    def __init__(
        self,
        store: JobLogStore,
        notifier: Notifier,
        plan: Plan,
        late_after: timedelta | None,
        clock: Clock,
        *,
        every_seconds: float = 15.0,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._plan = plan
        self._late_after = late_after
        self._clock = clock
        self._every = every_seconds
        self._noticed = False
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> bool:
        """Look once; True when this look posted a notice."""
        last = await self._store.last_success_at()
        state = freshness(last, self._clock(), self._plan, self._late_after)
        if state.state != "late" or last is None or state.late_since is None:
            self._noticed = False
            return False
        if self._noticed:
            return False
        latest = await self._store.latest_job_log()
        if latest is None:
            return False
        self._noticed = True
        logger.warning("the sync is late: no success since %s", last.isoformat())
        self._notifier.sync_late(latest, last, state.late_since)
        return True

    def start(self) -> None:
        """Check now and every ``every_seconds`` in a task of its own."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="late-watch")

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # a locked or failing database: look again next time
                logger.exception("checking whether the sync is late failed")
            await asyncio.sleep(self._every)

    async def close(self) -> None:
        """Stop looking."""
        await cancel_and_wait(self._task)
        self._task = None
