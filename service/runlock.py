"""One sync at a time across processes: an exclusive flock on a file beside the database."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


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
