"""One middleware that turns every failure into a JSON answer, never a traceback."""

from __future__ import annotations

import logging
import sqlite3

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from service.http.params import InvalidParameter
from service.store import DatabaseFailure, NotFound, is_busy, is_full, is_gone

logger = logging.getLogger(__name__)


def error_body(status: int, message: str, **extra: object) -> web.Response:
    """A JSON error answer: ``{"error": message, ...extra}``."""
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map not-found to 404, HTTP errors to their status, anything unexpected to a logged 500."""
    try:
        return await handler(request)
    except NotFound as exc:
        return error_body(404, str(exc))
    except InvalidParameter as exc:
        return error_body(400, str(exc), field=exc.field)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        return error_body(400, f"{field}: {message}" if field else message, field=field or None)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.empty_body:
            raise
        headers = {
            k: v
            for k, v in exc.headers.items()
            if k.lower() in ("allow", "retry-after", "www-authenticate")
        }
        response = error_body(exc.status, exc.reason)
        response.headers.update(headers)
        if exc.status == 413 or (request.can_read_body and not request.content.at_eof()):
            # The body was not read (refused unread): the connection cannot carry another.
            response.force_close()
        return response
    except (sqlite3.Error, DatabaseFailure) as exc:
        if not (is_busy(exc) or is_full(exc) or is_gone(exc)):
            logger.exception("unhandled error in %s %s", request.method, request.path)
            return error_body(500, "internal error")
        logger.warning(
            "%s %s: the database cannot take it now: %s", request.method, request.path, exc
        )
        response = error_body(503, f"the job-log database cannot take this now: {exc}")
        response.headers["Retry-After"] = "5"
        return response
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return error_body(500, "internal error")
