"""The audit log: append-only, tamper-evident records of critical actions.

Every entry carries ``prev_hash``, the previous entry's ``hash``, and its own ``hash``: SHA-256
over a canonical encoding of ``prev_hash`` and all of its fields except the id (see
``entry_hash``). There is one chain for the whole database, not one per workspace, so no entry
can be dropped or reordered without breaking it; appends take a transaction-level advisory
lock, so concurrent appends queue up instead of forking the chain from the same predecessor.
The table refuses UPDATE, DELETE and TRUNCATE (migration 0006); ``verify`` finds what was
changed anyway by someone who could lift that (the table's owner).

The chain cannot show that entries were cut off its end: that needs an anchor kept elsewhere
(the last hash, copied out now and then), which ``verify`` reports for that purpose.

Reads take the workspace id: a workspace sees its own entries only. Entries made before a
workspace applies (signing in) have none and are listed by nobody here.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from voicestream.errors import ValidationFailed
from voicestream.store import db

__all__ = [
    "CLI_ACTOR",
    "GENESIS_HASH",
    "MAX_PAGE_SIZE",
    "Actor",
    "AuditEntry",
    "AuditFilters",
    "AuditLog",
    "AuditPage",
    "Verification",
    "entry_hash",
]

GENESIS_HASH: Final = bytes(32)  # the first entry's prev_hash
MAX_PAGE_SIZE: Final = 200
# Only has to differ from other advisory lock users of the database: the first 8 bytes of
# sha256(b"voicestream.store.audit") as a signed bigint.
_LOCK_ID: Final = int.from_bytes(
    hashlib.sha256(b"voicestream.store.audit").digest()[:8], "big", signed=True
)
_FORMAT: Final = "voicestream-audit-v1"  # first item of every hashed document
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
# A filter on a family of actions: "key." or "key.*".
_ACTION_FILTER = re.compile(r"([a-z][a-z0-9_]*\.)*[a-z][a-z0-9_]*(\.\*?)?")
_MAX_DETAILS_CHARS: Final = 8192
_MAX_USER_AGENT: Final = 512
_MAX_TARGET_ID: Final = 200
_MAX_DISPLAY: Final = 320
_VERIFY_PAGE: Final = 1000
_CURSOR_PREFIX: Final = "a1:"

_COLUMNS = """
    id, workspace_id, actor_user_id, actor_key_id, actor_display, action, target_type,
    target_id, ip, user_agent, details, created_at, prev_hash, hash
"""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a user, an API key, or neither (the command line).

    ``display`` is how a reader recognises them (an e-mail, a key's prefix, ``cli``); when it
    is None, ``record`` shows the key's prefix, or the user id.
    """

    display: str | None = None
    user_id: UUID | None = None
    key_id: UUID | None = None


CLI_ACTOR: Final = Actor(display="cli")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    workspace_id: UUID | None
    actor_user_id: UUID | None
    actor_key_id: UUID | None
    actor_display: str
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    details: dict[str, Any]
    created_at: datetime
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: builtins.list[AuditEntry]
    next_cursor: str | None  # None on the last page


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """``action``: exact, or a family such as ``key.`` / ``key.*``; ``actor``: a user or key
    id, or the display (``cli``, a prefix, an e-mail); ``since`` inclusive, ``until``
    exclusive."""

    action: str | None = None
    actor: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    checked: int  # entries found intact before the first broken one (all of them when ok)
    broken_id: int | None = None
    reason: str | None = None
    last_hash: bytes = field(default=GENESIS_HASH)  # the chain's head, to keep elsewhere


# --- the chain ----------------------------------------------------------------------------------


def _storable(text: str) -> str:
    """``text`` as PostgreSQL takes it: no NUL, and a header's undecodable bytes (which arrive
    as lone surrogates) replaced rather than failing the append."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _plain(value: Any, where: str) -> Any:
    """``value`` reduced to what survives a jsonb round trip unchanged, so that a hash computed
    before the insert matches the one computed from the stored row.

    Floats are refused (jsonb rewrites ``1e20`` as ``100000000000000000000``); text is made
    storable (``_storable``).
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[]") for v in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"audit details: {where} has a non-string key {key!r}")
            out[_storable(key)] = _plain(item, f"{where}.{key}")
        return out
    raise TypeError(f"audit details: {where} is a {type(value).__name__}; use str or int")


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    text = _storable(text)[:limit]
    return text or None


