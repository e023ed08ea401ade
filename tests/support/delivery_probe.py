"""How long a line takes from its commit on one node to each node's event stream, measured by
a process of its own that follows one stream per node and does nothing else — so the figure is
the service's, not the load of the test's 300 clients on its event loop.

    python -m tests.support.delivery_probe OUT TOKEN AFTER URL...

writes one line per detail event received: ``node detail_id job_log_id created arrived``
(``time.time()`` seconds; ``created`` is the line's ``created_at``, stamped by the writing node
just before its commit). A stream that ends or breaks is resumed on the same node with
``Last-Event-ID``; the probe runs until it is sent SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

import aiohttp

from .sse import SSEDecoder, SSEEvent


@dataclass(frozen=True)
class Received:
    """One detail as one node's stream delivered it."""

    node: int
    detail_id: int
    job_log_id: int
    created: float
    arrived: float

    @property
    def seconds(self) -> float:
        """From its ``created_at`` to its arrival."""
        return self.arrived - self.created


class DeliveryProbe:
    """The probe process, started on entering and stopped on leaving a ``with`` block."""

    def __init__(self, out: Path, token: str, after: int, urls: Sequence[str]) -> None:
        self.out = out
        self._command = [
            sys.executable,
            "-m",
            "tests.support.delivery_probe",
            str(out),
            token,
            str(after),
            *urls,
        ]
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DeliveryProbe:
        self._process = subprocess.Popen(self._command, cwd=Path(__file__).parents[2])
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def received(self) -> list[Received]:
        """What the streams delivered so far."""
        found = []
        for line in self.out.read_text().splitlines():
            node, detail_id, job_log_id, created, arrived = line.split()
            found.append(
                Received(int(node), int(detail_id), int(job_log_id), float(created), float(arrived))
            )
        return found


async def _follow(node: int, url: str, token: str, after: int, out: TextIO) -> None:
    last = after
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=3)) as s:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                resume = {**headers, "Last-Event-ID": str(last)}
                async with s.get(f"{url}/api/events", headers=resume) as response:
                    decoder = SSEDecoder()
                    while chunk := await response.content.readany():
                        arrived = time.time()
                        for item in decoder.feed(chunk):
                            if isinstance(item, SSEEvent) and item.type == "detail":
                                data = json.loads(item.data)
                                last = max(last, int(data["id"]))
                                created = datetime.fromisoformat(data["created_at"]).timestamp()
                                out.write(
                                    f"{node} {data['id']} {data['job_log_id']} "
                                    f"{created:.6f} {arrived:.6f}\n"
                                )
                        out.flush()
            await asyncio.sleep(0.2)


async def _probe(out: TextIO, token: str, after: int, urls: Sequence[str]) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [
        asyncio.create_task(_follow(node, url, token, after, out)) for node, url in enumerate(urls)
    ]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: Sequence[str]) -> None:
    """``OUT TOKEN AFTER URL...``: follow each URL's stream until SIGTERM."""
    with open(argv[0], "w") as out:
        asyncio.run(_probe(out, argv[1], int(argv[2]), argv[3:]))


if __name__ == "__main__":
    main(sys.argv[1:])
