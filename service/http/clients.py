"""Who is on the other end of a request: its address, scheme, host and base path.

A reverse proxy in TRUSTED_PROXIES is believed: the client is the last address of
``X-Forwarded-For`` (or ``Forwarded: for=``) that is not itself a trusted proxy, and the scheme,
host and base path come from ``X-Forwarded-Proto``/``-Host``/``-Prefix`` (or ``Forwarded``).
From any other address those headers change nothing but one thing: such a request is never
*local*. Local means a client on this machine talking to the service directly — a loopback peer,
no forwarding header, a loopback ``Host``, and nothing (HTTP/1.0, which nginx's ``proxy_pass``
speaks unless told otherwise, or a browser's ``Origin``/``Referer`` naming another address)
that says a proxy or another site stands in between.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from service.settings import is_loopback

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Headers a proxy adds. Any of them from an address that is not trusted makes a request remote.
FORWARDING_HEADERS = (
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Prefix",
    "X-Real-IP",
    "Via",
)
# A base path a proxy may announce: slash-separated plain segments.
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*/?$")


@dataclass(frozen=True, slots=True)
class Client:
    """What the service believes about a request's client.

    ``proxied``: it came through a trusted proxy (whose user header may be believed).
    ``local``: a client on this machine, talking to the service directly.
    """

    address: str
    scheme: str
    host: str
    prefix: str
    proxied: bool
    local: bool

    @property
    def origin(self) -> str:
        """``scheme://host`` as the client's browser names this service."""
        return f"{self.scheme}://{self.host}"


def client_of(request: web.BaseRequest, trusted: Sequence[Network]) -> Client:
    """The client of ``request``, believing forwarding headers only from ``trusted`` peers."""
    peer = request.remote or ""
    headers = request.headers
    host = headers.get("Host", "")
    scheme = "https" if request.secure else "http"
    proxy = bool(trusted) and _in(peer, tuple(trusted))
    if not any(name in headers for name in FORWARDING_HEADERS):
        # A trusted proxy that forwards nothing but its user header is still the proxy.
        local = _direct_local(request, peer)
        return Client(peer, scheme, host, "", proxied=proxy, local=local)
    if not proxy:
        return Client(peer, scheme, host, "", proxied=False, local=False)
    if "X-Forwarded-For" in headers or "Forwarded" not in headers:
        address = _forwarded_for(_values(request, "X-Forwarded-For"), trusted) or peer
        scheme = _scheme(_last(request, "X-Forwarded-Proto")) or scheme
        host = _host(_last(request, "X-Forwarded-Host")) or host
    else:
        address, scheme, host = _rfc7239(request, trusted, peer, scheme, host)
    prefix = _prefix(_last(request, "X-Forwarded-Prefix"))
    return Client(address, scheme, host, prefix, proxied=True, local=False)


# Asked of every request's peer, Host and the address the service listens on, which repeat:
# parsing an address each time was a fifth of a small request's own time.
cached_is_loopback = functools.lru_cache(maxsize=1024)(is_loopback)


def _direct_local(request: web.BaseRequest, peer: str) -> bool:
    if request.version < (1, 1) or not cached_is_loopback(peer):
        return False
    host = request.headers.get("Host", "")
    if not cached_is_loopback(hostname(host)):
        return False
    for name in ("Origin", "Referer"):
        seen = request.headers.get(name)
        if seen is not None and _authority(seen) != host.lower():
            return False
    return True


@functools.lru_cache(maxsize=1024)
def hostname(host: str) -> str:
    """The name part of a ``Host`` value (``[::1]:8080`` → ``::1``), lower-cased; "" if bad."""
    try:
        name = urlsplit(f"//{host}").hostname
    except ValueError:
        return ""
    return (name or "").lower()


def _authority(url: str) -> str | None:
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)
def _in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _values(request: web.BaseRequest, name: str) -> list[str]:
    return [item.strip() for value in request.headers.getall(name, ()) for item in value.split(",")]


def _last(request: web.BaseRequest, name: str) -> str | None:
    """The value the nearest proxy set (the last of a list)."""
    values = _values(request, name)
    return values[-1] if values and values[-1] else None


def _forwarded_for(hops: list[str], trusted: Sequence[Network]) -> str | None:
    """The client: the last hop that is not a trusted proxy (the first hop if all are)."""
    hops = [_bare(hop) for hop in hops if hop]
    for hop in reversed(hops):
        if not _in(hop, tuple(trusted)):
            return hop
    return hops[0] if hops else None


def _bare(hop: str) -> str:
    """An address without port or brackets (``[::1]:80`` → ``::1``, ``1.2.3.4:5`` → ``1.2.3.4``)."""
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


def _scheme(value: str | None) -> str | None:
    value = (value or "").lower()
    return value if value in ("http", "https") else None


def _host(value: str | None) -> str | None:
    return value if value and hostname(value) else None


def _prefix(value: str | None) -> str:
    if not value or not _PREFIX.match(value) or "//" in value or "/../" in f"{value}/":
        return ""
    return value.rstrip("/")


def _rfc7239(
    request: web.BaseRequest, trusted: Sequence[Network], peer: str, scheme: str, host: str
) -> tuple[str, str, str]:
    """Client, scheme and host from ``Forwarded`` (RFC 7239), nearest proxy last."""
    elements = request.forwarded
    address = _forwarded_for([e.get("for", "") for e in elements], trusted) or peer
    nearest = elements[-1] if elements else {}
    scheme = _scheme(nearest.get("proto")) or scheme
    host = _host(nearest.get("host")) or host
    return address, scheme, host
