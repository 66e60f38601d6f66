"""A workspace's own Origin allow-list: the web pages that may use its browser endpoints.

The server-wide rules (``server/origin.py``: the server's own origin and
``VOICESTREAM_ALLOWED_ORIGINS``) hold for every workspace. Beyond them each workspace lists
the sites that embed its widget (``allowed_origins``, owners and admins set it). Such a page
may act for that workspace only: its key, a ticket minted there, or one of its public agents.
Another workspace's list does not count, or one workspace could open the door to another's
tickets and minutes.

The workspace a browser request acts for is often known only inside the handler (a ticket's
claims, a public agent's owner), so the origin middleware lets a page the server-wide rules do
not know go on with a ``PageOrigin`` pending on the request, and every entry point calls
``require_origin`` once it knows the workspace: the auth middleware for keys and access tokens,
the conversation opener for tickets and public agents, the ElevenLabs sockets for keys sent
inside them. A request whose origin is still pending is refused whatever the handler did: an
upgrade by the origin guard before any byte of it is written, any other answer by the
middleware. So a new entry point that forgets the call fails closed.

No wildcard in a workspace's list: ``*`` would let any site spend the workspace's tickets and
public agents' minutes, which is what the list exists to prevent, and a workspace that really
wants that is better served by a server-wide ``VOICESTREAM_ALLOWED_ORIGINS=*`` its operator
decides on. Sites are few; they are listed one by one (at most ``MAX_ORIGINS``).

The list is read once per workspace every ``CACHE_TTL_S`` at most (not once per socket); a
change made here is seen at once by this process, by the others within that time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Generic, TypeVar
from urllib.parse import urlsplit
from uuid import UUID

from aiohttp import web

from ..errors import Forbidden, NotFound, ValidationFailed
from ..store import db
from ..store import workspaces as workspace_store
from ..store.keys import Principal

__all__ = [
    "CACHE_TTL_S",
    "MAX_ORIGINS",
    "PAGE_ORIGIN",
    "PAGE_ORIGINS",
    "PageOrigin",
    "PageOrigins",
    "defer_origin",
    "normalize_origin",
    "origin_refused",
    "origin_unsettled",
    "require_origin",
]

MAX_ORIGINS: Final = 100
CACHE_TTL_S: Final = 5.0
_CACHE_ENTRIES: Final = 4096  # workspaces (or origins) remembered at once
_MAX_ORIGIN_CHARS: Final = 300
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

K = TypeVar("K")
V = TypeVar("V")


def normalize_origin(raw: str) -> str:
    """``scheme://host[:port]`` as browsers send it (lower case, no default port, no slash).

    Raises:
        ValueError: not an http(s) origin (a path, a wildcard, ``null``, credentials, …).
    """
    text = raw.strip().lower().rstrip("/")
    if not text.isascii() or len(text) > _MAX_ORIGIN_CHARS:
        raise ValueError("an origin is ASCII (a punycode host), at most 300 characters")
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port is not a number from 0 to 65535") from None
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or "*" in parts.netloc
    ):
        raise ValueError("use scheme://host[:port] with http or https, nothing after it")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def _page_key(origin: str) -> str | None:
    try:
        return normalize_origin(origin)
    except ValueError:
        return None  # "null" and anything malformed: no list holds it


def origin_refused(origin: str) -> Forbidden:
    return Forbidden(
        f"pages from origin {origin[:200]!r} may not use this endpoint; the server's "
        "VOICESTREAM_ALLOWED_ORIGINS and each workspace's allowed_origins list the sites that may",
        details={"origin": origin[:200]},
    )


@dataclass(slots=True)
class PageOrigin:
    """A page origin the server-wide rules do not allow, waiting for a workspace's verdict."""

    origin: str  # as the browser sent it
    allowed_for: UUID | None = None  # the workspace whose list holds it, once checked
    # The socket learns its workspace from a message inside it (ElevenLabs' key in the first
    # message): the upgrade may happen for a page some workspace lists, and that message's
    # check refuses it in the protocol's own shape.
    checked_inside: bool = False


PAGE_ORIGIN: web.RequestKey[PageOrigin] = web.RequestKey("voicestream_page_origin", PageOrigin)


