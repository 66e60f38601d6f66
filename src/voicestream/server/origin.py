"""Which web pages may use the browser-facing endpoints: the ``Origin`` allow-list.

A WebSocket is not covered by CORS: any page on any site can open one to this server, and a
visitor's browser would carry that page's traffic (a public agent's minutes, a ticket lifted
from the embedding site). So every socket, the WebRTC signalling and the widget check the
``Origin`` header browsers always send: the server's own origin is allowed, and so are those of
``VOICESTREAM_ALLOWED_ORIGINS`` (``*``: any). A request without ``Origin`` comes from a server
or an SDK, not a page, and is unaffected. A refused page gets 403 ``forbidden`` before any
upgrade.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from ..errors import Forbidden
from ..transports.context import RUNTIME

__all__ = ["BROWSER_PATHS", "origin_allowed", "origin_middleware"]

# Besides every WebSocket upgrade.
BROWSER_PATHS: Final = frozenset({"/v1/convai/webrtc/offer", "/widget.js", "/demo"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


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

    ``own_hosts`` are Host header values (a proxy's ``X-Forwarded-Host`` included); ``allowed``
    holds normalized origins as ``Settings.allowed_origins`` keeps them.
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


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or not _browser_facing(request):
        return await handler(request)
    listed = request.app[RUNTIME].settings.allowed_origins
    allowed = frozenset(listed.split(",")) if listed else frozenset()
    forwarded = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    if not origin_allowed(origin, [request.host, forwarded], allowed):
        raise Forbidden(
            f"pages from origin {origin[:200]!r} may not use this endpoint; "
            "the server's VOICESTREAM_ALLOWED_ORIGINS lists the sites that may",
            details={"origin": origin[:200]},
        )
    return await handler(request)
