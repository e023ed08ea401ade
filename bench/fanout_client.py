"""The client side of bench.fanout: many cheap SSE readers in one process, on raw streams.

python -m bench.fanout_client --port P --connections N

Opens N ``GET /api/events`` streams (HTTP/1.1, chunked or not), prints ``READY`` once every one
has its response head, records each ``id:`` line with its time of receipt, and on
``REPORT <path>`` (stdin; the file holds the server's ``{"sent": [[id, time], ...]}``) prints one
JSON line: deliveries, lost and duplicated events, and a latency histogram (0.1 ms bins).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

from bench.fanout_server import raise_nofile

ID_LINE = re.compile(rb"^id: ?(\d+)\r?$", re.MULTILINE)
BIN = 10_000  # histogram bins per second


class Reader:
    """One stream: the ids it received and when."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.times: list[float] = []
        self._rest = b""

    def feed(self, data: bytes) -> None:
        now = time.time()
        data = self._rest + data
        cut = data.rfind(b"\n") + 1
        self._rest = data[cut:]
        for match in ID_LINE.finditer(data, 0, cut):
            self.ids.append(int(match.group(1)))
            self.times.append(now)


async def connect(port: int, reader: Reader, ready: asyncio.Semaphore, headed: list[int]) -> None:
    async with ready:
        stream, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        head = await stream.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))
    headed[0] += 1
    chunked = b"transfer-encoding: chunked" in head.lower()
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            if chunked:
                size = int((await stream.readline()).split(b";")[0], 16)
                if size == 0:
                    return
                reader.feed((await stream.readexactly(size + 2))[:-2])
            else:
                data = await stream.read(65536)
                if not data:
                    return
                reader.feed(data)


def report(readers: list[Reader], sent_path: Path) -> dict[str, object]:
    sent = {int(n): float(t) for n, t in json.loads(sent_path.read_text())["sent"]}
    histogram: Counter[int] = Counter()
    lost = duplicated = deliveries = 0
    worst = 0.0
    for reader in readers:
        seen: set[int] = set()
        for n, received in zip(reader.ids, reader.times, strict=True):
            if n not in sent:
                continue
            if n in seen:
                duplicated += 1
                continue
            seen.add(n)
            deliveries += 1
            latency = received - sent[n]
            worst = max(worst, latency)
            histogram[max(0, int(latency * BIN))] += 1
        lost += len(sent) - len(seen)
    return {
        "deliveries": deliveries,
        "lost": lost,
        "duplicated": duplicated,
        "max": worst,
        "histogram": sorted(histogram.items()),
    }


async def amain(port: int, connections: int) -> None:
    readers = [Reader() for _ in range(connections)]
    ready = asyncio.Semaphore(32)
    headed = [0]
    tasks = [asyncio.create_task(connect(port, reader, ready, headed)) for reader in readers]
    for _ in range(1200):  # a minute at most
        if headed[0] >= connections or any(task.done() for task in tasks):
            break
        await asyncio.sleep(0.05)
    failed = [task for task in tasks if task.done() and task.exception() is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} streams failed: {failed[0].exception()!r}")
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    command, _, path = line.strip().partition(" ")
    if command == "REPORT":
        print(json.dumps(report(readers, Path(path))), flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    args = parser.parse_args()
    raise_nofile()
    asyncio.run(amain(args.port, args.connections))


if __name__ == "__main__":
    main()
