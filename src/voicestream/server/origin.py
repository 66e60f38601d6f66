"""Which web pages may use the browser-facing endpoints: the ``Origin`` allow-list.

A WebSocket is not covered by CORS: any page on any site can open one to this server, and a
visitor's browser would carry that page's traffic (a public agent's minutes, a ticket lifted
from the embedding site). So every socket, the WebRTC signalling and the widget check the
``Origin`` header browsers always send: the server's own origin is allowed, and so are those of
``VOICESTREAM_ALLOWED_ORIGINS`` (``*``: any). A request without ``Origin`` comes from a server
or an SDK, not a page, and is unaffected. A refused page gets 403 ``forbidden`` before any
upgrade.

The server's own origin is the ``Host`` a browser sent, which a page cannot choose. Behind a
proxy that rewrites ``Host``, either ``VOICESTREAM_PUBLIC_ORIGIN`` names it (and ``Host`` is no
longer consulted) or ``VOICESTREAM_TRUST_FORWARDED_HEADERS`` lets the proxy's
``X-Forwarded-Host``/``-Proto`` count too. Both are off by default: without a proxy that
overwrites them, any client can send those headers.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from ..config import Settings
from ..errors import Forbidden
from ..transports.context import RUNTIME

__all__ = ["BROWSER_PATHS", "origin_allowed", "origin_middleware"]

# Besides every WebSocket upgrade.
BROWSER_PATHS: Final = frozenset({"/v1/convai/webrtc/offer", "/widget.js", "/demo"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_SECURE: Final = {"http": False, "https": True, "ws": False, "wss": True}


def _endpoint(scheme: str, netloc: str) -> tuple[str, int] | None:
    """(host, port) of a netloc, the port defaulted from the scheme; None if malformed."""
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme, 0)


def origin_allowed(origin: str, own_hosts: list[str], allowed: frozenset[str]) -> bool:
    """Whether a page of ``origin`` may call: listed (or ``*``), or one of the server's hosts.

    ``own_hosts`` are Host header values (a trusted proxy's ``X-Forwarded-Host`` included);
    ``allowed`` holds normalized origins as ``Settings.allowed_origins`` keeps them.
    """
    normalized = origin.strip().lower().rstrip("/")
    if "*" in allowed or normalized in allowed:
        return True
    parts = urlsplit(normalized)
    if parts.scheme not in _DEFAULT_PORTS or parts.path or parts.query:
        return False  # "null" (sandboxed frames, file: pages) and anything malformed
    page = _endpoint(parts.scheme, parts.netloc)
    return page is not None and any(
        _endpoint(parts.scheme, host) == page for host in own_hosts if host
    )


def _browser_facing(request: web.Request) -> bool:
    return (
        request.path in BROWSER_PATHS
        or request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
    )


def _first(request: web.Request, header: str) -> str:
    return request.headers.get(header, "").split(",")[0].strip()


def _own_hosts(request: web.Request, settings: Settings, origin: str) -> list[str]:
    """The hosts a page must be from to count as the server's own (none: public_origin)."""
    if settings.public_origin is not None:
        return []
    if not settings.trust_forwarded_headers:
        return [request.host]
    forwarded = _first(request, "X-Forwarded-Host")
    proto = _first(request, "X-Forwarded-Proto").lower()
    page_scheme = urlsplit(origin.strip().lower()).scheme
    if proto and _SECURE.get(proto) != _SECURE.get(page_scheme):
        # The proxy was reached over the other scheme: another origin than this page's.
        return [request.host]
    return [request.host, forwarded]


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or not _browser_facing(request):
        return await handler(request)
    settings = request.app[RUNTIME].settings
    listed = settings.allowed_origins
    allowed = frozenset(listed.split(",")) if listed else frozenset()
    if settings.public_origin is not None:
        allowed |= {settings.public_origin}
    if not origin_allowed(origin, _own_hosts(request, settings, origin), allowed):
        raise Forbidden(
            f"pages from origin {origin[:200]!r} may not use this endpoint; "
            "the server's VOICESTREAM_ALLOWED_ORIGINS lists the sites that may",
            details={"origin": origin[:200]},
        )
    return await handler(request)
