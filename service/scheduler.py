"""The scheduler: a thin loop around one single-pass coroutine, :meth:`Scheduler.run_once`.

One run at a time: within the process a second start is refused while a run is in progress;
across processes (SQLite mode: an exclusive lock beside the database) or nodes (PostgreSQL
mode: the run lease) a :class:`service.runlock.RunGate` is held for the whole run. A tick that
finds a run in progress is skipped and counted. A run longer than the timeout, one still going
at shutdown, or one whose gate was lost (a lease that timed out) is cancelled and ends as error
with the reason.

With several nodes (``claim`` and ``takeover_seconds`` given), every node ticks on the same
grid, anchored at the Unix epoch, or the cron schedule's times, and a tick runs only on the
node that claims its slot; every ``takeover_seconds`` a node that sees a run left open while
the gate is free — its node was lost — takes the gate, ends that run as
``ERROR: Interrupted - node lost`` and starts a replacement at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from service.clock import Clock
from service.runlock import RunGate
from service.runlog import DetailListener
from service.schedule import Cron, paused
from service.store import JobLogStore, StoreError, until_written
from service.sync import SHUTTING_DOWN, RunControl, SyncJob
from service.tasks import cancel_and_wait
from service.wire import JobLog

logger = logging.getLogger(__name__)

RESTARTED = "ERROR: Interrupted - service restarted"
NODE_LOST = "ERROR: Interrupted - node lost"
LEASE_LOST = "Lease lost - the database stopped answering this node; another may run the sync"
# How long a stop waits for the cancelled run to write its last lines.
_STOP_GRACE_SECONDS = 3.0


class RunInProgress(Exception):
    """A run is already going, here or in another process."""

    def __init__(self, running: JobLog | None) -> None:
        super().__init__("a sync run is already in progress")
        self.running = running


class Scheduler:
    """Starts sync runs on a fixed cadence, on request, and one at a time."""

    def __init__(
        self,
        *,
        store: JobLogStore,
        job: Callable[[int | None], SyncJob],
        lock: RunGate,
        interval_seconds: float,
        on_start: bool,
        cron: Cron | None = None,
        timeout_seconds: float,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_detail: DetailListener | None = None,
        claim: Callable[[datetime], Awaitable[bool]] | None = None,
        takeover_seconds: float | None = None,
    ) -> None:
        self._store = store
        self._claim = claim
        self._takeover_seconds = takeover_seconds
        self._takeover: asyncio.Task[None] | None = None
        self._on_detail = on_detail
        self._sleep = sleep
        self._job = job
        self._lock = lock
        self._interval = interval_seconds
        self._cron = cron
        self._on_start = on_start
        self._timeout = timeout_seconds
        self._clock = clock
        self._stale_closed = False
        self._run: asyncio.Task[JobLog] | None = None
        # While a run's log is being created: what the requests meanwhile are told is running.
        self._starting: asyncio.Future[JobLog | None] | None = None
        self._control: RunControl | None = None
        self._job_task: asyncio.Task[JobLog] | None = None
        self._loop: asyncio.Task[None] | None = None
        self.running: JobLog | None = None
        self.next_run_at: datetime | None = None
        self.skipped_ticks = 0
        # Told of every run this scheduler ends: its final log and the rows it fetched.
        self.on_finished: list[Callable[[JobLog, int], None]] = []
        # Told of every run it closed because its process or node was gone.
        self.on_closed: list[Callable[[JobLog], None]] = []

    async def start(self) -> None:
        """Close runs a dead process left open (when no one holds the lock), then start the loop
        (and, with several nodes, the watch for runs whose node was lost)."""
        if self._takeover_seconds is None and await self._lock.acquire():
            try:
                await self._close_stale()
            finally:
                await self._lock.release()
        if self._cron is not None or self._interval > 0 or self._on_start:
            self._loop = asyncio.create_task(self._cadence(), name="sync-scheduler")
        if self._takeover_seconds is not None:
            self._takeover = asyncio.create_task(self._watch_lost_runs(), name="sync-takeover")

    async def stop(self) -> None:
        """Stop the loops and end a run in progress as error (``Interrupted - …``)."""
        await cancel_and_wait(self._takeover)
        await cancel_and_wait(self._loop)
        self._loop = self._takeover = None
        await self.cancel(SHUTTING_DOWN, wait=_STOP_GRACE_SECONDS)

    @property
    def lock_where(self) -> str:
        """What holds the run lock (a file's path, the database's lease)."""
        return self._lock.where

    @property
    def alive(self) -> bool:
        """False only when the loop died: cancelled from outside or ended by an exception."""
        loop = self._loop
        if loop is None or not loop.done():
            return True
        return not loop.cancelled() and loop.exception() is None

    async def run_once(self, *, force: bool = False) -> JobLog | None:
        """One pass: start a run and wait for its end; None (a skipped tick) if one is going."""
        try:
            await self.trigger(force=force)
        except RunInProgress:
            self.skipped_ticks += 1
            logger.info("sync tick skipped: a run is in progress")
            return None
        assert self._run is not None
        return await asyncio.shield(self._run)

    async def trigger(self, *, force: bool = False, takeover: bool = False) -> JobLog:
        """Start a run in the background and return its new (pending) log at once; with
        ``takeover``, only if a lost node's run was there to close (RunInProgress if not)."""
        if self._starting is not None:  # another request is creating the run's log right now
            raise RunInProgress(await asyncio.shield(self._starting))
        await self._let_an_ended_run_go()
        if self._run is not None:
            raise RunInProgress(self.running)
        starting = self._starting = asyncio.get_running_loop().create_future()
        try:
            if not await self._lock.acquire():
                raise RunInProgress(self.running)
        except BaseException:
            self._starting = None
            starting.set_result(None)
            raise
        try:
            log = await self._while_kept(self._open_run(takeover))
        except BaseException:
            await asyncio.shield(self._lock.release())
            starting.set_result(None)
            raise
        finally:
            self._starting = None
        starting.set_result(log)
        self.running = log
        control = RunControl()
        sync = self._job(self._lock.epoch)
        job = asyncio.create_task(sync.run(log, force=force, control=control))
        self._control, self._job_task = control, job
        self._run = asyncio.create_task(self._supervise(log, sync, job, control))
        return log

    async def _open_run(self, takeover: bool) -> JobLog:
        closed = await self._close_stale()
        if takeover and not closed:
            # The run seen open ended meanwhile (its node ended it, or another node took
            # over): there is nothing to replace.
            raise RunInProgress(None)
        return await self._store.create_job_log()

    async def _while_kept(self, work: Awaitable[JobLog]) -> JobLog:
        """``work``, with the lock kept meanwhile (pinged: closing a lost node's run may wait
        for that node's locks); RunInProgress, and ``work`` cancelled, if the lock is lost."""
        task = asyncio.ensure_future(work)
        kept = asyncio.ensure_future(self._lock.keep())
        try:
            await asyncio.wait({task, kept}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            kept.cancel()
            raise
        kept.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await kept
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise RunInProgress(None)
        return task.result()

    async def _let_an_ended_run_go(self) -> None:
        """A run whose end is committed is only tidying up: wait for it rather than refuse a
        new one (someone who saw the end must be able to start the next run at once)."""
        run, running = self._run, self.running
        if run is None or running is None:
            return
        if not (await self._store.job_log(running.id)).status.finished:
            return
        with contextlib.suppress(Exception):
            await asyncio.shield(run)

    async def cancel(self, reason: str, *, wait: float | None = None) -> bool:
        """End the run in progress as error with ``reason``; False when nothing runs here."""
        run, job, control = self._run, self._job_task, self._control
        if run is None or job is None or control is None:
            return False
        if control.reason is None and not job.done():
            control.reason = reason
            job.cancel()
        done, _ = await asyncio.wait({run}, timeout=wait)
        if not done:
            logger.error("the cancelled sync run did not finish within %s s", wait)
        return True

    async def _supervise(
        self, log: JobLog, sync: SyncJob, job: asyncio.Task[JobLog], control: RunControl
    ) -> JobLog:
        """The run's end under the timeout, told to ``on_finished``; the lock is released."""
        ended = await self._await_run(log, job, control)
        for listener in self.on_finished:
            try:
                listener(ended, sync.rows)
            except Exception:
                logger.exception("a listener of run %s's end failed", ended.name)
        return ended

    async def _await_run(
        self, log: JobLog, job: asyncio.Task[JobLog], control: RunControl
    ) -> JobLog:
        """Wait for the run under the timeout while the lock is kept; always release the lock
        and the run slot."""
        kept = asyncio.ensure_future(self._lock.keep())
        try:
            done, _ = await asyncio.wait(
                {job, kept}, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if job not in done and control.reason is None:
                lost = kept in done
                control.reason = (
                    LEASE_LOST if lost else f"Timed out after {self._timeout:,g} seconds"
                )
                job.cancel()
            try:
                return await job
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            # Cancelled before it could record why (even before it started): record it here;
            # nothing is written if the run did end on its own.
            reason = control.reason or SHUTTING_DOWN
            ended = await until_written(
                partial(self._store.fail_job_log, log.id, f"ERROR: {reason}"),
                what=f"the end of run {log.name}",
            )
            if ended is not None and self._on_detail is not None:
                self._on_detail(*ended)
            return await self._store.job_log(log.id)
        except asyncio.CancelledError:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
            raise
        finally:
            kept.cancel()
            self._run = self._job_task = self._control = self.running = None
            await asyncio.shield(self._lock.release())

    async def _close_stale(self) -> int:
        """With the lock held: close logs a killed process left open — once per process; with
        several nodes before every run (an open log with the lock free lost its node)."""
        if self._stale_closed and self._takeover_seconds is None:
            return 0
        several = self._takeover_seconds is not None
        closed = await self._store.close_unfinished(NODE_LOST if several else RESTARTED)
        for log in closed:
            for listener in self.on_closed:
                try:
                    listener(log)
                except Exception:
                    logger.exception("a listener of run %s's closing failed", log.name)
            logger.warning(
                "closed run %s left open by a %s",
                log.name,
                "lost node" if several else "stopped process",
            )
        if closed or not self._stale_closed:
            await self._job(self._lock.epoch).recover()
        self._stale_closed = True
        return len(closed)

    async def _watch_lost_runs(self) -> None:
        """Every ``takeover_seconds``: a run left open while no node holds the lock lost its
        node — take over: close it and start a replacement run."""
        assert self._takeover_seconds is not None
        while True:
            try:
                if (
                    self._run is None
                    and self._starting is None
                    and await self._store.open_job_logs()
                ):
                    log = await self.trigger(takeover=True)
                    logger.warning("took over the sync: replacement run %s", log.name)
            except RunInProgress:
                pass  # the run's node is alive and holds the lock
            except StoreError as exc:
                logger.warning("the watch for runs of lost nodes failed (%s); retrying", exc)
            except Exception:
                logger.exception("the watch for runs of lost nodes failed; retrying")
            await self._sleep(self._takeover_seconds)

    async def _cadence(self) -> None:
        """Run on start (if set), then every interval on a fixed grid; missed ticks count."""
        if self._cron is not None:
            await self._cron_cadence(self._cron)
            return
        started = self._clock()
        if self._interval <= 0:
            await self._tick(started)
            return
        interval = timedelta(seconds=self._interval)
        if self._claim is not None:
            # Several nodes: one grid for all, anchored at the epoch; on start, the slot now.
            slot = aligned_slot(started, interval)
            due = slot if self._on_start else slot + interval
        else:
            due = started if self._on_start else started + interval
        while True:
            self.next_run_at = due
            await self._sleep(max(0.0, (due - self._clock()).total_seconds()))
            await self._tick(due)
            due, missed = next_due(due, self._clock(), interval)
            self.skipped_ticks += missed

    async def _cron_cadence(self, cron: Cron) -> None:
        """Run at each time of the cron schedule (and on start, unless it is paused then);
        times that pass while a run goes on are skipped and counted."""
        now = self._clock()
        if self._on_start and not paused(cron, now):
            await self._tick(now.replace(second=0, microsecond=0))
        while True:
            due = cron.next_after(self._clock())
            if due is None:
                return
            self.next_run_at = due
            await self._sleep(max(0.0, (due - self._clock()).total_seconds()))
            await self._tick(due)
            self.skipped_ticks += cron.due_between(due, self._clock())

    async def _tick(self, slot: datetime) -> None:
        """The run due at ``slot`` — on the node that claims the slot, with several."""
        try:
            if self._claim is not None and not await self._claim(slot):
                return  # another node has it
            await self.run_once()
        except Exception:
            logger.exception("the scheduled sync run failed")


def aligned_slot(moment: datetime, interval: timedelta) -> datetime:
    """The start of the slot of ``interval`` holding ``moment``, on the grid from the epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // interval) * interval


def next_due(due: datetime, now: datetime, interval: timedelta) -> tuple[datetime, int]:
    """The next tick on the grid after ``now``, and how many ticks were missed on the way."""
    following = due + interval
    if following > now:
        return following, 0
    missed = (now - following) // interval + 1
    return following + missed * interval, missed
