"""Answer helpers shared by the handlers."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from pydantic import BaseModel

# Answers that describe the moment (health, who is signed in) are never stored by a cache.
NO_STORE = {"Cache-Control": "no-store"}


def reply(
    model: BaseModel, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``model`` as a JSON answer."""
    return web.Response(
        text=model.model_dump_json(),
        status=status,
        content_type="application/json",
        headers=headers,
    )
