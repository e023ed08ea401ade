"""HTTP/1.1 over a bare socket: for the requests a client library refuses to send (raw bytes in
the request line, oversized or malformed headers) and for timing what a server does with them."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RawAnswer:
    """What came back: the version and status, the headers (names lower-cased), the body,
    whether the server closed the connection after it, and how long the answer took."""

    version: str
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool
    seconds: float = 0.0

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body as text (invalid UTF-8 replaced)."""
        return self.body.decode("utf-8", errors="replace")


def request_bytes(
    method: str, target: bytes | str, headers: dict[str, str] | None = None, host: str = "localhost"
) -> bytes:
    """A request head: ``method target HTTP/1.1``, ``Host``, ``headers``, ``Connection: close``."""
    raw_target = target.encode() if isinstance(target, str) else target
    lines = [method.encode() + b" " + raw_target + b" HTTP/1.1", f"Host: {host}".encode()]
    lines += [f"{name}: {value}".encode() for name, value in (headers or {}).items()]
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def parse_answer(data: bytes, closed: bool, seconds: float = 0.0) -> RawAnswer:
    """An answer from the bytes read (one response, its body by Content-Length or to the end)."""
    head, separator, body = data.partition(b"\r\n\r\n")
    assert separator, f"no complete answer head in {data[:200]!r}"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = status_line.split(" ", 2)
    assert version.startswith("HTTP/"), status_line
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return RawAnswer(version, int(status), headers, body, closed, seconds)


def exchange(
    address: tuple[str, int],
    data: bytes,
    *,
    source: str | None = None,
    timeout: float = 10.0,
) -> RawAnswer:
    """Send ``data`` on a new connection (from ``source`` when given), read the whole answer."""
    with socket.create_connection(
        address, timeout=timeout, source_address=(source, 0) if source else None
    ) as conn:
        conn.sendall(data)
        return read_answer(conn, timeout)


def read_answer(conn: socket.socket, timeout: float = 10.0) -> RawAnswer:
    """Read one answer: up to the end of its body by Content-Length, else to the close;
    ``seconds`` is how long it took to arrive (whether the server then closes is waited for
    up to a second more)."""
    conn.settimeout(timeout)
    data = b""
    started = time.monotonic()
    while time.monotonic() < started + timeout:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return parse_answer(data, closed=True, seconds=time.monotonic() - started)
        data += chunk
        if _complete(data):
            seconds = time.monotonic() - started
            return parse_answer(data, closed=_closed_now(conn), seconds=seconds)
    raise AssertionError(f"no complete answer within {timeout} s: {data[:200]!r}")


def _complete(data: bytes) -> bool:
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def _closed_now(conn: socket.socket) -> bool:
    """True when the server has closed its side (a read returns end of stream)."""
    conn.settimeout(1.0)
    try:
        return conn.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def exchange_async(host: str, port: int, data: bytes) -> RawAnswer:
    """:func:`exchange` for a test already running an event loop (an in-process server); the
    answer must come within 10 s."""
    reader, writer = await asyncio.open_connection(host, port)
    received = b""
    closed = False
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            while not _complete(received):
                chunk = await reader.read(65536)
                if not chunk:
                    closed = True
                    break
                received += chunk
    finally:
        writer.close()
    return parse_answer(received, closed=closed)
