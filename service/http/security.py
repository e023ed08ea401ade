"""Headers that every answer carries."""

from __future__ import annotations

from aiohttp import web

_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Forbid sniffing, framing and inline script on every answer, streamed ones included
    (an ``on_response_prepare`` hook runs before the headers go out)."""
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
