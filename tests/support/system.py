"""Access to real system components; missing ones skip locally and fail under CI=true."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest


def missing(what: str) -> None:
    """Skip the test, or fail it when running in CI, where every dependency must be there."""
    message = f"{what} is not installed (make test installs it when run as root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_command(name: str) -> str:
    """The path of command ``name``, or skip/fail when it is missing."""
    path = shutil.which(name)
    if path is None:
        missing(f"the command {name!r}")
    assert path is not None
    return path


def require_ruby_library(library: str, package: str) -> str:
    """The ruby binary, checked to load ``library`` (from Debian's ``package``)."""
    ruby = require_command("ruby")
    probe = subprocess.run(
        [ruby, "-e", f"require {library!r}"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        missing(f"the Debian package {package}")
    return ruby


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def without_root_override() -> list[str]:
    """A command prefix under which file permissions bind this process as they bind any user.

    Root ignores a file's mode (CAP_DAC_OVERRIDE), so ``chmod a-w`` would not stop its writes;
    ``setpriv`` (util-linux) drops those capabilities from what it starts. Not root: nothing.
    """
    if os.geteuid() != 0:
        return []
    caps = "-dac_override,-dac_read_search"
    return [require_command("setpriv"), f"--bounding-set={caps}", f"--inh-caps={caps}"]
