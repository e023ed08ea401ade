"""Service logging: to stdout, one line per event, as text or as JSON (``LOG_FORMAT``)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

from aiohttp.http_exceptions import HttpProcessingError

from service.wire import JobLog, JobLogDetail

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Extra fields a record may carry (``logger.info(..., extra={...})``); JSON lines include them.
FIELDS = (
    "job_log",
    "detail_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "remote",
    "user_agent",
)

_details = logging.getLogger("service.details")


class OneLineFormatter(logging.Formatter):
    """Folds multi-line messages and tracebacks into one line, so each event is one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line; line breaks inside it are written as ``\\n``."""
        return super().format(record).replace("\r", "\\r").replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (line breaks inside strings are escaped by JSON)."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class BadRequestFilter(logging.Filter):
    """aiohttp logs every malformed request as an ERROR with a traceback; a client sending
    garbage would flood the log. It becomes one WARNING line saying what was wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite aiohttp's record of a request it could not parse; keep every other."""
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            reason = (error.message or type(error).__name__).splitlines()[0][:200]
            record.msg, record.args = "bad request: %s (%s)", (reason, record.getMessage())
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def configure(
    level: str, stream: TextIO | None = None, fmt: Literal["text", "json"] = "text"
) -> None:
    """Send every logger's records at ``level`` and above to ``stream`` (stdout by default)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else OneLineFormatter(_FORMAT))
    handler.addFilter(BadRequestFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def log_detail(log: JobLog, detail: JobLogDetail) -> None:
    """Write a detail a run appended to the service log, with its log's name."""
    _details.info(
        "%s %s", log.name, detail.message, extra={"job_log": log.name, "detail_id": detail.id}
    )
