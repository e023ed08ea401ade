"""The purge policy: which finished logs go, in what batches, and when (daily and on demand).

Finished logs older than RETENTION_DAYS are archived (when ARCHIVE_DIR is set, see archive.py)
and deleted with their details (the store's purge methods, on SQLite or PostgreSQL). The purge
goes in small batches, each archived first (written, flushed and fsynced) and then deleted in
its own short transaction; it never touches a pending or processing log. An archive error stops
it before anything more is deleted: PurgeStopped carries the report of what went before. One
purge runs at a time (the purge gate); with several nodes, one node purges per day.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from service.clock import Clock
from service.retention.archive import ArchiveFailed, archive_batch, archive_path
from service.runlock import RunGate, RunLock
from service.store import DetailMark, JobLogStore, Purgeable
from service.tasks import cancel_and_wait

# The purge's lines keep the logger name the README gives (the package's, not this module's).
logger = logging.getLogger("service.retention")

DAY_SECONDS = 86_400.0
# Logs read per batch, and details deleted per transaction: 1,000 take about 2 ms (8 at most).
BATCH_LOGS = 100
DETAIL_BUDGET = 1000
# A pause after each delete, so a writer in another process (whose busy handler retries with
# growing sleeps) finds the database free instead of losing every race to the next batch.
PAUSE_SECONDS = 0.005


class PurgeLocked(Exception):
    """Another purge, in this process or another, holds the purge lock."""

    def __init__(self, where: str) -> None:
        super().__init__(f"another purge holds {where}")
        self.where = where


@dataclass
class PurgeReport:
    """What a purge deleted (or, dry, would delete), and how many logs went to each archive."""

    cutoff: datetime
    dry_run: bool
    archive_dir: Path | None
    logs: int = 0
    details: int = 0
    archived: dict[Path, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One sentence for people: ``purged 8,123 logs (73,107 details) created before …``."""
        verb = "would purge" if self.dry_run else "purged"
        moment = self.cutoff.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = (
            f"{verb} {_count(self.logs, 'log')} ({_count(self.details, 'detail')}) "
            f"created before {moment}"
        )
        if self.logs == 0:
            return text
        if self.archive_dir is None:
            return f"{text}; not archived (ARCHIVE_DIR is not set)"
        files = ", ".join(f"{path} ({_count(n, 'log')})" for path, n in self.archived.items())
        return f"{text}; {'would archive' if self.dry_run else 'archived'} to {files}"


class PurgeStopped(Exception):
    """An archive could not be written, so the purge stopped before deleting more.

    ``report`` tells what it had purged (and archived) before; raised from the ArchiveFailed.
    """

    def __init__(self, report: PurgeReport, cause: ArchiveFailed) -> None:
        super().__init__(f"purge stopped: {cause}; nothing more was deleted")
        self.report = report


def purge_lock(database_path: Path) -> RunLock:
    """The lock that keeps purges of the database at ``database_path`` one at a time."""
    return RunLock(database_path.with_name(database_path.name + ".purge-lock"))


async def purge(
    store: JobLogStore,
    *,
    gate: RunGate,
    cutoff: datetime,
    archive_dir: Path | None,
    dry_run: bool,
    on_purged: Callable[[int], None] | None = None,
) -> PurgeReport:
    """Archive (when ``archive_dir``) and delete the finished logs created before ``cutoff``.

    ``on_purged`` is called after each deleted batch with its number of logs (the calls add up
    to the report's total). A dry run counts and changes nothing. Raises PurgeLocked when
    another purge runs, PurgeStopped (with the report so far, raised from the ArchiveFailed) when
    an archive cannot be written.
    """
    report = PurgeReport(cutoff=cutoff, dry_run=dry_run, archive_dir=archive_dir)
    if dry_run:
        for month in await store.purgeable_by_month(cutoff):
            report.logs += month.logs
            report.details += month.details
            if archive_dir is not None:
                report.archived[archive_path(archive_dir, month.month)] = month.logs
        return report
    if not await gate.acquire():
        raise PurgeLocked(gate.where)
    try:
        await _purge_batches(store, report, on_purged)
    except ArchiveFailed as exc:
        raise PurgeStopped(report, exc) from exc
    finally:
        await asyncio.shield(gate.release())
    logger.info("%s", report.describe())
    return report


