"""Who may do what, by role: the one rule every route goes through, compatibility ones included.

Pure, and below every transport: the auth middleware asks ``check`` for every request made
with a key, before the handler runs (so before any WebSocket upgrade), and
``elevenlabs_sockets.SocketAuth`` asks it for the keys that ElevenLabs' sockets take in the
query or the first message.

A viewer reads: GET and HEAD of what is stored (agents, documents, conversations, voices,
models, history items and their audio, the account), and the ElevenLabs history download, a
POST that only reads. Everything else acts, and is refused: creating, changing or deleting
anything, synthesizing, transcribing, opening a socket (every socket acts: it synthesizes,
transcribes or holds a conversation) and minting credentials (signed URLs, the answer webhooks'
call tickets). The audit log is for owners and admins alone. Finer rules (an editor's writes)
stay with the resource (``rest/agents.py``).
"""

from __future__ import annotations

import re
from typing import Final

from ..errors import Forbidden
from ..store.keys import Principal

__all__ = ["check", "is_read"]

_READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# GET routes that act: they mint credentials a conversation can be opened with.
_ACTING_GETS: Final = re.compile(
    r"/elevenlabs/v1/convai/conversation/get[-_]signed[-_]url|/v1/telephony/vonage/answer"
)
# POST routes that only read what is stored.
_READING_POSTS: Final = frozenset({"/elevenlabs/v1/history/download"})
# Routes for owners and admins only, reads included: the audit log shows who did what.
_ADMIN_ONLY: Final = re.compile(r"/v1/audit-logs(/.*)?")


def is_read(method: str, path: str, *, websocket: bool) -> bool:
    """Whether the request only reads (``websocket``: it asks for an upgrade)."""
    if websocket:
        return False
    if method in _READ_METHODS:
        return _ACTING_GETS.fullmatch(path) is None
    return method == "POST" and path in _READING_POSTS


def check(principal: Principal, method: str, path: str, *, websocket: bool) -> None:
    """Raises ``Forbidden`` when ``principal`` may not make this request."""
    if _ADMIN_ONLY.fullmatch(path) and not principal.has_role("admin"):
        raise Forbidden(
            f"{path} needs the admin role or above; this role is {principal.role}",
            details={"role": principal.role, "required": "admin"},
        )
    if principal.role == "viewer" and not is_read(method, path, websocket=websocket):
        what = "open a socket" if websocket else f"{method} {path}"
        who = "viewer key" if principal.key_id is not None else "viewer"
        raise Forbidden(
            f"a {who} is read-only and may not {what}; it needs the editor role or above",
            details={"role": principal.role, "required": "editor"},
        )
