"""What the ElevenLabs sockets share: who is connected, and errors before the upgrade.

Browsers cannot set headers on a WebSocket, so ElevenLabs also takes the key as the
``authorization`` query parameter and, on the TTS sockets, in the first message. The auth
middleware checks a header key and lets these paths through without one; ``SocketAuth`` checks
the rest here. A key that is presented must be valid; no key at all is refused, in the
protocol's own error shape, once the socket is open (a browser cannot read an HTTP status).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..errors import UnknownVoice, VoiceStreamError
from ..identity import policy
from ..identity.page_origins import defer_origin, require_origin
from ..protocols import elevenlabs as el
from ..protocols.elevenlabs_ws import InvalidApiKey, MissingApiKey, bearer_token
from ..rest.moderation import SPEAKING_WORKSPACE
from ..rest.resources import API_KEYS, METRICS
from ..store.keys import Principal
from ..store.usage import UsageKind
from .context import optional_principal
from .socket_registry import bind_socket_key
from .stream_admission import admit_stream

__all__ = ["Handler", "SocketAuth", "elevenlabs_errors"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def elevenlabs_errors(handler: Handler) -> Handler:
    """Answer errors raised before the upgrade in ElevenLabs' shape (an unknown voice is 404)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except VoiceStreamError as err:
            status = 404 if isinstance(err, UnknownVoice) else err.http_status
            request.app[METRICS].errors.labels(err.code).inc()
            return web.json_response(el.error_body(err, status=status), status=status)

    return wrapped


class SocketAuth:
    """Who is on the socket: the header key's principal (checked by the middleware), else the
    ``authorization`` query parameter's, else the key of the first message."""

    def __init__(self, request: web.Request) -> None:
        self._keys = request.app[API_KEYS]
        self._request = request
        self._path = request.path
        # The middleware's rule for this socket, applied to the keys it could not see.
        route = request.match_info.route.resource
        self._rule = policy.require_rule("GET", route.canonical if route is not None else "")
        self.principal: Principal | None = optional_principal(request)
        # A key may still come in the first message: its workspace's Origin list is checked
        # then (``_check``), in the protocol's error shape like any refused key.
        defer_origin(request)
        self._query_key = bearer_token(request.query.get("authorization", ""))
        # Scribe's browser clients use single-use tokens, which this server does not issue.
        self._token_sent = bool(request.query.get("token"))
        self._admission = contextlib.AsyncExitStack()

    async def connection(self) -> Principal | None:
        """The principal of the connection's own key; None when it came without one.

        Raises:
            InvalidApiKey: the query parameter's key is unknown or revoked.
        """
        if self.principal is None and self._query_key is not None:
            self.principal = await self._check(self._query_key)
        return self.principal

    async def require(self, message_key: str | None = None) -> Principal:
        """The connection's principal, else the one of a key sent in the first message.

        Raises:
            MissingApiKey: no key anywhere. InvalidApiKey: the key is unknown or revoked.
        """
        principal = await self.connection()
        if principal is not None:
            return principal
        if message_key is None:
            hint = " (single-use tokens are not supported here)" if self._token_sent else ""
            raise MissingApiKey(
                "missing API key: send the xi-api-key header, the authorization query "
                f"parameter, or xi_api_key in the first message{hint}"
            )
        self.principal = await self._check(message_key)
        return self.principal

    async def _check(self, key: str) -> Principal:
        principal = await self._keys.authenticate(key)
        if principal is None:
            raise InvalidApiKey("invalid or revoked API key")
        # The role rules the middleware applies to header keys (every socket acts).
        policy.check(principal, self._rule)
        await require_origin(self._request, principal.workspace_id)
        if principal.key_id is not None:  # always, for a key; user sessions have none
            bind_socket_key(self._request, principal.key_id)  # revoking the key closes it
        # Its text is moderated by this workspace's policy (server/text_screening.py).
        self._request[SPEAKING_WORKSPACE] = principal.workspace_id
        # The quota and stream-cap admission the limits middleware gives header keys.
        kinds: tuple[UsageKind, ...] = (
            ("stt_seconds",) if "/speech-to-text/" in self._path else ("tts_characters",)
        )
        await admit_stream(
            self._request, principal.workspace_id, kinds, self._admission, subject=principal
        )
        return principal

    async def release(self) -> None:
        """The socket has ended: give back the stream slot a key inside it took."""
        await self._admission.aclose()
