"""A second, non-loopback address on this machine, so a test can be a client "from elsewhere".

As root, ``ip addr add 10.213.0.N/32 dev lo`` gives the loopback interface an address outside
127.0.0.0/8: a connection from it to a server listening on 0.0.0.0 arrives with that address as
its remote, exactly as one from another host would. The address is removed afterwards. Without
root or ``ip`` the test is skipped (failed under CI=true).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from .system import missing, require_command

_CANDIDATES = [f"10.213.0.{n}" for n in range(1, 30)]


@contextmanager
def outside_address() -> Iterator[str]:
    """An address on ``lo`` that is not loopback, for as long as the block runs."""
    if os.geteuid() != 0:
        missing("root (to add an address to the loopback interface)")
    ip = require_command("ip")
    shown = subprocess.run(
        [ip, "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True
    ).stdout
    address = next(a for a in _CANDIDATES if f" {a}/" not in shown)
    added = subprocess.run(
        [ip, "addr", "add", f"{address}/32", "dev", "lo"], capture_output=True, text=True
    )
    assert added.returncode == 0, f"ip addr add {address}/32 dev lo: {added.stderr.strip()}"
    try:
        yield address
    finally:
        subprocess.run([ip, "addr", "del", f"{address}/32", "dev", "lo"], check=False)
