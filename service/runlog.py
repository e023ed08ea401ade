"""One run's job log as its job writes it: every line in order, none lost, the end recorded.

A line is appended in a task of its own, shielded from the job's cancellation, and waits while
another process holds the database, or while its server cannot be reached (a PostgreSQL restart
delays a line, never loses it): it is worth more than the run's pace. When the disk is
full a line fails at once, so the job can stop; it is kept, and written before the run's ERROR
line once space returns. The end of a run — success or error — waits for the database
whatever the reason, so a run never stays "processing" while this process lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import TypeAlias

from service.store import JobLogStore, StoreError, until_written
from service.wire import JobLog, JobLogDetail, Status

logger = logging.getLogger(__name__)

# Told of each line a run appends, with its log (the service log, run-once's stdout).
DetailListener: TypeAlias = Callable[[JobLog, JobLogDetail], None]


class RunLog:
    """Writes the lines and the end of ``log`` to ``store``; tells ``on_detail`` of each line
    written."""

    def __init__(self, store: JobLogStore, log: JobLog, on_detail: DetailListener | None) -> None:
        self._store = store
        self.log = log
        self._on_detail = on_detail
        self._inflight: asyncio.Future[JobLogDetail] | None = None
        self._unwritten: list[str] = []

    async def start(self) -> None:
        """pending → processing."""
        await until_written(
            partial(self._store.set_status, self.log.id, Status.processing),
            what=f"the start of run {self.log.name}",
        )

    async def say(self, message: str, *, wait_when_full: bool = False) -> JobLogDetail:
        """Append ``message``; a cancel does not stop the write (it finishes in the background
        and :meth:`fail` waits for it, so the order holds)."""
        write = asyncio.ensure_future(self._append(message, wait_when_full))
        self._inflight = write
        detail = await asyncio.shield(write)
        self._inflight = None
        return detail

    async def succeed(self) -> JobLog:
        """processing → success."""
        return await until_written(
            partial(self._store.set_status, self.log.id, Status.success),
            what=f"the end of run {self.log.name}",
        )

    async def fail(self, reason: str) -> JobLog:
        """Write the lines still owed, then ``ERROR: reason``, and end the run as error — even
        while being cancelled. A run that had ended already stays as it was."""
        try:
            return await asyncio.shield(self._fail(reason))
        except (StoreError, sqlite3.Error, ValueError) as exc:
            # ValueError: the database was closed under the write (the process is stopping).
            logger.error("could not record the failure of run %s: %s", self.log.name, exc)
            return self.log

    async def _append(self, message: str, wait_when_full: bool) -> JobLogDetail:
        try:
            detail = await until_written(
                partial(self._store.add_detail, self.log.id, message),
                what=f"a line of run {self.log.name}",
                wait_when_full=wait_when_full,
            )
        except BaseException:
            self._unwritten.append(message)
            raise
        self._tell(detail)
        return detail

    async def _fail(self, reason: str) -> JobLog:
        if self._inflight is not None:
            with contextlib.suppress(Exception):  # a failed line is in _unwritten
                await self._inflight
            self._inflight = None
        owed, self._unwritten = self._unwritten, []
        for message in owed:
            self._tell(
                await until_written(
                    partial(self._store.add_detail, self.log.id, message),
                    what=f"a line of run {self.log.name}",
                )
            )
        ended = await until_written(
            partial(self._store.fail_job_log, self.log.id, f"ERROR: {reason}"),
            what=f"the end of run {self.log.name}",
        )
        if ended is None:  # it had ended already: a cancel that came too late changes nothing
            return await self._store.job_log(self.log.id)
        logger.warning("sync run %s failed: %s", self.log.name, reason)
        failed, last = ended
        self._tell(last)
        return failed

    def _tell(self, detail: JobLogDetail) -> None:
        if self._on_detail is not None:
            self._on_detail(self.log, detail)
