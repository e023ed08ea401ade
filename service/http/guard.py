"""Requests that change state come from this service's own page or from a script, never from
another site or through a rebound DNS name.

- The ``Host`` (as the client sent it, or as a trusted proxy forwards it) must be a loopback
  name, PUBLIC_URL's host, or a host a trusted proxy forwarded (the proxy decides which names
  reach the service).
- A browser says where a request comes from: ``Sec-Fetch-Site`` must then be ``same-origin``;
  a browser too old to send it must send an ``Origin`` that is this service's (its host as the
  client named it, or PUBLIC_URL). Scripts send neither and prove themselves with a token.

``Sec-Fetch-Site`` is set by the browser and no page can forge it, so it holds behind a proxy
that rewrites ``Host`` (nginx's bare ``proxy_pass``), where ``Origin`` alone would not match.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from service.http.clients import Client, hostname
from service.settings import is_loopback


def check_same_origin(request: web.Request, client: Client, public_url: str | None) -> None:
    """Raise 403 unless ``request`` may change state as far as its origin goes."""
    name = hostname(client.host)
    public = urlsplit(public_url) if public_url else None
    if not (is_loopback(name) or client.proxied or (public and name == public.hostname)):
        raise web.HTTPForbidden(reason="requests to this host name are not accepted")
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site.lower() not in ("same-origin", "none"):
            raise web.HTTPForbidden(reason="cross-origin requests are not accepted")
        return
    origin = request.headers.get("Origin")
    if origin is None:
        return
    allowed = {client.origin.lower()}
    if public is not None:
        allowed.add(f"{public.scheme}://{public.netloc}".lower())
    if origin.lower() not in allowed and not _same_authority(origin, client.host):
        raise web.HTTPForbidden(reason="cross-origin requests are not accepted")


def _same_authority(origin: str, host: str) -> bool:
    """An ``Origin`` naming the same host and port, over http or https (the scheme a proxy in
    front may terminate is not always known)."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()
