"""What every part of bench.postgres shares: the throwaway PostgreSQL cluster with a stock
server's settings that holds each part's databases, the backends and the order that alternates
them each round, the service's environment, and the small helpers for a node's JSON and a
figure's spread. It measures nothing itself; bench.postgres and its parts
(bench.postgres_reads, bench.postgres_fanout, bench.postgres_sync) import it, never the other
way round.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import spread
from tests.support.postgres import PostgresServer, postgres_server

BACKENDS = ("sqlite", "postgresql")
# The test cluster runs with fsync off and 16 MB of shared buffers, which would flatter every
# write and starve every read: a stock server's settings instead.
STOCK = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "128MB",
    "max_connections": "100",
}
SERVICE_ENV = {
    "SYNC_ON_START": "false",
    "SYNC_INTERVAL_SECONDS": "0",
    "LOG_LEVEL": "warning",
    # The cached database must stay as seeded: no purge of the oldest runs.
    "RETENTION_DAYS": "0",
}


@contextmanager
def cluster() -> Iterator[PostgresServer]:
    """The throwaway cluster with :data:`STOCK`'s settings, restarted to take them."""
    with postgres_server() as server:
        server.psql(
            "".join(f"ALTER SYSTEM SET {name} = '{value}';\n" for name, value in STOCK.items()),
            "postgres",
        )
        server.stop()
        server.start()
        yield server


def _order(n: int) -> tuple[str, ...]:
    """The backends in the order of round ``n``: which goes first alternates."""
    return BACKENDS if n % 2 == 0 else BACKENDS[::-1]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _plain(values: list[float], digits: int) -> str:
    return spread(values, "", digits).replace("  ", " ")
