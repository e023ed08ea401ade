"""Every node's commits wake this node's readers: LISTEN/NOTIFY, with a poll as a safety net.

A writing transaction sends :func:`notify` — ids only, a few bytes: PostgreSQL delivers it at
the commit, in commit order, and never for a transaction that rolled back. :class:`Wakeups`
LISTENs on a direct session of its own (never through a transaction-pooling PgBouncer, which
drops LISTEN) and calls ``on_wake`` for each notification. A notification is only a hint:
the reader then reads from its own cursor, so one missed delays, never loses:

* after every (re)connect the session LISTENs first and only then wakes the reader, so a
  commit is either seen by that read or notified afterwards;
* notifications sent while the session was down are gone: the wake after reconnecting reads
  them;
* a wake every ``poll_seconds`` without notifications covers anything else.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from service.tasks import cancel_and_wait

from .lease import direct_session, one_line

logger = logging.getLogger(__name__)

CHANNEL = "joblog"  # as LISTEN in Wakeups._listen says it
# Waits between reconnects: doubling from the first to the last.
_RETRY_FIRST = 0.25
_RETRY_LAST = 5.0

Connection = psycopg.AsyncConnection[Any]


@dataclass(frozen=True)
class Wake:
    """Why the reader should read now: ``listening`` (just (re)connected), ``notified`` (a
    commit; the ids it wrote, when it said), or ``poll`` (the safety net)."""

    reason: Literal["listening", "notified", "poll"]
    log_id: int | None = None
    detail_id: int | None = None


async def notify(
    conn: Connection, *, log_id: int | None = None, detail_id: int | None = None
) -> None:
    """Inside a writing transaction: wake every node's readers at its commit. One per
    transaction (NOTIFY takes a global lock at commit), the highest ids written."""
    payload = {"log": log_id, "detail": detail_id}
    await conn.execute(
        "SELECT pg_notify(%s, %s)",
        (CHANNEL, json.dumps({k: v for k, v in payload.items() if v is not None})),
    )


class Wakeups:
    """Wakes ``on_wake`` on this node for commits on any node, until :meth:`close`."""

    def __init__(
        self,
        url: str,
        on_wake: Callable[[Wake], None],
        *,
        poll_seconds: float = 1.0,
        connect_seconds: float = 5.0,
    ) -> None:
        self._url = url
        self._on_wake = on_wake
        self._poll = poll_seconds
        self._connect_seconds = connect_seconds
        self._task: asyncio.Task[None] | None = None
        self.listening = False
        # How many times the session connected and LISTENed.
        self.connects = 0

    def start(self) -> None:
        """Listen in a task of its own."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pg-wakeups")

    async def close(self) -> None:
        """Stop listening."""
        await cancel_and_wait(self._task)
        self._task = None
        self.listening = False

    async def _run(self) -> None:
        retry = _RETRY_FIRST
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                self.listening = False
                logger.warning(
                    "listening for other nodes' commits failed (again in %.2f s): %s",
                    retry,
                    one_line(exc),
                )
            else:
                retry = _RETRY_FIRST
                continue
            # Meanwhile the readers poll on their own.
            self._on_wake(Wake("poll"))
            await asyncio.sleep(retry)
            retry = min(_RETRY_LAST, retry * 2)

    async def _listen(self) -> None:
        conn = await direct_session(self._url, "joblog wake-ups", self._connect_seconds)
        try:
            await conn.execute("LISTEN joblog")
            if self.connects:
                logger.info("listening for other nodes' commits again")
            self.listening = True
            self.connects += 1
            # LISTEN first, then read: nothing committed from here on goes unnoticed.
            self._on_wake(Wake("listening"))
            while True:
                woke = False
                async for note in conn.notifies(timeout=self._poll):
                    woke = True
                    self._on_wake(_parse(note.payload))
                if not woke:
                    self._on_wake(Wake("poll"))
        finally:
            self.listening = False
            await conn.close()


def _parse(payload: str) -> Wake:
    """A notification's payload; one this service did not send still wakes the readers."""
    try:
        found = json.loads(payload)
    except ValueError:
        return Wake("notified")
    if not isinstance(found, dict):
        return Wake("notified")
    log_id, detail_id = found.get("log"), found.get("detail")
    return Wake(
        "notified",
        log_id if isinstance(log_id, int) else None,
        detail_id if isinstance(detail_id, int) else None,
    )
