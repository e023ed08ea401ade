"""A node holding the sync's run lease, as a process of its own (for SIGKILL and SIGSTOP).

    python -m tests.support.lease_holder URL NODE IDLE_SECONDS

Prints ``held <epoch>`` once it holds the lease (``refused`` and exit 1 when another node
does), pings as a runner does, and prints ``lost`` and exits 3 when a ping fails.
"""

from __future__ import annotations

import asyncio
import sys

from service.store.postgres import RunLease


async def hold(url: str, node: str, idle_seconds: float) -> int:
    lease = RunLease(url, node, idle_seconds=idle_seconds)
    if not await lease.acquire():
        print("refused", flush=True)
        return 1
    print(f"held {lease.epoch}", flush=True)
    await lease.keep()
    print("lost", flush=True)
    return 3


if __name__ == "__main__":
    sys.exit(asyncio.run(hold(sys.argv[1], sys.argv[2], float(sys.argv[3]))))
