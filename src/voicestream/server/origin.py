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

Each workspace may list more pages, for what acts for it alone (``identity/page_origins.py``).
A page these rules do not know is let through with its origin pending when the request may act
for a workspace, and refused unless a workspace it acts for lists it: ``require_origin`` in the
handler settles it, and an answer (or an upgrade) with the origin still pending is a 403. The
widget script, the demo page and the WebRTC preflight name no workspace and carry no
credential: a page that some workspace lists may have them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from ..config import Settings
from ..errors import VoiceStreamError
from ..identity.page_origins import (
    PAGE_ORIGIN,
    PAGE_ORIGINS,
    PageOrigin,
    PageOrigins,
    origin_refused,
)
from ..rest.resources import POOL, SETTINGS

__all__ = ["BROWSER_PATHS", "add_page_origins", "origin_allowed", "origin_middleware"]

# Besides every WebSocket upgrade.
BROWSER_PATHS: Final = frozenset({"/v1/convai/webrtc/offer", "/widget.js", "/demo"})
_OFFER: Final = "/v1/convai/webrtc/offer"
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


def _acts_for_no_workspace(request: web.Request) -> bool:
    return request.path in ("/widget.js", "/demo") or (
        request.path == _OFFER and request.method == "OPTIONS"
    )


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or not _browser_facing(request):
        return await handler(request)
    settings = request.app[SETTINGS]
    listed = settings.allowed_origins
    allowed = frozenset(listed.split(",")) if listed else frozenset()
    if settings.public_origin is not None:
        allowed |= {settings.public_origin}
    if origin_allowed(origin, _own_hosts(request, settings, origin), allowed):
        return await handler(request)
    if _acts_for_no_workspace(request):
        if await request.config_dict[PAGE_ORIGINS].listed_anywhere(origin):
            return await handler(request)
        raise origin_refused(origin)
    pending = request[PAGE_ORIGIN] = PageOrigin(origin)
    # Until a workspace has allowed the page, it learns nothing but this refusal (a socket
    # that checks inside itself has upgraded: what it refuses, it says in its protocol).
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and pending.allowed_for is None:
            raise origin_refused(origin) from None
        raise
    except VoiceStreamError:
        if pending.allowed_for is None:
            raise origin_refused(origin) from None
        raise
    upgraded = isinstance(response, web.WebSocketResponse) and response.prepared
    if pending.allowed_for is None and not upgraded:
        raise origin_refused(origin)
    return response


async def _refuse_unsettled_upgrade(request: web.Request, response: web.StreamResponse) -> None:
    # Runs before the 101 is written: a socket handler that never learnt (or never checked)
    # the workspace its page acts for fails closed, before the upgrade.
    pending = request.get(PAGE_ORIGIN)
    if not isinstance(response, web.WebSocketResponse) or pending is None:
        return
    if pending.allowed_for is not None:
        return
    # A socket that learns its workspace from a message inside it opens for a page that some
    # workspace lists; that message's check decides. A page nobody lists is refused here.
    if pending.checked_inside and await request.config_dict[PAGE_ORIGINS].listed_anywhere(
        pending.origin
    ):
        return
    raise origin_refused(pending.origin)


async def _page_origins(app: web.Application) -> AsyncIterator[None]:
    app[PAGE_ORIGINS] = PageOrigins(app[POOL])
    yield


def add_page_origins(app: web.Application) -> None:
    """Workspaces' own Origin lists; call after the runtime's cleanup context and before the
    socket registry (a refused upgrade is never registered)."""
    app.on_response_prepare.append(_refuse_unsettled_upgrade)
    app.cleanup_ctx.append(_page_origins)
