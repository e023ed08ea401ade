"""Access log: one line per request, except the probes and scrapes that come every few seconds."""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from service.http.auth import CLIENT

# Asked by load balancers, orchestrators and Prometheus all day long; logging them buries the rest.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class AccessLogger(AbstractAccessLogger):
    """``GET /api/job_logs?page=2 200 3.1ms 203.0.113.7``; the fields also go to JSON lines.

    The address is the client's as the service believes it: behind a trusted proxy, the one
    its forwarding headers name.
    """

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        """Log one finished request unless its path is a quiet one."""
        if request.path in QUIET_PATHS:
            return
        duration_ms = round(time * 1000, 1)
        client = request.get(CLIENT)
        remote = client.address if client is not None else request.remote
        self.logger.info(
            "%s %s %s %.1fms %s",
            request.method,
            request.path_qs,
            response.status,
            duration_ms,
            remote,
            extra={
                "method": request.method,
                "path": request.path_qs,
                "status": response.status,
                "duration_ms": duration_ms,
                "remote": remote,
                "user_agent": request.headers.get("User-Agent"),
            },
        )

    @property
    def enabled(self) -> bool:
        """Only when the access logger would write INFO lines."""
        return self.logger.isEnabledFor(logging.INFO)
