"""Service logging: to stdout, one line per event."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    """Folds multi-line messages and tracebacks into one line, so each event is one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line; line breaks inside it are written as ``\\n``."""
        return super().format(record).replace("\r", "\\r").replace("\n", "\\n")


def configure(level: str, stream: TextIO | None = None) -> None:
    """Send every logger's records at ``level`` and above to ``stream`` (stdout by default)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(OneLineFormatter(_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