def _ip(value: str | None) -> str | None:
    """The address in Python's notation; IPv4-mapped IPv6 (a dual-stack socket's view of an
    IPv4 client) as plain IPv4. Anything unparseable (a Unix socket) is no address."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _text(value: UUID | None) -> str | None:
    return str(value) if value is not None else None


def entry_hash(entry: AuditEntry) -> bytes:
    """SHA-256 over the entry's canonical encoding: a JSON array (sorted keys, no spaces,
    UTF-8) of the format name, ``prev_hash`` in hex, then every field but the id."""
    document = [
        _FORMAT,
        entry.prev_hash.hex(),
        _iso(entry.created_at),
        _text(entry.workspace_id),
        _text(entry.actor_user_id),
        _text(entry.actor_key_id),
        entry.actor_display,
        entry.action,
        entry.target_type,
        entry.target_id,
        entry.ip,
        entry.user_agent,
        entry.details,
    ]
    encoded = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    return hashlib.sha256(encoded).digest()


def _entry(row: db.Record) -> AuditEntry:
    details = row["details"]
    ip = row["ip"]
    return AuditEntry(
        id=row["id"],
        workspace_id=row["workspace_id"],
        actor_user_id=row["actor_user_id"],
        actor_key_id=row["actor_key_id"],
        actor_display=row["actor_display"],
        action=row["action"],
        target_type=row["target_type"],
        target_id=row["target_id"],
        # asyncpg gives inet as an ipaddress object (a network if someone stored one).
        ip=str(ip) if ip is not None else None,
        user_agent=row["user_agent"],
        # No JSON codec is registered on the pool: jsonb arrives as its text.
        details=json.loads(details) if isinstance(details, str) else details,
        created_at=row["created_at"],
        prev_hash=bytes(row["prev_hash"]),
        hash=bytes(row["hash"]),
    )


# --- paging -------------------------------------------------------------------------------------


def _field_error(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{name}: {message}", details={"fields": [{"field": name, "message": message}]}
    )


def _cursor(entry_id: int) -> str:
    raw = f"{_CURSOR_PREFIX}{entry_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _cursor_id(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raw = ""
    number = raw.removeprefix(_CURSOR_PREFIX)
    if not raw.startswith(_CURSOR_PREFIX) or not number.isdigit() or len(number) > 18:
        raise _field_error("cursor", "not a cursor this server gave out")
    return int(number)


def _action_condition(action: str) -> tuple[str, str]:
    """(operator, operand) for an action filter: exact, or LIKE for a family."""
    if not _ACTION_FILTER.fullmatch(action):
        raise _field_error("action", "an action like key.created, or a family like key.*")
    if action.endswith((".", ".*")):
        # Underscores are LIKE wildcards: escape them, the family must match literally.
        family = action.removesuffix("*").replace("_", "\\_")
        return "LIKE", family + "%"
    return "=", action


def _actor_condition(actor: str, param: int) -> str:
    try:
        UUID(actor)
    except ValueError:
        return f"actor_display = ${param}"
    return f"(actor_user_id = ${param}::uuid OR actor_key_id = ${param}::uuid)"


class AuditLog:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def record(
        self,
        action: str,
        *,
        actor: Actor,
        workspace_id: UUID | None = None,
        target_type: str | None = None,
        target_id: str | UUID | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry to the chain and return it.

        ``details`` holds str, int, bool, None, lists and objects only (never secrets).
        Raises ValueError for a malformed action name, TypeError for details of other types:
        both are mistakes in the caller, not in a request.
        """
        if not _ACTION.fullmatch(action):
            raise ValueError(f"audit action {action!r} is not like 'key.created'")
        plain = _plain(details or {}, "details")
        if len(json.dumps(plain, ensure_ascii=False)) > _MAX_DETAILS_CHARS:
            raise ValueError(f"audit details longer than {_MAX_DETAILS_CHARS} characters")
        async with self._pool.acquire() as conn, conn.transaction():
            # Held until commit: the next append reads this entry's hash as its predecessor.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
            head = await conn.fetchrow(
                """
                SELECT (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1) AS prev,
                       clock_timestamp() AS now,
                       (SELECT prefix FROM api_keys WHERE id = $1) AS key_prefix
                """,
                actor.key_id,
            )
            display = actor.display or head["key_prefix"] or _text(actor.user_id) or "unknown"
            draft = AuditEntry(
                id=0,
                workspace_id=workspace_id,
                actor_user_id=actor.user_id,
                actor_key_id=actor.key_id,
                actor_display=_clip(display, _MAX_DISPLAY) or "unknown",
                action=action,
                target_type=_clip(target_type, 64),
                target_id=_clip(str(target_id) if target_id is not None else None, _MAX_TARGET_ID),
                ip=_ip(ip),
                user_agent=_clip(user_agent, _MAX_USER_AGENT),
                details=plain,
                # The database's clock, not this host's: one clock for every writer.
                created_at=head["now"],
                prev_hash=bytes(head["prev"]) if head["prev"] is not None else GENESIS_HASH,
                hash=b"",
            )
            digest = entry_hash(draft)
            entry_id = await conn.fetchval(
                """
                INSERT INTO audit_log (
                    workspace_id, actor_user_id, actor_key_id, actor_display, action,
                    target_type, target_id, ip, user_agent, details, created_at, prev_hash, hash
                ) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::inet, $9, $10::jsonb, $11, $12, $13)
                RETURNING id
                """,
                draft.workspace_id,
                draft.actor_user_id,
                draft.actor_key_id,
                draft.actor_display,
                draft.action,
                draft.target_type,
                draft.target_id,
                draft.ip,
                draft.user_agent,
                json.dumps(plain, ensure_ascii=False),
                draft.created_at,
                draft.prev_hash,
                digest,
            )
        return replace(draft, id=entry_id, hash=digest)

    async def verify(self, *, page_size: int = _VERIFY_PAGE) -> Verification:
        """Walk the whole chain, oldest first, one page at a time; report the first entry whose
        link or contents do not check out, or how many entries were checked."""
        previous = GENESIS_HASH
        previous_id: int | None = None
        checked = 0
        after = 0
        async with (
            self._pool.acquire() as conn,
            # One snapshot: appends made meanwhile are simply not part of this walk.
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            while True:
                rows = await conn.fetch(
                    f"SELECT {_COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2",
                    after,
                    page_size,
                )
                if not rows:
                    return Verification(ok=True, checked=checked, last_hash=previous)
                for row in rows:
                    entry = _entry(row)
                    if entry.prev_hash != previous:
                        before = (
                            f"entry {previous_id}'s hash" if previous_id else "the chain's start"
                        )
                        reason = (
                            f"prev_hash does not match {before}: an entry before it was "
                            "changed, removed or inserted"
                        )
                        return Verification(False, checked, entry.id, reason, previous)
                    if entry_hash(entry) != entry.hash:
                        reason = "its contents do not match its hash: it was changed"
                        return Verification(False, checked, entry.id, reason, previous)
                    previous, previous_id = entry.hash, entry.id
                    checked += 1
                after = rows[-1]["id"]

    async def list(
        self,
        workspace_id: UUID,
        *,
        limit: int = 50,
        cursor: str | None = None,
        filters: AuditFilters | None = None,
    ) -> AuditPage:
        """One page of a workspace's entries, newest first.

        ``cursor`` is the previous page's ``next_cursor``. Raises ValidationFailed for a limit
        outside 1..200, a malformed cursor or action filter, or ``since`` after ``until``.
        """
        if isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE_SIZE:
            raise _field_error("limit", f"must be between 1 and {MAX_PAGE_SIZE}")
        filters = filters or AuditFilters()
        if filters.since and filters.until and filters.since > filters.until:
            raise _field_error("since", "must not be after until")
        conditions = ["workspace_id = $1"]
        args: builtins.list[Any] = [workspace_id]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if cursor is not None:
            # Keyset paging on the id: stable however many entries arrive meanwhile.
            conditions.append(f"id < {arg(_cursor_id(cursor))}")
        if filters.action is not None:
            op, operand = _action_condition(filters.action)
            conditions.append(f"action {op} {arg(operand)}")
        if filters.actor is not None:
            args.append(filters.actor)
            conditions.append(_actor_condition(filters.actor, len(args)))
        if filters.target_type is not None:
            conditions.append(f"target_type = {arg(filters.target_type)}")
        if filters.target_id is not None:
            conditions.append(f"target_id = {arg(filters.target_id)}")
        if filters.since is not None:
            conditions.append(f"created_at >= {arg(filters.since)}")
        if filters.until is not None:
            conditions.append(f"created_at < {arg(filters.until)}")
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM audit_log WHERE {' AND '.join(conditions)} "
            f"ORDER BY id DESC LIMIT {arg(limit + 1)}",
            *args,
        )
        entries = [_entry(row) for row in rows[:limit]]
        more = len(rows) > limit
        return AuditPage(entries, _cursor(entries[-1].id) if more else None)
