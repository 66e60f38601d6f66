"""Shared pieces of the WebSocket handlers: limits, and ending a socket with a reason."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from ..config import Settings
from ..errors import VoiceStreamError
from ..protocols.native import error_event

__all__ = ["close_with_error", "open_websocket", "run_socket_tasks", "transport_limit"]

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


async def run_socket_tasks(
    ws: web.WebSocketResponse,
    coros: dict[str, Coroutine[Any, Any, None]],
    on_error: Callable[[VoiceStreamError], Awaitable[None]],
) -> None:
    """Run a socket's tasks until the first one ends, then close the socket normally.

    A ``VoiceStreamError`` from any task goes to ``on_error`` (which tells the peer, in its
    protocol's shape, and closes); a peer that vanished is not an error. The other tasks are
    cancelled and awaited either way, so nothing outlives the socket.
    """
    tasks = [asyncio.create_task(coro, name=name) for name, coro in coros.items()]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        await ws.close()
    except VoiceStreamError as err:
        await on_error(err)
    except ConnectionError:
        log.debug("socket closed by peer")
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
