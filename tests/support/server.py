"""The service in a process of its own, as ``python -m service``: the environment it is given
(and the settings it would read from it), a command run to its end or beside a test, and the
server started for real (:class:`ServerProcess`, which the benchmarks use too)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.settings import Settings, load_settings

from .api import ADMIN_TOKEN
from .joblogs import statuses, wait_for_detail
from .process import ChildProcess
from .system import free_port

SERVICE = (sys.executable, "-m", "service")
"""How a server is started unless told otherwise."""
RUN_TIMEOUT = 60.0
"""How long a command of the service run to its end (:func:`run_service`) may take, in seconds."""


def service_env(**env: str) -> dict[str, str]:
    """This process's environment without any of the service's settings, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    return {**base, **env}


def settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the service would read with ``env`` as its whole environment, read in this
    process (conftest clears the machine's own settings for every test)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def start_service(workdir: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """``python -m service ARGS`` in ``workdir`` with ``env``, started, its output piped as text;
    the caller reads it to the end (``communicate()``)."""
    return subprocess.Popen(
        [*SERVICE, *args],
        cwd=workdir,
        env=service_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def run_once_beside(workdir: Path, delay: str = "1.5") -> Iterator[str]:
    """``python -m service run-once`` in another process on the database of ``workdir``, with a
    pause of ``delay`` seconds between batches; yields its run's name once it imported a first
    batch, and expects it to succeed."""
    database = workdir / "data" / "joblog.sqlite3"
    with start_service(workdir, "run-once", DEMO_DELAY_SECONDS=delay) as once:
        try:
            wait_for_detail(database, "Batch 1/4 imported")
            yield statuses(database)[-1][0]
            _, said = once.communicate(timeout=30)
            assert once.returncode == 0, said
        finally:
            if once.poll() is None:
                once.kill()
                once.communicate()


def run_service(workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m service ARGS`` in ``workdir`` with ``env``, run to its end."""
    return subprocess.run(
        [*SERVICE, *args],
        cwd=workdir,
        env=service_env(**env),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


class ServerProcess(ChildProcess):
    """Starts the server with ``env`` on a free port; stops it on exit if it still runs.

    ``prefix`` is a command the server is started under (e.g. one that drops privileges);
    ``command`` another server to start the same way (a baseline of the benchmarks: it must
    listen on ``PORT``, which ``env`` then sets, and answer ``/healthz``). Its admin token is the
    tests' (tests.support.api.ADMIN) unless ``env`` sets one. What it writes goes to
    ``server.out`` and ``server.err`` in ``workdir``.
    """

    name = "server"

    def __init__(
        self,
        workdir: Path,
        *,
        prefix: Sequence[str] = (),
        command: Sequence[str] = SERVICE,
        **env: str,
    ) -> None:
        self.workdir = workdir
        self.command = [*prefix, *command]
        self.port = int(env.get("PORT", free_port()))
        self.output = workdir / "server.out"
        self.errors = workdir / "server.err"
        defaults = {"PORT": str(self.port), "ADMIN_TOKEN": ADMIN_TOKEN}
        self.env = service_env(**{**defaults, **env})

    def start(self) -> None:
        """Start the server (ready or not: see :meth:`wait_ready`)."""
        with self.output.open("wb") as out, self.errors.open("wb") as err:
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(
                self.command, cwd=self.workdir, env=self.env, stdout=out, stderr=err
            )

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        """True when ``/healthz`` answers 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_ready(self, within: float = 20.0, every: float = 0.05) -> float:
        """Return once /healthz answers, with the seconds since the start; fail if the process
        exits or time runs out."""
        return self.wait_until(self.healthy, "not ready", within=within, every=every)

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

    def said(self) -> str:
        """:meth:`logs`, for a failure's message."""
        return self.logs()

    def logs(self) -> str:
        """Everything the server wrote so far, stdout then stderr."""
        return self.output.read_text() + self.errors.read_text()
