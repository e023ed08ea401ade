"""The service started for real, as ``python -m service`` in its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from service.settings import Settings

from .api import ADMIN_TOKEN
from .system import free_port


def service_env(**env: str) -> dict[str, str]:
    """This process's environment without any of the service's settings, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    return {**base, **env}


def run_service(
    workdir: Path, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m service ARGS`` in ``workdir`` with ``env``, run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=workdir,
        env=service_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ServerProcess:
    """Starts the server with ``env`` on a free port; stops it on exit if it still runs.

    ``prefix`` is a command the server is started under (e.g. one that drops privileges).
    Its admin token is the tests' (tests.support.api.ADMIN) unless ``env`` sets one.
    """

    def __init__(self, workdir: Path, *, prefix: Sequence[str] = (), **env: str) -> None:
        self.workdir = workdir
        self.prefix = list(prefix)
        self.port = int(env.get("PORT", free_port()))
        self.output = workdir / "server.out"
        self.errors = workdir / "server.err"
        defaults = {"PORT": str(self.port), "ADMIN_TOKEN": ADMIN_TOKEN}
        self.env = service_env(**{**defaults, **env})
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        with self.output.open("wb") as out, self.errors.open("wb") as err:
            self.process = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "service"],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=err,
            )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Return once /healthz answers; fail if the process exits or time runs out."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}: {self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout} s: {self.logs()}")

    def connect(self) -> socket.socket:
        """A raw TCP connection to the server."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Send ``signum``; return the exit code and the seconds it took to exit."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - started

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit by itself."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def logs(self) -> str:
        """Everything the server wrote so far, stdout then stderr."""
        return self.output.read_text() + self.errors.read_text()
