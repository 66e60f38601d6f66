"""Open sockets and WebRTC calls by the API key that opened them: revoking a key ends them.

A key is checked when a connection opens; a socket may then stream for an hour. Revocation
happens anywhere (``voicestream keys revoke`` in another process, another server of the same
database), so each server polls the database about once a second for revoked keys among those
holding its open connections, and closes theirs: a socket gets the protocol's error event and
close code 4401, a WebRTC call is hung up. The check is one indexed query over the keys in
use, and none at all while nothing is open.

Sockets register themselves through ``on_response_prepare`` (every WebSocket handler prepares
its response), so no handler has to remember to; sockets whose key arrives later, inside the
socket (ElevenLabs' first message), and WebRTC calls register through ``OPEN_SOCKETS``.

The error a revoked socket hears must be in its own protocol's shape. A handler whose protocol
has its own error sender hands it over with ``use_socket_closer`` once the socket is open (the
ElevenLabs TTS and Scribe sockets, the carriers' media streams, which have no error message at
all); the rest get the closer chosen here by path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from aiohttp import web

from ..errors import AuthError, VoiceStreamError
from ..protocols import elevenlabs_agents
from ..protocols.openai_realtime_events import ServerEvents, dump
from ..store import db
from .context import PRINCIPAL, RUNTIME
from .ws_common import close_with_error

__all__ = [
    "OPEN_SOCKETS",
    "POLL_INTERVAL_S",
    "OpenSockets",
    "add_socket_registry",
    "bind_socket_key",
    "revoked_key_error",
    "track_connection",
    "use_socket_closer",
]

log = logging.getLogger(__name__)

POLL_INTERVAL_S: Final = 1.0

Closer = Callable[[VoiceStreamError], Awaitable[None]]


def revoked_key_error() -> AuthError:
    return AuthError("the API key of this connection was revoked")


@dataclass(slots=True)
class _Connection:
    key_id: UUID | None  # None until a key inside the socket says who it is
    close: Closer
    is_closed: Callable[[], bool]


class OpenSockets:
    """This process's open connections, by the key that opened them."""

    def __init__(self) -> None:
        # By the object that stands for the connection (a socket, a request, a peer).
        self._connections: dict[int, _Connection] = {}

    def __len__(self) -> int:
        return len(self._connections)

    def add(
        self,
        handle: object,
        key_id: UUID | None,
        close: Closer,
        is_closed: Callable[[], bool],
    ) -> None:
        self._connections[id(handle)] = _Connection(key_id, close, is_closed)

    def bind(self, handle: object, key_id: UUID) -> None:
        """A key presented inside an already open socket: the socket is that key's now."""
        connection = self._connections.get(id(handle))
        if connection is not None:
            connection.key_id = key_id

    def use_closer(self, handle: object, close: Closer) -> None:
        connection = self._connections.get(id(handle))
        if connection is not None:
            connection.close = close

    def key_ids(self) -> set[UUID]:
        """The keys with open connections; connections that have ended are forgotten here."""
        ended = [h for h, c in self._connections.items() if c.is_closed()]
        for handle in ended:
            del self._connections[handle]
        return {c.key_id for c in self._connections.values() if c.key_id is not None}

    async def close_keys(self, key_ids: Iterable[UUID]) -> int:
        """Close every open connection of these keys; returns how many were closed."""
        revoked = set(key_ids)
        doomed = [
            (h, c)
            for h, c in self._connections.items()
            if c.key_id in revoked and not c.is_closed()
        ]
        for handle, _ in doomed:
            del self._connections[handle]
        results = await asyncio.gather(
            *(c.close(revoked_key_error()) for _, c in doomed), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, ConnectionError):
                log.warning("closing a revoked key's connection failed: %r", result)
        return len(doomed)


OPEN_SOCKETS: web.AppKey[OpenSockets] = web.AppKey("voicestream_open_sockets", OpenSockets)


def add_socket_registry(app: web.Application) -> None:
    """Track sockets from the app's start; call after the runtime's cleanup context."""
    app[OPEN_SOCKETS] = OpenSockets()
    app.on_response_prepare.append(_register_socket)
    app.cleanup_ctx.append(_revocation_watcher)


def track_connection(
    request: web.Request, handle: object, close: Closer, is_closed: Callable[[], bool]
) -> None:
    """Register a connection that is not a WebSocket (a WebRTC call) under the request's key."""
    principal = request.get(PRINCIPAL)
    if principal is not None and OPEN_SOCKETS in request.app:
        request.app[OPEN_SOCKETS].add(handle, principal.key_id, close, is_closed)


def bind_socket_key(request: web.Request, key_id: UUID) -> None:
    """The socket of ``request`` turned out to be ``key_id``'s (a key sent inside it)."""
    if OPEN_SOCKETS in request.app:
        request.app[OPEN_SOCKETS].bind(request, key_id)


def use_socket_closer(request: web.Request, close: Closer) -> None:
    """The open socket of ``request`` is closed with ``close``: its protocol's error sender."""
    if OPEN_SOCKETS in request.app:
        request.app[OPEN_SOCKETS].use_closer(request, close)


# The protocol's own error event before the close, for clients that read it.
def _socket_closer(path: str, ws: web.WebSocketResponse) -> Closer:
    async def close(err: VoiceStreamError) -> None:
        if path.startswith("/openai/"):
            await _send_then_close(ws, dump(ServerEvents("ga").error(err)), err)
        elif path == "/elevenlabs/v1/convai/conversation":
            event = elevenlabs_agents.error_for(err, close_code=err.ws_close_code)
            await _send_then_close(ws, event, err)
        else:
            await close_with_error(ws, err)

    return close


async def _send_then_close(ws: web.WebSocketResponse, event: str, err: VoiceStreamError) -> None:
    if ws.closed:
        return
    with contextlib.suppress(ConnectionError, RuntimeError):  # the peer may be gone already
        await ws.send_str(event)
    await ws.close(code=err.ws_close_code, message=err.code.encode()[:120])


async def _register_socket(request: web.Request, response: web.StreamResponse) -> None:
    if not isinstance(response, web.WebSocketResponse) or OPEN_SOCKETS not in request.app:
        return
    principal = request.get(PRINCIPAL)
    # By the request: a key that arrives inside the socket finds it (bind_socket_key).
    request.app[OPEN_SOCKETS].add(
        request,
        principal.key_id if principal is not None else None,
        _socket_closer(request.path, response),
        lambda: response.closed,
    )


async def _revocation_watcher(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_watch(app), name="key-revocation-watcher")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _watch(app: web.Application) -> None:
    sockets = app[OPEN_SOCKETS]
    keys = app[RUNTIME].keys
    failing = False
    while True:
        await asyncio.sleep(POLL_INTERVAL_S)
        key_ids = sockets.key_ids()
        if not key_ids:
            continue
        try:
            revoked = await keys.revoked_among(key_ids)
        except (VoiceStreamError, db.PostgresError, OSError, TimeoutError) as exc:
            # The database is away; the outage is reported where it is felt. Try again.
            if not failing:
                log.warning("cannot check for revoked keys: %s", exc)
            failing = True
            continue
        failing = False
        if revoked:
            closed = await sockets.close_keys(revoked)
            log.info("closed %d connection(s) of %d revoked key(s)", closed, len(revoked))
