"""Following the event stream of a server process (or of a proxy in front of it) from a sync
test, in a thread: over ``http.client`` (:class:`EventStream`, which times each event's
arrival) or with curl as an operator would (:class:`CurlStream`). An in-process app's stream is
tests/support/event_streams.py's; the asyncio SSE parser is tests/support/sse.py."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .http_client import headers_of
from .system import require_command
from .wait import wait_for


@dataclass(frozen=True)
class Event:
    """One server-sent event, with the wall-clock time its last line arrived."""

    kind: str
    id: int | None
    data: Any
    at: float


class EventStream:
    """``GET path`` as an event-stream client, read in a thread into :attr:`events`.

    The answer's status and headers are known on return; :attr:`done` is set when the stream
    ends (the server closed it, or the connection broke).
    """

    def __init__(self, port: int, path: str, headers: Mapping[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream", **headers})
        try:
            self.response = self.conn.getresponse()
        except TimeoutError:
            self.conn.close()
            raise AssertionError(f"{path}: no answer within 15 s (held in a buffer?)") from None
        if self.conn.sock is not None:
            self.conn.sock.settimeout(60)  # the service pings every 15 s
        self.status = self.response.status
        self.headers = headers_of(self.response)
        self.events: list[Event] = []
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        if self.status == 200:
            self._thread.start()
        else:
            self.done.set()

    def _read(self) -> None:
        kind: str = "message"
        ident: int | None = None
        data: list[str] = []
        try:
            while line := self._next_line():
                text = line.decode().rstrip("\r\n")
                if text == "":
                    if data:
                        self.events.append(
                            Event(kind, ident, json.loads("\n".join(data)), time.time())
                        )
                    kind, ident, data = "message", None, []
                elif not text.startswith(":"):
                    name, _, value = text.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        kind = value
                    elif name == "id":
                        ident = int(value)
                    elif name == "data":
                        data.append(value)
        finally:
            self.done.set()

    def _next_line(self) -> bytes:
        """The next line, or b"" at the end: the server's, or the connection's when the proxy
        goes away (http.client says so with a ValueError when a chunk breaks off)."""
        try:
            return self.response.readline()
        except (OSError, ValueError, http.client.HTTPException):
            return b""

    def details(self, run: str) -> list[Event]:
        """The ``detail`` events of the run named ``run``, as received."""
        return [
            e for e in list(self.events) if e.kind == "detail" and e.data["job_log_name"] == run
        ]

    def wait_for(self, found: Callable[[], bool], what: str, within: float = 30.0) -> None:
        """Return once ``found()``; fail naming ``what`` after ``within`` s."""
        wait_for(found, what, within=within, every=0.02)

    def close(self) -> None:
        """Hang up: the reading thread sees the end at once, then the connection is closed."""
        sock = self.conn.sock
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread.ident is not None:
            self._thread.join(timeout=10)
        self.conn.close()


class CurlStream:
    """``curl -sN -H @header_file url``: the event stream as an operator follows it, its output
    lines collected in a thread."""

    def __init__(self, url: str, header_file: Path) -> None:
        curl = require_command("curl")
        self.process = subprocess.Popen(
            [curl, "-sS", "-N", "-H", f"@{header_file}", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.decode().rstrip("\r\n"))

    def messages(self, run: str) -> list[str]:
        """The messages of the run named ``run`` in the ``data:`` lines so far."""
        found = []
        for line in list(self.lines):
            if line.startswith("data: {"):
                data = json.loads(line.removeprefix("data: "))
                if data.get("job_log_name") == run:
                    found.append(data["message"])
        return found

    def wait_for(self, found: Callable[[], bool], what: str, within: float = 30.0) -> None:
        """Return once ``found()``; fail naming ``what`` (and showing the output) if curl ends
        or ``within`` s pass first."""

        def check() -> bool:
            if found():
                return True
            if self.process.poll() is not None:
                raise AssertionError(self._not_in_output(what))
            return False

        wait_for(check, lambda: self._not_in_output(what), within=within, every=0.02)

    def _not_in_output(self, what: str) -> str:
        ended = self.process.poll() is not None
        said = self.process.stderr.read().decode() if ended and self.process.stderr else ""
        return f"{what}: not in curl's output {self.lines[-20:]} {said}"

    def close(self) -> None:
        """Stop curl."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._thread.join(timeout=10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
