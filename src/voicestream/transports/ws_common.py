"""Shared pieces of the WebSocket handlers: limits, and ending a socket with a reason."""

from __future__ import annotations

import logging

from aiohttp import web

from ..config import Settings
from ..errors import VoiceStreamError
from ..protocols.native import error_event

__all__ = ["close_with_error", "open_websocket", "transport_limit"]

log = logging.getLogger(__name__)


def transport_limit(settings: Settings) -> int:
    # aiohttp drops a connection whose message passes its own limit with a bare 1009. We let
    # messages up to 4x our limit through so that the common case (a little too big) gets a
    # proper error event first; beyond that aiohttp's bare close still bounds memory.
    return settings.max_ws_message_bytes * 4


async def open_websocket(request: web.Request, settings: Settings) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(
        max_msg_size=transport_limit(settings),
        heartbeat=settings.ws_heartbeat_seconds,
        # Audio does not compress, and deflate is an amplification vector.
        compress=False,
    )
    await ws.prepare(request)
    return ws


async def close_with_error(ws: web.WebSocketResponse, err: VoiceStreamError) -> None:
    """Tell the client why in the protocol's shape, then close with the error's code."""
    if ws.closed:
        return
    try:
        await ws.send_str(error_event(err))
    except (ConnectionError, RuntimeError):
        log.debug("peer gone before the error event could be sent")
    await ws.close(code=err.ws_close_code, message=err.code.encode()[:120])
