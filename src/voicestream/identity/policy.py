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
call tickets). The audit log, API keys and changes to a workspace's members are for owners
and admins alone; any member may list the members. Finer rules (an editor's writes, what an
admin may not do to an owner) stay with the resource (``rest/agents.py``,
``identity/members.py``).

A key may also be limited to scopes: each route belongs to one family (``scope_of``), and a
key without that family's scope is refused whatever its role. A few routes that only describe
the server (voices, models, the account) need no scope; a route this table does not know needs
``admin``, so a new route is closed to limited keys until someone says which family it is in.
"""

from __future__ import annotations

import re
from typing import Final

from ..errors import Forbidden
from ..store.keys import Principal, Scope

__all__ = ["check", "is_read", "scope_of"]

_READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# GET routes that act: they mint credentials a conversation can be opened with.
_ACTING_GETS: Final = re.compile(
    r"/elevenlabs/v1/convai/conversation/get[-_]signed[-_]url|/v1/telephony/vonage/answer"
)
# POST routes that only read what is stored.
_READING_POSTS: Final = frozenset({"/elevenlabs/v1/history/download"})
# Routes for owners and admins only, reads included: the audit log shows who did what, the
# key list what can reach the workspace.
_ADMIN_ONLY: Final = re.compile(r"/v1/audit-logs(/.*)?|/v1/api-keys(/.*)?")
# Changing who belongs to a workspace: owners and admins (listing members is a read).
_MEMBER_CHANGES: Final = re.compile(r"/v1/workspaces/[^/]+/(members|invitations)(/.*)?")

# Route families, first match wins; the path is matched whole.
_FAMILIES: Final[tuple[tuple[str, Scope | None], ...]] = (
    (r"/v1/(voices|models)|/openai/v1/models(/.*)?", None),
    (r"/elevenlabs/v[12]/(voices|models|user)(/.*)?", None),
    (r"/healthz|/readyz|/metrics|/widget\.js|/demo|/openapi\.json|/docs", None),
    (r"/v1/tts(/.*)?|/openai/v1/audio/speech", "tts"),
    (r"/elevenlabs/v1/(text-to-speech|text-to-dialogue|history)(/.*)?", "tts"),
    (r"/v1/stt(/.*)?|/openai/v1/audio/(transcriptions|translations)", "stt"),
    (r"/elevenlabs/v1/speech-to-text(/.*)?", "stt"),
    (r"/v1/(agents|convai|telephony)(/.*)?|/openai/v1/realtime(/.*)?", "convai"),
    (r"/elevenlabs/v1/convai(/.*)?", "convai"),
    (r"/v1/jobs(/.*)?", "jobs"),
)
_SCOPES: Final = tuple((re.compile(pattern), scope) for pattern, scope in _FAMILIES)


def is_read(method: str, path: str, *, websocket: bool) -> bool:
    """Whether the request only reads (``websocket``: it asks for an upgrade)."""
    if websocket:
        return False
    if method in _READ_METHODS:
        return _ACTING_GETS.fullmatch(path) is None
    return method == "POST" and path in _READING_POSTS


def scope_of(path: str) -> Scope | None:
    """The scope a key needs for ``path``: None for the routes any key may read, ``admin``
    for the workspace's administration and for any route not listed."""
    for pattern, scope in _SCOPES:
        if pattern.fullmatch(path):
            return scope
    return "admin"


def check(principal: Principal, method: str, path: str, *, websocket: bool) -> None:
    """Raises ``Forbidden`` when ``principal`` may not make this request."""
    scope = scope_of(path)
    if scope is not None and not principal.has_scope(scope):
        raise Forbidden(
            f"this API key is not allowed the {scope!r} scope that {path} needs",
            details={"scope": scope, "scopes": sorted(principal.scopes or ())},
        )
    admin_only = _ADMIN_ONLY.fullmatch(path) or (
        _MEMBER_CHANGES.fullmatch(path) and not is_read(method, path, websocket=websocket)
    )
    if admin_only and not principal.has_role("admin"):
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
