"""API keys: issue, list, revoke, authenticate.

A key is ``vs_`` + 40 URL-safe characters (240 random bits). The first 12 characters are
stored in clear as a display/lookup prefix; the key itself is stored only as SHA-256.
A fast unsalted hash is enough here: salting and slow hashing protect low-entropy
passwords from dictionary attacks, and a 240-bit random key cannot be guessed from its
hash, while a slow hash would cost CPU on every authenticated request.

A key may be limited to scopes (route families, ``identity/policy.py``; none stored: all),
may expire (then it fails authentication exactly like a revoked one, and its open sockets
close), may name a project, and remembers the member who made it through the API, so that
removing that member from the workspace revokes it.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, get_args
from uuid import UUID

from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store._records import iso
from voicestream.store.workspaces import DEFAULT_WORKSPACE, ensure_workspace

__all__ = [
    "KEY_PREFIX",
    "NO_WORKSPACE",
    "ROLES",
    "SCOPES",
    "ApiKey",
    "ApiKeyRepository",
    "Principal",
    "Role",
    "Scope",
    "display_prefix",
    "generate_key",
    "hash_key",
    "operator_principal",
    "parse_role",
    "parse_scopes",
    "role_rank",
]

Role = Literal["owner", "admin", "editor", "viewer"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
_RANK: Final = {role: rank for rank, role in enumerate(reversed(ROLES))}  # viewer=0 .. owner=3
# Route families a key may be limited to; the route -> scope rule is in identity/policy.py.
Scope = Literal["tts", "stt", "convai", "jobs", "admin"]
SCOPES: Final[tuple[Scope, ...]] = get_args(Scope)

KEY_PREFIX: Final = "vs_"
_SECRET_BYTES: Final = 30  # 240 bits -> exactly 40 base64url characters, no padding
_DISPLAY_PREFIX_LEN: Final = 12  # "vs_" + 9 characters (54 bits: unique in practice)
_KEY_FORMAT = re.compile(r"vs_[A-Za-z0-9_-]{40}")
_MAX_NAME_LEN: Final = 200

_COLUMNS = """
    k.id, k.workspace_id, w.name AS workspace_name, k.name, k.prefix, k.role,
    k.created_at, k.last_used_at, k.revoked_at, k.scopes, k.expires_at,
    k.created_by_user_id, k.project
"""
# Expired keys count as revoked wherever a key is checked: at authentication and by the
# socket watcher (``revoked_among``).
_DEAD = "(k.revoked_at IS NOT NULL OR k.expires_at <= now())"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored, without its secret."""

    id: UUID
    workspace_id: UUID
    workspace_name: str
    name: str | None
    prefix: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    scopes: tuple[Scope, ...] | None = None  # None: every scope
    expires_at: datetime | None = None
    created_by_user_id: UUID | None = None
    project: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready representation (ids and times as strings)."""
        return {
            "id": str(self.id),
            "prefix": self.prefix,
            "name": self.name,
            "workspace_id": str(self.workspace_id),
            "workspace": self.workspace_name,
            "role": self.role,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "revoked_at": iso(self.revoked_at),
            "scopes": list(self.scopes) if self.scopes is not None else None,
            "expires_at": iso(self.expires_at),
            "project": self.project,
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is acting as: an API key, or a signed-in user in one of their workspaces
    (``key_id`` None, ``user_id`` set, ``role`` the membership's)."""

    key_id: UUID | None
    workspace_id: UUID
    workspace_name: str
    role: Role
    user_id: UUID | None = None
    # A key's scopes (None: all of them); a signed-in user is limited by role alone.
    scopes: frozenset[Scope] | None = None
    # The server operator's key (role "operator", ``store/operator_keys.py``): in no workspace
    # (``workspace_id`` is ``NO_WORKSPACE``), no scope, and identity/policy.py lets it reach
    # the operator's routes only.
    operator: bool = False

    def has_scope(self, scope: Scope) -> bool:
        return self.scopes is None or scope in self.scopes

    @property
    def tag(self) -> str:
        """Who this is, as one string (``key:<id>`` or ``user:<id>``): what owns a
        conversation lease, what a rate limit counts."""
        if self.key_id is not None:
            return f"key:{self.key_id}"
        return f"user:{self.user_id}"

    def has_role(self, minimum: Role) -> bool:
        """Whether the role is ``minimum`` or above (owner > admin > editor > viewer)."""
        return _RANK[self.role] >= _RANK[minimum]


# An operator principal's workspace: the nil UUID, which no workspace has.
NO_WORKSPACE: Final = UUID(int=0)


def operator_principal(key_id: UUID) -> Principal:
    """The principal of an operator key: server-wide, viewer of nothing inside a workspace."""
    return Principal(
        key_id=key_id,
        workspace_id=NO_WORKSPACE,
        workspace_name="",
        role="viewer",
        scopes=frozenset(),
        operator=True,
    )