class _Expiring(Generic[K, V]):
    """A small map whose entries lapse after ``ttl_s``; full, it starts over (a bound, not LRU)."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, key: K, value: V) -> None:
        if len(self._items) >= _CACHE_ENTRIES:
            self._items.clear()
        self._items[key] = (time.monotonic() + self._ttl_s, value)

    def forget(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


class PageOrigins:
    """The workspaces' lists: read (cached) and changed."""

    def __init__(self, pool: db.Pool, *, ttl_s: float = CACHE_TTL_S) -> None:
        self._pool = pool
        self._lists: _Expiring[UUID, frozenset[str]] = _Expiring(ttl_s)
        self._anywhere: _Expiring[str, bool] = _Expiring(ttl_s)

    async def allowed_for(self, workspace_id: UUID) -> frozenset[str]:
        """The workspace's list (empty for one that does not exist)."""
        cached = self._lists.get(workspace_id)
        if cached is None:
            stored = await workspace_store.allowed_origins(self._pool, workspace_id)
            cached = frozenset(stored or ())
            self._lists.put(workspace_id, cached)
        return cached

    async def listed_anywhere(self, origin: str) -> bool:
        """Whether some workspace lists the page (for the widget script and the WebRTC
        preflight, which act for no workspace and carry no credential)."""
        key = _page_key(origin)
        if key is None:
            return False
        cached = self._anywhere.get(key)
        if cached is None:
            cached = await workspace_store.origin_listed_anywhere(self._pool, key)
            self._anywhere.put(key, cached)
        return cached

    async def read(self, principal: Principal) -> list[str]:
        """The list of the principal's workspace. Raises Forbidden below admin."""
        _require_admin(principal, "read")
        stored = await workspace_store.allowed_origins(self._pool, principal.workspace_id)
        if stored is None:
            raise NotFound("no such workspace")
        return stored

    async def replace(self, principal: Principal, origins: list[str]) -> list[str]:
        """Replace the list of the principal's workspace; returns it normalized.

        Raises Forbidden (below admin) or ValidationFailed (a malformed origin, too many).
        """
        _require_admin(principal, "change")
        normalized = _normalized(origins)
        stored = await workspace_store.set_allowed_origins(
            self._pool, principal.workspace_id, normalized
        )
        if stored is None:
            raise NotFound("no such workspace")
        self._lists.forget(principal.workspace_id)
        self._anywhere.clear()  # which origin some workspace lists may have changed
        return stored


def _require_admin(principal: Principal, what: str) -> None:
    if not principal.has_role("admin"):
        raise Forbidden(
            f"only owners and admins may {what} the workspace's settings; this role is "
            f"{principal.role}",
            details={"role": principal.role, "required": "admin"},
        )


def _normalized(origins: list[str]) -> list[str]:
    if len(origins) > MAX_ORIGINS:
        raise ValidationFailed(
            f"at most {MAX_ORIGINS} allowed origins",
            details={"fields": [{"field": "allowed_origins", "message": "too many"}]},
        )
    out: list[str] = []
    for index, raw in enumerate(origins):
        try:
            origin = normalize_origin(raw)
        except ValueError as exc:
            raise ValidationFailed(
                f"allowed_origins[{index}] {raw[:100]!r} is not an origin: {exc}",
                details={"fields": [{"field": f"allowed_origins.{index}", "message": str(exc)}]},
            ) from None
        if origin not in out:
            out.append(origin)
    return out


PAGE_ORIGINS: web.AppKey[PageOrigins] = web.AppKey("voicestream_page_origins", PageOrigins)


async def require_origin(request: web.Request, workspace_id: UUID | str) -> None:
    """Refuse the request unless its page may act for ``workspace_id``.

    A no-op for requests without a pending origin (no ``Origin``: not a page; or one the
    server-wide rules allow). Call it wherever a browser request learns which workspace it
    acts for, before acting.

    Raises:
        Forbidden: the workspace does not list the page's origin.
    """
    pending = request.get(PAGE_ORIGIN)
    if pending is None:
        return
    wanted = workspace_id if isinstance(workspace_id, UUID) else UUID(workspace_id)
    if pending.allowed_for == wanted:
        return
    key = _page_key(pending.origin)
    listed = await request.config_dict[PAGE_ORIGINS].allowed_for(wanted)
    if key is None or key not in listed:
        raise origin_refused(pending.origin)
    pending.allowed_for = wanted


def defer_origin(request: web.Request) -> None:
    """The socket of ``request`` learns its workspace from a message inside it, and calls
    ``require_origin`` then: let its upgrade through if some workspace lists the page."""
    pending = request.get(PAGE_ORIGIN)
    if pending is not None:
        pending.checked_inside = True


def origin_unsettled(request: web.Request) -> bool:
    """Whether the request's page is still waiting for a workspace to allow it."""
    pending = request.get(PAGE_ORIGIN)
    return pending is not None and pending.allowed_for is None and not pending.checked_inside
