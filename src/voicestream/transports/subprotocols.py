"""Which WebSocket subprotocols a socket accepts, so that a key offered as one is answered.

Browsers cannot set headers on a WebSocket, so SDKs offer the API key as a subprotocol
(OpenAI's ``openai-insecure-api-key.<key>``, ElevenLabs' ``bearer.<key>``), usually beside a
plain one (``realtime``, ``convai``) that the server selects. When a client offers the key
alone, a server that selects nothing fails the browser's handshake, and aiohttp logs a warning
that quotes every offered protocol, key included. Selecting the key protocol itself answers
the client with what it sent and leaves nothing to log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aiohttp import hdrs, web

__all__ = ["KEY_SUBPROTOCOL_PREFIXES", "accepted_subprotocols", "offered_subprotocols"]

KEY_SUBPROTOCOL_PREFIXES: Final = ("openai-insecure-api-key.", "bearer.")


def offered_subprotocols(request: web.Request) -> list[str]:
    header = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "")
    return [p.strip() for p in header.split(",") if p.strip()]


def accepted_subprotocols(request: web.Request, plain: Sequence[str] = ()) -> tuple[str, ...]:
    """``plain``, plus the client's key subprotocol when it offered no plain one.

    aiohttp selects the first offered protocol that is in this list, in the client's order, so
    a plain protocol always wins when the client offered one.
    """
    offered = offered_subprotocols(request)
    if any(p in plain for p in offered):
        return tuple(plain)
    for protocol in offered:
        if protocol.lower().startswith(KEY_SUBPROTOCOL_PREFIXES):
            return (*plain, protocol)
    return tuple(plain)