def role_rank(role: Role) -> int:
    """viewer 0, editor 1, admin 2, owner 3."""
    return _RANK[role]


def parse_scopes(values: Iterable[str] | None) -> tuple[Scope, ...] | None:
    """Distinct scopes in the canonical order, or None (all) when none are given."""
    if values is None:
        return None
    given = set(values)
    unknown = sorted(given.difference(SCOPES))
    if unknown or not given:
        raise ValidationFailed(
            f"scopes must be a non-empty list of {', '.join(SCOPES)}",
            details={"scopes": sorted(given)},
        )
    return tuple(scope for scope in SCOPES if scope in given)


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def hash_key(plaintext: str) -> bytes:
    return hashlib.sha256(plaintext.encode("ascii")).digest()


def display_prefix(plaintext: str) -> str:
    """The part of a key kept in clear, to recognise and look it up by."""
    return plaintext[:_DISPLAY_PREFIX_LEN]


def parse_role(value: str) -> Role:
    if value not in ROLES:
        raise ValidationFailed(
            f"unknown role {value!r}; use one of {', '.join(ROLES)}", details={"role": value}
        )
    return value


def _api_key(row: db.Record) -> ApiKey:
    return ApiKey(
        id=row["id"],
        workspace_id=row["workspace_id"],
        workspace_name=row["workspace_name"],
        name=row["name"],
        prefix=row["prefix"],
        role=row["role"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        scopes=tuple(row["scopes"]) if row["scopes"] is not None else None,
        expires_at=row["expires_at"],
        created_by_user_id=row["created_by_user_id"],
        project=row["project"],
    )


def _clean_name(name: str | None) -> str | None:
    if name is None or not name.strip():
        return None
    name = name.strip()
    if len(name) > _MAX_NAME_LEN:
        raise ValidationFailed(f"key name is longer than {_MAX_NAME_LEN} characters")
    return name


class ApiKeyRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def create(
        self,
        workspace: str = DEFAULT_WORKSPACE,
        role: str = "owner",
        name: str | None = None,
        *,
        workspace_id: UUID | None = None,
        scopes: Iterable[str] | None = None,
        expires_in: timedelta | None = None,
        created_by_user_id: UUID | None = None,
        project: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Issue a key; return it with its plaintext, which is not retrievable later.

        In ``workspace_id`` when given, else in ``workspace`` by name, created if it does not
        exist. Raises ValidationFailed for an unknown role or scope, a malformed workspace
        name, an overlong key name or an expiry that is not in the future.
        """
        checked_role = parse_role(role)
        checked_name = _clean_name(name)
        checked_scopes = parse_scopes(scopes)
        if expires_in is not None and expires_in <= timedelta(0):
            raise ValidationFailed("a key's expiry must be in the future")
        expiry_s = expires_in.total_seconds() if expires_in is not None else None
        async with self._pool.acquire() as conn, conn.transaction():
            if workspace_id is None:
                workspace_id = await ensure_workspace(conn, workspace)
            for _attempt in range(3):
                plaintext = generate_key()
                try:
                    # Savepoint: a prefix collision must not abort the outer transaction.
                    async with conn.transaction():
                        key_id = await conn.fetchval(
                            """
                            INSERT INTO api_keys (workspace_id, name, prefix, key_hash, role,
                                                  scopes, expires_at, created_by_user_id, project)
                            VALUES ($1, $2, $3, $4, $5, $6,
                                    now() + make_interval(secs => $7::float8), $8, $9)
                            RETURNING id
                            """,
                            workspace_id,
                            checked_name,
                            plaintext[:_DISPLAY_PREFIX_LEN],
                            hash_key(plaintext),
                            checked_role,
                            list(checked_scopes) if checked_scopes is not None else None,
                            expiry_s,
                            created_by_user_id,
                            project,
                        )
                except db.UniqueViolationError:
                    continue  # 54-bit prefix collided; astronomically rare, just draw again
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM api_keys k JOIN workspaces w "
                    "ON w.id = k.workspace_id WHERE k.id = $1",
                    key_id,
                )
                return _api_key(row), plaintext
        raise RuntimeError("could not generate a unique API key prefix")  # pragma: no cover

    async def list(self, workspace: str | None = None) -> builtins.list[ApiKey]:
        """All keys (revoked ones included), oldest first, optionally of one workspace."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id "
            "WHERE $1::text IS NULL OR w.name = $1 ORDER BY k.created_at, k.id",
            workspace,
        )
        return [_api_key(row) for row in rows]

    async def list_in(self, workspace_id: UUID) -> builtins.list[ApiKey]:
        """The workspace's keys (revoked and expired ones included), newest first."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id "
            "WHERE k.workspace_id = $1 ORDER BY k.created_at DESC, k.id",
            workspace_id,
        )
        return [_api_key(row) for row in rows]

    async def revoke_in(self, workspace_id: UUID, key_id: UUID) -> ApiKey:
        """Revoke one of the workspace's keys; idempotent. Another workspace's key is as
        missing as one that never existed: NotFound."""
        row = await self._pool.fetchrow(
            f"""
            WITH revoked AS (
                UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                WHERE id = $1 AND workspace_id = $2
                RETURNING *
            )
            SELECT {_COLUMNS} FROM revoked k JOIN workspaces w ON w.id = k.workspace_id
            """,
            key_id,
            workspace_id,
        )
        if row is None:
            raise NotFound("no such API key", details={"id": str(key_id)})
        return _api_key(row)

    async def revoke_created_by(
        self, workspace_id: UUID, user_id: UUID, conn: db.Connection | None = None
    ) -> builtins.list[UUID]:
        """Revoke the live keys ``user_id`` made in the workspace (they leave it); their ids.
        ``conn``: inside the caller's transaction (the membership's removal)."""
        rows = await (conn or self._pool).fetch(
            """
            UPDATE api_keys SET revoked_at = now()
            WHERE workspace_id = $1 AND created_by_user_id = $2 AND revoked_at IS NULL
            RETURNING id
            """,
            workspace_id,
            user_id,
        )
        return [row["id"] for row in rows]

    async def revoke(self, key_id_or_prefix: str) -> ApiKey:
        """Revoke a key by id or display prefix (a full key also works); idempotent.

        Raises NotFound when no key matches.
        """
        ident = key_id_or_prefix.strip()
        key_id: UUID | None = None
        try:
            key_id = UUID(ident)
        except ValueError:
            if _KEY_FORMAT.fullmatch(ident):
                ident = ident[:_DISPLAY_PREFIX_LEN]
        row = await self._pool.fetchrow(
            f"""
            WITH revoked AS (
                UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                WHERE {"id = $1::uuid" if key_id else "prefix = $1"}
                RETURNING *
            )
            SELECT {_COLUMNS} FROM revoked k JOIN workspaces w ON w.id = k.workspace_id
            """,
            key_id if key_id else ident,
        )
        if row is None:
            raise NotFound(f"no API key with id or prefix {key_id_or_prefix!r}")
        return _api_key(row)

    async def revoked_among(self, key_ids: Iterable[UUID]) -> set[UUID]:
        """Which of these keys are revoked, expired or gone (the sockets they opened must
        close); a key is gone when its workspace was deleted (``data_deletion`` job)."""
        rows = await self._pool.fetch(
            f"""
            SELECT wanted.id FROM unnest($1::uuid[]) AS wanted (id)
            WHERE NOT EXISTS (
                -- coalesce: a key with no expiry makes the test NULL, not false.
                SELECT 1 FROM api_keys k WHERE k.id = wanted.id AND NOT coalesce({_DEAD}, false)
            )
            """,
            list(key_ids),
        )
        return {row["id"] for row in rows}

    async def authenticate(self, plaintext: str) -> Principal | None:
        """The principal for a presented key; None if it is malformed, unknown, revoked or
        expired."""
        if not isinstance(plaintext, str) or not _KEY_FORMAT.fullmatch(plaintext):
            return None  # not worth a database round trip
        row = await self._pool.fetchrow(
            f"""
            SELECT k.id, k.workspace_id, w.name AS workspace_name, k.role, k.key_hash,
                   {_DEAD} AS dead, k.scopes,
                   k.last_used_at IS NULL
                       OR k.last_used_at < now() - interval '1 minute' AS touch_due
            FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id
            WHERE k.prefix = $1
            """,
            plaintext[:_DISPLAY_PREFIX_LEN],
        )
        # Constant-time comparison: the prefix lookup must not turn into an oracle that
        # reveals how much of a guessed key's hash matched.
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), hash_key(plaintext)):
            return await self._operator(plaintext)
        if row["dead"]:
            return None
        if row["touch_due"]:
            # At most one write per key per minute instead of one per request; the WHERE
            # repeats the condition so concurrent requests do not all write.
            await self._pool.execute(
                "UPDATE api_keys SET last_used_at = now() WHERE id = $1 "
                "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
                row["id"],
            )
        return Principal(
            key_id=row["id"],
            workspace_id=row["workspace_id"],
            workspace_name=row["workspace_name"],
            role=row["role"],
            scopes=frozenset(row["scopes"]) if row["scopes"] is not None else None,
        )

    async def _operator(self, plaintext: str) -> Principal | None:
        """The operator's principal for one of the server's operator keys (same shape, its
        own table: it belongs to no workspace); None for anything else."""
        row = await self._pool.fetchrow(
            f"""
            SELECT k.id, k.key_hash, {_DEAD} AS dead FROM operator_keys k WHERE k.prefix = $1
            """,
            plaintext[:_DISPLAY_PREFIX_LEN],
        )
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), hash_key(plaintext)):
            return None
        if row["dead"]:
            return None
        await self._pool.execute(
            "UPDATE operator_keys SET last_used_at = now() WHERE id = $1 "
            "AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
            row["id"],
        )
        return operator_principal(row["id"])
