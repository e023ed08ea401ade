"""Failure notices over a webhook: a POST when a run fails, when one succeeds after failures,
and when the sync turns late (``sync_late``, see :mod:`service.late_watch`).

The job never waits for a notice: :meth:`Notifier.run_ended` schedules its delivery and returns.
Whether a success is a recovery is read from the database, so it holds across restarts.

The webhook URL is a secret (it usually carries a token in its path or query). It is never
logged: aiohttp quotes the URL in the text of its exceptions, so a failed delivery is described
from the exception's type and error number instead of its text.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from service.store import JobLogStore
from service.wire import JobLog, JobLogDetail, Status, iso_z

logger = logging.getLogger(__name__)

DETAILS_SENT = 20
# The most a receiver's Retry-After may make a delivery wait before its next attempt.
MAX_RETRY_AFTER_SECONDS = 60.0
# How much of the failure message the one-line text quotes; the details carry all of it.
_TEXT_MESSAGE_CHARS = 500
_USER_AGENT = "joblog-service notifier"
# An OpenSSL reason code such as CERTIFICATE_VERIFY_FAILED; anything else may name the host.
_TLS_REASON = re.compile(r"[A-Z0-9_]{1,64}")

Event = Literal["run_failed", "run_recovered", "sync_late"]


class Notice(BaseModel):
    """What the webhook receives."""

    model_config = ConfigDict(frozen=True)

    event: Event
    text: str = Field(description="One sentence in Slack's message format, with the run's link.")
    job_log: JobLog = Field(description="The run; for sync_late, the latest run.")
    details: list[JobLogDetail] = Field(description="The run's last 20 lines, oldest first.")
    url: str | None = Field(description="The run's page under PUBLIC_URL; null when unset.")


async def notice_for(store: JobLogStore, log: JobLog, public_url: str | None) -> Notice | None:
    """The notice a finished run calls for: ``run_failed`` for an error, ``run_recovered``
    for a success whose previous finished run failed; None otherwise."""
    event: Event
    if log.status is Status.error:
        event = "run_failed"
    elif (
        log.status is Status.success
        and await store.previous_finished_status(log.id) is Status.error
    ):
        event = "run_recovered"
    else:
        return None
    details = await store.last_details(log.id, DETAILS_SENT)
    url = f"{public_url.rstrip('/')}/runs/{log.name}" if public_url else None
    return Notice(
        event=event,
        text=notice_text(event, log, details, url),
        job_log=log,
        details=details,
        url=url,
    )


def notice_text(event: Event, log: JobLog, details: list[JobLogDetail], url: str | None) -> str:
    """``Sync run 20261128143022 failed: ERROR: Fetch failed - … <url>``, escaped for Slack."""
    if event == "run_recovered":
        sentence = f"Sync run {log.name} succeeded again after failures"
    else:
        errors = [d.message for d in details if d.message.startswith("ERROR")]
        last = errors[-1] if errors else details[-1].message if details else None
        sentence = f"Sync run {log.name} failed"
        if last is not None:
            sentence += f": {_quoted(last)}"
    # Slack (and CommonMark) read <…> as a link; the message itself must not open one.
    sentence = sentence.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"{sentence} <{url}>" if url else sentence


def _quoted(message: str) -> str:
    """A message on one line, cut to the length a one-line notice quotes."""
    flat = " ".join(message.split())
    return flat if len(flat) <= _TEXT_MESSAGE_CHARS else flat[: _TEXT_MESSAGE_CHARS - 1] + "…"


@dataclass(frozen=True)
class _Failure:
    """Why one attempt failed, in words that quote nothing of the URL."""

    reason: str
    retry: bool
    retry_after: float | None = None


@dataclass
class _Pending:
    name: str
    event: Event | None


class Notifier:
    """Posts run notices to one webhook in background tasks it owns.

    Open with :meth:`start`, end with :meth:`close` (before the database closes).
    """

    def __init__(
        self,
        store: JobLogStore,
        webhook_url: SecretStr,
        public_url: str | None,
        *,
        timeout_seconds: float = 5.0,
        attempts: int = 4,
        backoff_seconds: float = 1.0,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._store = store
        self._url = webhook_url
        self._public_url = public_url
        self._timeout = timeout_seconds
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._session: aiohttp.ClientSession | None = None
        self._pending: dict[asyncio.Task[None], _Pending] = {}

    async def start(self) -> None:
        """Open the HTTP session the deliveries share."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": _USER_AGENT},
            )

    async def close(self) -> None:
        """Cancel the deliveries still under way, logging each notice lost, and close."""
        session, self._session = self._session, None
        pending = dict(self._pending)
        for task in pending:
            task.cancel()
        try:
            if pending:
                await asyncio.wait(pending)
        finally:
            if session is not None:
                await session.close()
        for task, notice in pending.items():
            if not task.cancelled():
                continue
            if notice.event is None:
                logger.warning(
                    "webhook notice for run %s not checked: the notifier closed first", notice.name
                )
            else:
                logger.warning(
                    "webhook notice for run %s not delivered: the notifier closed first",
                    notice.name,
                )

    def run_ended(self, log: JobLog) -> None:
        """Schedule the notice a finished run calls for, if any, and return at once."""
        if not log.status.finished:
            return
        if self._session is None:
            logger.warning(
                "webhook notice for run %s dropped: the notifier is not running", log.name
            )
            return
        task = asyncio.create_task(self._notify(log), name=f"notify-{log.name}")
        self._pending[task] = _Pending(
            log.name, "run_failed" if log.status is Status.error else None
        )
        task.add_done_callback(self._forget)

    def sync_late(self, log: JobLog, last_success: datetime, late_since: datetime) -> None:
        """Schedule a ``sync_late`` notice (``log``: the latest run) and return at once."""
        if self._session is None:
            logger.warning("webhook notice sync_late dropped: the notifier is not running")
            return
        task = asyncio.create_task(
            self._late(log, last_success, late_since), name="notify-sync-late"
        )
        self._pending[task] = _Pending(log.name, "sync_late")
        task.add_done_callback(self._forget)

    async def _late(self, log: JobLog, last_success: datetime, late_since: datetime) -> None:
        try:
            details = await self._store.last_details(log.id, DETAILS_SENT)
        except Exception:
            logger.exception("webhook notice sync_late could not be prepared")
            return
        url = f"{self._public_url.rstrip('/')}/runs/{log.name}" if self._public_url else None
        errors = [d.message for d in details if d.message.startswith("ERROR")]
        sentence = (
            f"Sync is late: no success since {iso_z(last_success)} "
            f"(late since {iso_z(late_since)}); latest run {log.name}, {log.status.name}"
        )
        if errors:
            sentence += f": {_quoted(errors[-1])}"
        sentence = sentence.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        notice = Notice(
            event="sync_late",
            text=f"{sentence} <{url}>" if url else sentence,
            job_log=log,
            details=details,
            url=url,
        )
        await self._deliver(log.name, notice)

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound, not a cancel
        """Wait up to ``timeout`` seconds for the deliveries under way (``run-once`` exits
        after this; :meth:`close` then reports what is still pending)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._pending.pop(task, None)

    async def _notify(self, log: JobLog) -> None:
        try:
            notice = await notice_for(self._store, log, self._public_url)
        except Exception:
            logger.exception("webhook notice for run %s could not be prepared", log.name)
            return
        if notice is None:
            return
        task = asyncio.current_task()
        pending = self._pending.get(task) if task is not None else None
        if pending is not None:
            pending.event = notice.event
        await self._deliver(log.name, notice)

    async def _deliver(self, name: str, notice: Notice) -> None:
        """Up to ``attempts`` POSTs with exponential backoff; logs the outcome."""
        body = notice.model_dump_json().encode()
        for attempt in range(1, self._attempts + 1):
            try:
                failure = await self._post(body)
            except Exception as exc:
                # Unforeseen: its text may quote the URL, so only its type is told.
                failure = _Failure(type(exc).__name__, retry=False)
            if failure is None:
                logger.info(
                    "webhook notice %s for run %s delivered (attempt %d)",
                    notice.event,
                    name,
                    attempt,
                )
                return
            logger.info(
                "webhook notice for run %s: attempt %d of %d failed: %s",
                name,
                attempt,
                self._attempts,
                failure.reason,
            )
            if not failure.retry or attempt == self._attempts:
                logger.warning(
                    "webhook notice for run %s not delivered after %d attempt%s: %s",
                    name,
                    attempt,
                    "" if attempt == 1 else "s",
                    failure.reason,
                )
                return
            delay = self._backoff * 2 ** (attempt - 1)
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            await asyncio.sleep(delay)

    async def _post(self, body: bytes) -> _Failure | None:
        """One attempt: None when the receiver answered 2xx."""
        session = self._session
        if session is None:
            return _Failure("the notifier is closed", retry=False)
        try:
            async with session.post(
                self._url.get_secret_value(),
                data=body,
                headers={"Content-Type": "application/json"},
                # A redirect could carry the notice (and the token) to another host.
                allow_redirects=False,
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    return None
                if status >= 500 or status == 429:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    return _Failure(f"HTTP {status}", retry=True, retry_after=retry_after)
                if 300 <= status < 400:
                    return _Failure(f"HTTP {status} (redirects are not followed)", retry=False)
                return _Failure(f"HTTP {status}", retry=False)
        except TimeoutError:
            return _Failure(f"timed out after {self._timeout:g} s", retry=True)
        except aiohttp.ClientConnectionError as exc:
            return _Failure(describe_connection_error(exc), retry=True)
        except aiohttp.ClientError as exc:
            return _Failure(type(exc).__name__, retry=False)


def parse_retry_after(value: str | None) -> float | None:
    """A numeric Retry-After in seconds, capped at a minute; None for a date or nonsense."""
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        return None
    return min(float(value), MAX_RETRY_AFTER_SECONDS)


def describe_connection_error(exc: aiohttp.ClientConnectionError) -> str:
    """What went wrong on the connection, without the text of the exception (it names the URL,
    and a certificate error names the host)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "connection failed: the host name did not resolve"
    cause: BaseException | None = exc
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause = exc.certificate_error
    elif isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
    if isinstance(cause, ssl.SSLError):
        reason = cause.reason
        code = reason if isinstance(reason, str) and _TLS_REASON.fullmatch(reason) else None
        return f"TLS failed: {code or type(cause).__name__}"
    if isinstance(cause, OSError) and isinstance(cause.errno, int) and cause.errno > 0:
        return f"connection failed: {os.strerror(cause.errno)}"
    return type(exc).__name__
