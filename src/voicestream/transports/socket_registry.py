"""Open sockets and WebRTC calls by who opened them: revoking a key, removing a member (or
making them a viewer), or the member signing out everywhere ends them.

A connection is opened by an API key, or by a member of a workspace: a signed-in user's access
token, or a ticket a user session minted. Each is checked when the connection opens; a socket
may then stream for an hour. Revocation and removal happen anywhere (``voicestream keys
revoke`` in another process, another server of the same database), so each server polls the
database about once a second for revoked keys, lapsed members and members who signed out
everywhere (``users.sessions_revoked_at``) among those holding its open connections, and closes
theirs: a socket gets the protocol's error event and close code 4401, a WebRTC call is hung up.
A sign-out ends what was opened before it only: each connection remembers when it opened, so a
socket of the session signed in afterwards stays. The check is one indexed query for each kind
in use, and none at all while nothing is open. A removal, a demotion or a sign-out made through
this process closes its connections here at once, without waiting for the poll
(``identity.members``' hook).

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from aiohttp import web

from ..errors import AuthError, VoiceStreamError
from ..identity.members import MEMBERS
from ..identity.tickets import Ticket
from ..protocols import elevenlabs_agents
from ..protocols.openai_realtime_events import ServerEvents, dump
from ..rest.resources import API_KEYS, POOL
from ..store import db
from ..store.keys import Principal
from ..store.members import MemberRepository, WorkspaceUser
from .context import PRINCIPAL
from .ws_common import close_with_error

__all__ = [
    "OPEN_SOCKETS",
    "POLL_INTERVAL_S",
    "OpenSockets",
    "Opener",
    "add_socket_registry",
    "bind_socket_key",
    "bind_ticket_minter",
    "lost_member_error",
    "revoked_key_error",
    "signed_out_error",
    "track_connection",
    "use_socket_closer",
]

log = logging.getLogger(__name__)

POLL_INTERVAL_S: Final = 1.0

Closer = Callable[[VoiceStreamError], Awaitable[None]]


def revoked_key_error() -> AuthError:
    return AuthError("the API key of this connection was revoked")


def lost_member_error() -> AuthError:
    return AuthError(
        "the member who opened this connection was removed from the workspace or may no "
        "longer use it"
    )


def signed_out_error() -> AuthError:
    return AuthError("the user who opened this connection signed out everywhere")


@dataclass(frozen=True, slots=True)
class Opener:
    """Who a connection speaks for: an API key, or a member (workspace, user), or both (a
    user's ticket minted with a key they made); neither for a public agent's visitor."""

    key_id: UUID | None = None
    member: WorkspaceUser | None = None

    @classmethod
    def of(cls, principal: Principal | None) -> Opener:
        if principal is None:
            return cls()
        member = (principal.workspace_id, principal.user_id) if principal.user_id else None
        return cls(principal.key_id, member)

    @classmethod
    def minter_of(cls, ticket: Ticket) -> Opener:
        member = None
        if ticket.user_id is not None:
            member = (UUID(ticket.workspace_id), ticket.user_id)
        return cls(ticket.key_id, member)


# Request-scoped: who the connection of this request speaks for, once a ticket said so.
_OPENER: web.RequestKey[Opener] = web.RequestKey("voicestream_connection_opener", Opener)


@dataclass(slots=True)
class _Connection:
    opener: Opener  # nobody until a key inside the socket says who it is
    close: Closer
    is_closed: Callable[[], bool]
    # Unix seconds, the clock that stamps ``users.sessions_revoked_at``: a sign-out after
    # this ends the connection, one before it (a socket of the next sign-in) does not.
    opened_at: float


class OpenSockets:
    """This process's open connections, by the key or the member that opened them."""

    def __init__(self) -> None:
        # By the object that stands for the connection (a socket, a request, a peer).
        self._connections: dict[int, _Connection] = {}

    def __len__(self) -> int:
        return len(self._connections)

    def add(
        self,
        handle: object,
        opener: Opener,
        close: Closer,
        is_closed: Callable[[], bool],
    ) -> None:
        self._connections[id(handle)] = _Connection(opener, close, is_closed, time.time())

    def bind(self, handle: object, opener: Opener) -> None:
        """A credential presented inside an already open socket: the socket is its now."""
        connection = self._connections.get(id(handle))
        if connection is not None:
            connection.opener = opener

    def use_closer(self, handle: object, close: Closer) -> None:
        connection = self._connections.get(id(handle))
        if connection is not None:
            connection.close = close

    def _forget_ended(self) -> None:
        ended = [h for h, c in self._connections.items() if c.is_closed()]
        for handle in ended:
            del self._connections[handle]

    def key_ids(self) -> set[UUID]:
        """The keys with open connections; connections that have ended are forgotten here."""
        self._forget_ended()
        return {c.opener.key_id for c in self._connections.values() if c.opener.key_id}

    def members(self) -> set[WorkspaceUser]:
        """The members (workspace, user) with open connections."""
        self._forget_ended()
        return {c.opener.member for c in self._connections.values() if c.opener.member}

    def member_openings(self) -> dict[UUID, float]:
        """By user with open connections as a member: when the oldest of them opened."""
        self._forget_ended()
        oldest: dict[UUID, float] = {}
        for c in self._connections.values():
            if c.opener.member is not None:
                user_id = c.opener.member[1]
                oldest[user_id] = min(c.opened_at, oldest.get(user_id, c.opened_at))
        return oldest

    async def close_keys(self, key_ids: Iterable[UUID]) -> int:
        """Close every open connection of these keys; returns how many were closed."""
        revoked = set(key_ids)
        return await self._close(lambda o: o.key_id in revoked, revoked_key_error)

    async def close_members(self, members: Iterable[WorkspaceUser]) -> int:
        """Close every open connection these members opened; returns how many were closed."""
        lost = set(members)
        return await self._close(lambda o: o.member in lost, lost_member_error)

    async def close_signed_out(self, signed_out_at: Mapping[UUID, float]) -> int:
        """Close every connection a user opened as a member before they signed out
        everywhere (user id -> unix seconds); returns how many were closed."""

        def before_sign_out(c: _Connection) -> bool:
            member = c.opener.member
            return member is not None and c.opened_at < signed_out_at.get(member[1], 0.0)

        return await self._close_where(before_sign_out, signed_out_error)

    async def _close(
        self, doomed_by: Callable[[Opener], bool], error: Callable[[], AuthError]
    ) -> int:
        return await self._close_where(lambda c: doomed_by(c.opener), error)

    async def _close_where(
        self, doomed_by: Callable[[_Connection], bool], error: Callable[[], AuthError]
    ) -> int:
        doomed = [
            (h, c) for h, c in self._connections.items() if doomed_by(c) and not c.is_closed()
        ]
        for handle, _ in doomed:
            del self._connections[handle]
        results = await asyncio.gather(
            *(c.close(error()) for _, c in doomed), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, ConnectionError):
                log.warning("closing a connection whose access ended failed: %r", result)
        return len(doomed)


OPEN_SOCKETS: web.AppKey[OpenSockets] = web.AppKey("voicestream_open_sockets", OpenSockets)


def add_socket_registry(app: web.Application) -> None:
    """Track sockets from the app's start; call after the runtime's cleanup context."""
    app[OPEN_SOCKETS] = OpenSockets()
    app.on_response_prepare.append(_register_socket)
    app.cleanup_ctx.append(_revocation_watcher)


def _opener(request: web.Request) -> Opener:
    return request.get(_OPENER) or Opener.of(request.get(PRINCIPAL))


def track_connection(
    request: web.Request, handle: object, close: Closer, is_closed: Callable[[], bool]
) -> None:
    """Register a connection that is not a WebSocket (a WebRTC call) under its opener."""
    opener = _opener(request)
    if (opener.key_id or opener.member) and OPEN_SOCKETS in request.app:
        request.app[OPEN_SOCKETS].add(handle, opener, close, is_closed)


def bind_socket_key(request: web.Request, key_id: UUID) -> None:
    """The socket of ``request`` turned out to be ``key_id``'s (a key sent inside it)."""
    _bind(request, Opener(key_id=key_id))


def bind_ticket_minter(request: web.Request, ticket: Ticket) -> None:
    """The connection of ``request``, opened with ``ticket``, speaks for who minted it: their
    key's revocation or their removal closes it. Before or after the socket opened alike."""
    _bind(request, Opener.minter_of(ticket))


def _bind(request: web.Request, opener: Opener) -> None:
    request[_OPENER] = opener
    if OPEN_SOCKETS in request.app:
        request.app[OPEN_SOCKETS].bind(request, opener)


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
    # By the request: a credential that arrives inside the socket finds it (``_bind``).
    request.app[OPEN_SOCKETS].add(
        request, _opener(request), _socket_closer(request.path, response), lambda: response.closed
    )


async def _revocation_watcher(app: web.Application) -> AsyncIterator[None]:
    sockets = app[OPEN_SOCKETS]

    async def close_member(workspace_id: UUID, user_id: UUID) -> None:
        closed = await sockets.close_members([(workspace_id, user_id)])
        if closed:
            log.info("closed %d connection(s) of a member who lost access", closed)

    # This process's own removals and demotions close at once; the poll covers the others.
    if MEMBERS in app:
        app[MEMBERS].on_access_lost.append(close_member)
    task = asyncio.create_task(_watch(app), name="key-revocation-watcher")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _watch(app: web.Application) -> None:
    sockets = app[OPEN_SOCKETS]
    keys = app[API_KEYS]
    members = MemberRepository(app[POOL])
    failing = False
    while True:
        await asyncio.sleep(POLL_INTERVAL_S)
        key_ids, members_open = sockets.key_ids(), sockets.members()
        if not key_ids and not members_open:
            continue
        openings = sockets.member_openings() if members_open else {}
        try:
            revoked = await keys.revoked_among(key_ids) if key_ids else set()
            lost = await members.lapsed_among(members_open) if members_open else set()
            signed_out = await members.signed_out_since(openings) if openings else {}
        except (VoiceStreamError, db.PostgresError, OSError, TimeoutError) as exc:
            # The database is away; the outage is reported where it is felt. Try again.
            if not failing:
                log.warning("cannot check for revoked keys and removed members: %s", exc)
            failing = True
            continue
        failing = False
        if revoked:
            closed = await sockets.close_keys(revoked)
            log.info("closed %d connection(s) of %d revoked key(s)", closed, len(revoked))
        if lost:
            closed = await sockets.close_members(lost)
            log.info("closed %d connection(s) of %d member(s) who lost access", closed, len(lost))
        if signed_out:
            closed = await sockets.close_signed_out(signed_out)
            log.info("closed %d connection(s) of %d user(s) signed out", closed, len(signed_out))
