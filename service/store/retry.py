"""Writes that must not be lost: retried while the database is locked, its disk full or its
server gone.

SQLite gives up on a lock after its busy timeout, and on a full disk at once; PostgreSQL gives
up on a lock after its lock timeout, and a restart cuts every session. A job-log line or a
run's final status is worth waiting for: :func:`until_written` tries again with a growing
pause until the write goes through, logging once when it starts waiting and once when it is
through. Any other error is raised as it is; so is a cancel (the caller decides what it means).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import StoreError, is_busy, is_full, is_gone

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_PAUSE_SECONDS = 0.1
LONGEST_PAUSE_SECONDS = 5.0


async def until_written(
    write: Callable[[], Awaitable[T]],
    *,
    what: str,
    wait_when_full: bool = True,
    wait_when_gone: bool = True,
) -> T:
    """``await write()`` until it succeeds while the database is busy (and, with
    ``wait_when_full``, while its disk is full; with ``wait_when_gone``, while its server
    cannot be reached); other errors propagate."""
    pause = FIRST_PAUSE_SECONDS
    waiting = False
    while True:
        try:
            result = await write()
        except (sqlite3.Error, StoreError) as exc:
            if not (
                is_busy(exc)
                or (wait_when_full and is_full(exc))
                or (wait_when_gone and is_gone(exc))
            ):
                raise
            if not waiting:
                logger.warning("%s waits for the database: %s", what, exc)
                waiting = True
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE_SECONDS)
            continue
        if waiting:
            logger.info("%s went through", what)
        return result
