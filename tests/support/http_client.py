"""Plain HTTP from a sync test to a server process (or a proxy in front of one): one request on a
new connection, nothing followed, nothing decompressed, every header of the answer kept."""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    """A complete answer: status, headers (all values of each, lower-cased names), body."""

    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The header's (last) value."""
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def headers_of(response: http.client.HTTPResponse) -> dict[str, list[str]]:
    """Every header of ``response``, all values of each, by lower-cased name."""
    headers: dict[str, list[str]] = {}
    for name, value in response.getheaders():
        headers.setdefault(name.lower(), []).append(value)
    return headers


def call(
    port: int,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    *,
    source: str | None = None,
    host: str = "127.0.0.1",
) -> Answer:
    """One request on a new connection to ``host:port`` (from ``source``); no redirect is
    followed and nothing is decompressed. ``body`` is sent as JSON."""
    conn = http.client.HTTPConnection(
        host, port, timeout=15, source_address=(source, 0) if source else None
    )
    with closing(conn):
        sent = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        return Answer(response.status, headers_of(response), response.read())


def bearer(token: str) -> dict[str, str]:
    """The header that proves ``token``."""
    return {"Authorization": f"Bearer {token}"}