async def _purge_batches(
    store: JobLogStore, report: PurgeReport, on_purged: Callable[[int], None] | None
) -> None:
    after = 0
    while batch := await _next_batch(store, report.cutoff, after):
        after = batch[-1].log.id
        if report.archive_dir is None:
            expected = {item.log.id: item.mark for item in batch}
        else:
            archived = await archive_batch(store, report.archive_dir, batch)
            expected = archived.marks
            for path, count in archived.files.items():
                report.archived[path] = report.archived.get(path, 0) + count
        logs, details = await _delete(store, expected)
        report.logs += logs
        report.details += details
        logger.debug("purge batch: %d logs, %d details deleted", logs, details)
        if logs and on_purged is not None:
            on_purged(logs)
        await asyncio.sleep(PAUSE_SECONDS)


async def _next_batch(store: JobLogStore, cutoff: datetime, after: int) -> list[Purgeable]:
    """The next logs to purge: up to BATCH_LOGS, and DETAIL_BUDGET details unless one has more."""
    batch: list[Purgeable] = []
    details = 0
    for item in await store.purgeable_after(cutoff, after=after, limit=BATCH_LOGS):
        if batch and details + item.detail_count > DETAIL_BUDGET:
            break
        batch.append(item)
        details += item.detail_count
    return batch


async def _delete(store: JobLogStore, expected: dict[int, DetailMark]) -> tuple[int, int]:
    """Delete a batch; a log with more details than a transaction takes loses them in chunks
    first (a purge stopped half-way leaves it with its later details, archived again later)."""
    remaining = dict(expected)
    chunked = 0
    for job_log_id, (count, last) in expected.items():
        if count <= DETAIL_BUDGET:
            continue
        while True:
            deleted = await store.delete_details_through(
                job_log_id, through=last, limit=DETAIL_BUDGET
            )
            chunked += deleted
            await asyncio.sleep(PAUSE_SECONDS)
            if deleted < DETAIL_BUDGET:
                break
        remaining[job_log_id] = (0, 0)
    logs, details = await store.delete_logs(remaining)
    return logs, details + chunked


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


class Retention:
    """The daily purge: once at start, then every 24 hours; nothing when retention_days is 0.
    With several nodes (``claim_day``), a day's purge runs on the node that claims the day."""

    def __init__(
        self,
        store: JobLogStore,
        *,
        gate: RunGate,
        retention_days: int,
        archive_dir: Path | None,
        clock: Clock,
        on_purged: Callable[[int], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        claim_day: Callable[[date], Awaitable[bool]] | None = None,
    ) -> None:
        self._store = store
        self._gate = gate
        self._claim_day = claim_day
        self._days = retention_days
        self._archive_dir = archive_dir
        self._clock = clock
        self._on_purged = on_purged
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the daily loop (its first purge runs at once)."""
        if self._days > 0 and self._task is None:
            self._task = asyncio.create_task(self._daily(), name="retention-purge")

    async def stop(self) -> None:
        """Stop the loop; a batch being deleted is rolled back, its archive lines may stay."""
        await cancel_and_wait(self._task)
        self._task = None

    async def run_once(self) -> PurgeReport | None:
        """One purge at ``clock() - retention_days``; None when skipped or failed (logged)."""
        if self._days <= 0:
            return None
        try:
            now = self._clock()
            if self._claim_day is not None and not await self._claim_day(
                now.astimezone(UTC).date()
            ):
                logger.info("purge skipped: another node purges today")
                return None
            return await purge(
                self._store,
                gate=self._gate,
                cutoff=now - timedelta(days=self._days),
                archive_dir=self._archive_dir,
                dry_run=False,
                on_purged=self._on_purged,
            )
        except PurgeLocked as exc:
            logger.info("purge skipped: %s", exc)
        except PurgeStopped as exc:
            logger.error("%s", exc)
        except Exception:
            logger.exception("the daily purge failed; it runs again in 24 hours")
        return None

    async def _daily(self) -> None:
        while True:
            await self.run_once()
            await self._sleep(DAY_SECONDS)
