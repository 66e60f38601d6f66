"""Shared pieces of the WebSocket handlers: limits, the one read loop, the one task supervisor,
ending a socket with a reason, and a deadline on every send.

Every server socket is opened here (``open_websocket``) as a ``DeadlineWebSocket``: a send
that the peer does not take within ``VOICESTREAM_WS_SEND_TIMEOUT_SECONDS`` (it stopped
reading, so its TCP window is full) raises ``ClientTooSlow``. The handler's usual error path
then tells the peer and closes with 1013; that close and its error event are queued behind
what the peer never read, so they get a short grace, after which the connection is cut.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ..config import Settings
from ..errors import ClientTooSlow, PayloadTooLarge, VoiceStreamError
from ..protocols.native import error_event
from .subprotocols import accepted_subprotocols

__all__ = [
    "DeadlineWebSocket",
    "cancel_tasks",
    "close_reason",
    "close_with_error",
    "open_websocket",
    "read_messages",
    "receive_message",
    "run_socket_tasks",
    "transport_limit",
]

log = logging.getLogger(__name__)


def transport_limit(settings: Settings) -> int:
    # aiohttp drops a connection whose message passes its own limit with a bare 1009. We let
    # messages up to 4x our limit through so that the common case (a little too big) gets a
    # proper error event first; beyond that aiohttp's bare close still bounds memory.
    return settings.max_ws_message_bytes * 4


# How long the last words (error event, close frame) to a peer that stopped reading may wait,
# and how long its connection may then linger to deliver them, should it read again.
_LAST_WORDS_S = 1.0
_CLOSE_HANDSHAKE_S = 10.0  # aiohttp's default wait for the peer's answering close frame


async def open_websocket(
    request: web.Request, settings: Settings, plain_protocols: Sequence[str] = ()
) -> web.WebSocketResponse:
    """Upgrade ``request``; ``plain_protocols``: subprotocols the endpoint speaks (besides the
    client's key subprotocol, which is always accepted)."""
    ws = DeadlineWebSocket(
        send_timeout=settings.ws_send_timeout_seconds,
        protocols=accepted_subprotocols(request, plain_protocols),
        max_msg_size=transport_limit(settings),
        heartbeat=settings.ws_heartbeat_seconds,
        # Audio does not compress, and deflate is an amplification vector.
        compress=False,
    )
    await ws.prepare(request)
    return ws


class DeadlineWebSocket(web.WebSocketResponse):
    """A server socket whose sends give up on a peer that does not read.

    aiohttp holds a sender until the peer's TCP window opens again; a peer that never reads
    (a frozen tab, a stuck SDK) would hold the handler and the session behind it until the
    heartbeat noticed, if ever. Here a send that waits longer than ``send_timeout`` raises
    ``ClientTooSlow``; after that every send and the close get only a short grace, and the
    connection is cut once the grace is over.
    """

    def __init__(self, *, send_timeout: float, **options: Any) -> None:
        super().__init__(timeout=_CLOSE_HANDSHAKE_S, **options)
        self._send_timeout = send_timeout
        self._stalled = False
        self._connection: RequestHandler | None = None
        self._cut_scheduled = False

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter:
        self._connection = request.protocol
        return await super().prepare(request)

    async def send_frame(
        self, message: bytes, opcode: WSMsgType, compress: int | None = None
    ) -> None:
        await self._bounded(super().send_frame(message, opcode, compress))

    async def send_str(self, data: str, compress: int | None = None) -> None:
        await self._bounded(super().send_str(data, compress))

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None:
        await self._bounded(super().send_bytes(data, compress))

    async def close(
        self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True
    ) -> bool:
        # Both halves of the close handshake wait on the peer: taking our close frame (the
        # drain) and answering it.
        deadline = asyncio.timeout(
            _LAST_WORDS_S if self._stalled else self._send_timeout + _CLOSE_HANDSHAKE_S
        )
        try:
            async with deadline:
                return await super().close(
                    code=code, message=message, drain=drain and not self._stalled
                )
        except TimeoutError:
            if not deadline.expired():
                raise
            self._stalled = True
            return True  # aiohttp closed the transport when the wait was cut short
        finally:
            if self._stalled:
                self._cut_later()

    async def _bounded(self, send: Coroutine[Any, Any, None]) -> None:
        if self._stalled and self.closed:
            send.close()  # never started: nothing was written
            raise ConnectionResetError("the peer stopped reading; the socket is closed")
        # aiohttp writes the whole frame before it waits for the peer's window, so a send cut
        # short here leaves no partial frame behind.
        deadline = asyncio.timeout(_LAST_WORDS_S if self._stalled else self._send_timeout)
        try:
            async with deadline:
                await send
        except TimeoutError:
            if not deadline.expired():
                raise
            if self._stalled:
                raise ConnectionResetError("the peer stopped reading") from None
            self._stalled = True
            log.info("peer took nothing for %.3g s; closing its socket", self._send_timeout)
            raise ClientTooSlow(
                f"the client read nothing for {self._send_timeout:g} s: it cannot keep up"
            ) from None

    def _cut_later(self) -> None:
        """Drop the connection after the grace: a closing transport still waits to flush what
        the peer never read, and would wait for as long as the peer keeps it open."""
        if not self._cut_scheduled:
            self._cut_scheduled = True
            asyncio.get_running_loop().call_later(_LAST_WORDS_S, self._cut)

    def _cut(self) -> None:
        # The connection forgets its transport once it is lost (the peer read everything).
        transport = self._connection.transport if self._connection is not None else None
        if transport is not None:
            transport.abort()


async def close_with_error(
    ws: web.WebSocketResponse,
    err: VoiceStreamError,
    event: Callable[[VoiceStreamError], str] | None = error_event,
    *,
    code: int | None = None,
    reason: str | None = None,
) -> None:
    """Tell the client why in its protocol's shape, then close.

    ``event`` builds the protocol's error event (ours by default; None for a protocol that has
    none, such as the carriers'); ``code`` defaults to the error's close code and ``reason``
    to its code.
    """
    if ws.closed:
        return
    if event is not None:
        try:
            await ws.send_str(event(err))
        except (ConnectionError, RuntimeError):
            log.debug("peer gone before the error event could be sent")
    await ws.close(
        code=err.ws_close_code if code is None else code, message=close_reason(reason or err.code)
    )


def close_reason(text: str) -> bytes:
    """``text`` cut to fit a close frame, on a character boundary: a reason cut inside a UTF-8
    character is invalid, and the client fails the connection over it (1007) instead of
    reading why it was closed."""
    return text.encode()[:_MAX_REASON_BYTES].decode("utf-8", "ignore").encode()


_MAX_REASON_BYTES = 120  # a close frame's payload is 125 bytes, the code's two included


_NO_LIMIT = 1 << 62  # past any message aiohttp lets through (``transport_limit``)


async def receive_message(
    ws: web.WebSocketResponse, limit: int, *, within: float | None = None
) -> str | bytes:
    """The next text (``str``) or binary (``bytes``) message from the peer.

    Raises:
        ConnectionResetError: the peer closed the socket, or the transport failed.
        PayloadTooLarge: a message over ``limit`` bytes.
        TimeoutError: nothing arrived within ``within`` seconds.
    """
    msg = await ws.receive(timeout=within)
    if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
        data: str | bytes = msg.data
        if len(data) > limit:
            raise PayloadTooLarge(f"message of {len(data)} bytes exceeds the limit of {limit}")
        return data
    if msg.type == WSMsgType.ERROR:
        log.debug("socket transport failed: %s", ws.exception())
    raise ConnectionResetError("the client closed the socket")


async def read_messages(
    ws: web.WebSocketResponse,
    limit: int,
    handle: Callable[[str | bytes], Awaitable[bool]],
    *,
    too_large: Callable[[str | bytes], Awaitable[None]] | None = None,
) -> bool:
    """Hand each message to ``handle`` (the protocol's parser and dispatcher) until it returns
    True: the protocol's own end. Returns False when the peer closed the socket first.

    A message over ``limit`` bytes raises ``PayloadTooLarge``; a protocol whose session
    survives one (it answers with an error event and reads on) passes ``too_large``, which
    gets the message instead and may raise to end the socket after all. aiohttp's own limit
    (``transport_limit``) still bounds what such a message may hold.

    Raises whatever ``handle`` and ``too_large`` raise.
    """
    while True:
        try:
            data = await receive_message(ws, limit if too_large is None else _NO_LIMIT)
        except ConnectionResetError:
            return False
        if too_large is not None and len(data) > limit:
            await too_large(data)
        elif await handle(data):
            return True


async def run_socket_tasks(
    ws: web.WebSocketResponse,
    coros: dict[str, Coroutine[Any, Any, None]],
    on_error: Callable[[VoiceStreamError], Awaitable[None]],
    *,
    until: str | None = None,
    finish: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run a socket's tasks, then close the socket normally.

    The socket is done when the task named ``until`` ends (others may end before it, as a
    reader does at the protocol's "end" while audio still goes out), or, without ``until``,
    when the first task ends. ``finish`` then sends the protocol's last words before the close.

    A ``VoiceStreamError`` from any task goes to ``on_error`` (which tells the peer, in its
    protocol's shape, and closes); a peer that vanished is not an error. The other tasks are
    cancelled and awaited either way, so nothing outlives the socket.
    """
    tasks = {name: asyncio.create_task(coro, name=name) for name, coro in coros.items()}
    if until is not None and until not in tasks:
        raise ValueError(f"no task named {until!r}")
    seen: set[asyncio.Task[None]] = set()  # whose outcome we took (and acted on) here
    try:
        pending = set(tasks.values())
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                seen.add(task)
                task.result()
            if until is None or tasks[until] in done:
                break
        if finish is not None:
            await finish()
        await ws.close()
    except VoiceStreamError as err:
        await on_error(err)
    except ConnectionError:
        log.debug("socket closed by peer")
    except Exception:
        # A bug: logged with its traceback, and the peer told in its protocol's shape (close
        # 1011) instead of an HTTP 500 written into an upgraded socket.
        log.exception("socket task failed")
        await on_error(VoiceStreamError("internal server error"))
    finally:
        await cancel_tasks([t for t in tasks.values() if t not in seen])


async def cancel_tasks(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they have ended.

    Their cancellation is what we asked for and stays quiet; a task that failed on its own
    first is reported, not swallowed: a bug as an error with its traceback, a client's error
    or a vanished peer at debug level (the socket is ending anyway).
    """
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    await asyncio.wait(tasks)  # waits without raising what the tasks raised
    for task in tasks:
        if task.cancelled() or (exc := task.exception()) is None:
            continue
        if isinstance(exc, VoiceStreamError | ConnectionError):
            log.debug("task %s ended with %r while the socket closed", task.get_name(), exc)
        else:
            log.error("task %s failed", task.get_name(), exc_info=exc)
