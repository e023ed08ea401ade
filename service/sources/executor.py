"""A one-thread executor whose thread never keeps the process alive.

ODBC calls block in C and cannot be cancelled from Python. concurrent.futures joins its worker
threads at interpreter exit, so one call stuck on a silent server would hang the shutdown; this
executor's thread is a daemon, and a stuck call is simply abandoned when the process exits.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Work = tuple[Future[Any], Callable[[], Any]]


class DaemonThreadExecutor(Executor):
    """Runs submitted calls one at a time, in order, on a single daemon thread."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._closed = False
        self._busy = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; its future resolves when the thread has run it."""
        if self._closed:
            raise RuntimeError("executor is shut down")
        future: Future[T] = Future()
        self._queue.put((future, lambda: fn(*args, **kwargs)))
        return future

    @property
    def busy(self) -> bool:
        """True while a call runs on the thread (perhaps blocked in a driver)."""
        return self._busy

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; the thread ends after what is queued (never waited for here)."""
        self._closed = True
        self._queue.put(None)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            self._busy = True
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                self._busy = False
