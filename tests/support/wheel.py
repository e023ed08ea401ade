"""The service built as a wheel, as pip builds it (no network: the build backend is installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def build_wheel(source: Path, out: Path, *, timeout: float = 180) -> Path:
    """``pip wheel`` of the project in ``source`` into ``out``; the one wheel it made."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=timeout,
    )
    (wheel,) = out.glob("*.whl")
    return wheel
