"""Waiting for something to become true: the one polling loop of the tests (and the benchmarks).

:func:`wait_for` polls a check from a plain (sync) test or helper; :func:`wait_for_async` is the
same loop for a test already running an event loop (an in-process app, asyncio clients), where
the check may itself be a coroutine. Both return the check's first truthy result and fail with
an ``AssertionError`` naming ``what`` once ``within`` seconds have passed; an exception the check
raises (a process that exited, say) ends the wait at once.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

WITHIN = 20.0
"""How long a wait lasts by default, in seconds: well under the per-test timeout."""
EVERY = 0.05
"""How long to pause between two checks by default, in seconds."""


def _failure(what: str | Callable[[], str], within: float, last: object) -> AssertionError:
    said = what() if callable(what) else what
    return AssertionError(f"{said}: not the case after {within} s (the check last gave {last!r})")


def wait_for(
    check: Callable[[], T | None],
    what: str | Callable[[], str],
    *,
    within: float = WITHIN,
    every: float = EVERY,
    pause: Callable[[float], object] = time.sleep,
) -> T:
    """Call ``check`` every ``every`` seconds until it returns something truthy; return that.

    ``what`` says what is awaited (a callable is asked only on failure, so it can show the state
    at that moment: a server's logs, a client's output). ``pause`` waits between two checks
    (a Playwright page's own wait lets the page run meanwhile).
    """
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise _failure(what, within, result)
        pause(every)


@overload
async def wait_for_async(
    check: Callable[[], Awaitable[T | None]],
    what: str | Callable[[], str],
    *,
    within: float = WITHIN,
    every: float = EVERY,
) -> T: ...


@overload
async def wait_for_async(
    check: Callable[[], T | None],
    what: str | Callable[[], str],
    *,
    within: float = WITHIN,
    every: float = EVERY,
) -> T: ...


async def wait_for_async(
    check: Callable[[], Any],
    what: str | Callable[[], str],
    *,
    within: float = WITHIN,
    every: float = EVERY,
) -> Any:
    """:func:`wait_for` without blocking the event loop; ``check`` may be a coroutine function.

    ``every=0`` polls as tightly as the loop allows (each check still yields to it once).
    """
    deadline = time.monotonic() + within
    while True:
        answer = check()
        result = await answer if inspect.isawaitable(answer) else answer
        if result:
            return result
        if time.monotonic() > deadline:
            raise _failure(what, within, result)
        await asyncio.sleep(every)
