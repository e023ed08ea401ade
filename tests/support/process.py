"""A process a test starts in the background, waits for, and never leaves behind.

The server (tests/support/server.py) and nginx (tests/support/nginx.py) are both one: started on
entering a ``with`` block, awaited until they answer (failing at once, with what they said, if
they exit instead), and ended when the block ends if they still run.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from .wait import wait_for


class ChildProcess:
    """Subclasses start ``self.process`` in :meth:`start`, say what it logged in :meth:`said`,
    and may end it more gently than :meth:`end`'s kill."""

    name = "process"
    process: subprocess.Popen[bytes] | None = None
    started_at = 0.0
    """When :meth:`start` began (``time.monotonic()``), for :meth:`wait_until`'s figure."""

    def start(self) -> None:
        """Start the process."""
        raise NotImplementedError

    def said(self) -> str:
        """What the process logged so far, for a failure's message."""
        return ""

    @property
    def running(self) -> bool:
        """True while the process is started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def wait_until(
        self, ready: Callable[[], bool], what: str, *, within: float, every: float = 0.05
    ) -> float:
        """Return once ``ready()``, with the seconds since :meth:`start` began; fail if the
        process exits first or ``within`` seconds pass."""
        process = self.process
        assert process is not None, f"{self.name} was never started"

        def check() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{self.name} exited {process.returncode}: {self.said()}")
            return ready()

        wait_for(check, lambda: f"{self.name} {what}: {self.said()}", within=within, every=every)
        return time.monotonic() - self.started_at

    def end(self) -> None:
        """Kill the process and reap it."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.running:
            self.end()
