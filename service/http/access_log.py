"""Access log: one line per request, except the probes and scrapes that come every few seconds."""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

# Asked by load balancers, orchestrators and Prometheus all day long; logging them buries the rest.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class AccessLogger(AbstractAccessLogger):
    """``GET /api/job_logs?page=2 200 3.1ms 127.0.0.1``; the fields also go to JSON lines."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        """Log one finished request unless its path is a quiet one."""
        if request.path in QUIET_PATHS:
            return
        duration_ms = round(time * 1000, 1)
        self.logger.info(
            "%s %s %s %.1fms %s",
            request.method,
            request.path_qs,
            response.status,
            duration_ms,
            request.remote,
            extra={
                "method": request.method,
                "path": request.path_qs,
                "status": response.status,
                "duration_ms": duration_ms,
                "remote": request.remote,
                "user_agent": request.headers.get("User-Agent"),
            },
        )

    @property
    def enabled(self) -> bool:
        """Only when the access logger would write INFO lines."""
        return self.logger.isEnabledFor(logging.INFO)
