"""API keys: issue, list, revoke, authenticate.

A key is ``vs_`` + 40 URL-safe characters (240 random bits). The first 12 characters are
stored in clear as a display/lookup prefix; the key itself is stored only as SHA-256.
A fast unsalted hash is enough here: salting and slow hashing protect low-entropy
passwords from dictionary attacks, and a 240-bit random key cannot be guessed from its
hash, while a slow hash would cost CPU on every authenticated request.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, get_args
from uuid import UUID

from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store.workspaces import DEFAULT_WORKSPACE, ensure_workspace

__all__ = [
    "KEY_PREFIX",
    "ROLES",
    "ApiKey",
    "ApiKeyRepository",
    "Principal",
    "Role",
    "generate_key",
    "hash_key",
    "parse_role",
]

Role = Literal["owner", "admin", "editor", "viewer"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
_RANK: Final = {role: rank for rank, role in enumerate(reversed(ROLES))}  # viewer=0 .. owner=3

KEY_PREFIX: Final = "vs_"
_SECRET_BYTES: Final = 30  # 240 bits -> exactly 40 base64url characters, no padding
_DISPLAY_PREFIX_LEN: Final = 12  # "vs_" + 9 characters (54 bits: unique in practice)
_KEY_FORMAT = re.compile(r"vs_[A-Za-z0-9_-]{40}")
_MAX_NAME_LEN: Final = 200

_COLUMNS = """
    k.id, k.workspace_id, w.name AS workspace_name, k.name, k.prefix, k.role,
    k.created_at, k.last_used_at, k.revoked_at
"""


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

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready representation (ids and times as strings)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

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


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def hash_key(plaintext: str) -> bytes:
    return hashlib.sha256(plaintext.encode("ascii")).digest()


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
        self, workspace: str = DEFAULT_WORKSPACE, role: str = "owner", name: str | None = None
    ) -> tuple[ApiKey, str]:
        """Issue a key; return it with its plaintext, which is not retrievable later.

        Creates the workspace if it does not exist. Raises ValidationFailed for an unknown
        role, a malformed workspace name or an overlong key name.
        """
        checked_role = parse_role(role)
        checked_name = _clean_name(name)
        async with self._pool.acquire() as conn, conn.transaction():
            workspace_id = await ensure_workspace(conn, workspace)
            for _attempt in range(3):
                plaintext = generate_key()
                try:
                    # Savepoint: a prefix collision must not abort the outer transaction.
                    async with conn.transaction():
                        key_id = await conn.fetchval(
                            """
                            INSERT INTO api_keys (workspace_id, name, prefix, key_hash, role)
                            VALUES ($1, $2, $3, $4, $5) RETURNING id
                            """,
                            workspace_id,
                            checked_name,
                            plaintext[:_DISPLAY_PREFIX_LEN],
                            hash_key(plaintext),
                            checked_role,
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
        """Which of these keys are revoked (the sockets they opened must close)."""
        rows = await self._pool.fetch(
            "SELECT id FROM api_keys WHERE id = ANY($1::uuid[]) AND revoked_at IS NOT NULL",
            list(key_ids),
        )
        return {row["id"] for row in rows}

    async def authenticate(self, plaintext: str) -> Principal | None:
        """The principal for a presented key; None if it is malformed, unknown or revoked."""
        if not isinstance(plaintext, str) or not _KEY_FORMAT.fullmatch(plaintext):
            return None  # not worth a database round trip
        row = await self._pool.fetchrow(
            """
            SELECT k.id, k.workspace_id, w.name AS workspace_name, k.role, k.key_hash,
                   k.revoked_at,
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
            return None
        if row["revoked_at"] is not None:
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
        )
