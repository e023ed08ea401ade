"""One sync at a time: :class:`RunGate` is what the scheduler holds for a whole run.

In SQLite mode it is :class:`FileGate`, an exclusive flock on a file beside the database
(:class:`RunLock`), across the processes of one machine; in PostgreSQL mode it is the run
lease (``service.store.postgres.RunLease``), across nodes.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from typing import Protocol


class RunGate(Protocol):
    """Held by the scheduler from before a run's log is created until the run has ended."""

    @property
    def where(self) -> str:
        """What holds it, for messages (a file's path, the database's lease)."""

    @property
    def epoch(self) -> int | None:
        """The take's number, checked by the run's swap (None: nothing to fence)."""

    async def acquire(self) -> bool:
        """Take it if free; False when another process or node holds it."""

    async def keep(self) -> None:
        """Hold it; return only when it was lost (the run under it must stop)."""

    async def release(self) -> None:
        """Let go (idempotent)."""


class RunLock:
    """Non-blocking, process-wide: the server and a ``run-once`` never sync at once.

    The OS drops the lock when its holder dies, even by kill -9, so a crash never leaves it held.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def beside(cls, database_path: Path) -> RunLock:
        """The lock for the database at ``database_path``."""
        return cls(database_path.with_name(database_path.name + ".sync-lock"))

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if free; False when another holder has it."""
        if self._fd is not None:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Let go of the lock (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FileGate:
    """:class:`RunGate` on a :class:`RunLock`: the OS keeps the lock until it is released or
    its holder dies, so it is never lost while held."""

    def __init__(self, lock: RunLock) -> None:
        self.lock = lock

    @property
    def where(self) -> str:
        return f"the lock {self.lock.path}"

    @property
    def epoch(self) -> int | None:
        return None

    async def acquire(self) -> bool:
        return self.lock.acquire()

    async def keep(self) -> None:
        await asyncio.Event().wait()

    async def release(self) -> None:
        self.lock.release()
