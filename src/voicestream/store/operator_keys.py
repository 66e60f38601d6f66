"""The server operator's API keys: issue, list, revoke (authentication is ``store/keys.py``'s).

An operator key has an ordinary key's shape (``vs_`` + 40 characters, stored as a display
prefix and a SHA-256) but lives in its own table: it belongs to no workspace, so deleting or
exporting a workspace never touches it and no workspace's key list shows it. Only the command
line mints one (``voicestream admin keys create``); no route does.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store._records import iso
from voicestream.store.keys import display_prefix, generate_key, hash_key

__all__ = ["OPERATOR_ROLE", "OperatorKey", "OperatorKeyRepository"]

OPERATOR_ROLE: Final = "operator"
_MAX_NAME_LEN: Final = 200
_COLUMNS: Final = "id, name, prefix, created_at, last_used_at, revoked_at, expires_at"


@dataclass(frozen=True, slots=True)
class OperatorKey:
    id: UUID
    name: str | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": str(self.id),
            "prefix": self.prefix,
            "name": self.name,
            "role": OPERATOR_ROLE,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "revoked_at": iso(self.revoked_at),
            "expires_at": iso(self.expires_at),
        }


def _key(row: db.Record) -> OperatorKey:
    return OperatorKey(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        expires_at=row["expires_at"],
    )


class OperatorKeyRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def create(
        self, name: str | None = None, *, expires_in: timedelta | None = None
    ) -> tuple[OperatorKey, str]:
        """Issue a key; return it with its plaintext, which is not retrievable later."""
        label = name.strip() if name is not None and name.strip() else None
        if label is not None and len(label) > _MAX_NAME_LEN:
            raise ValidationFailed(f"key name is longer than {_MAX_NAME_LEN} characters")
        if expires_in is not None and expires_in <= timedelta(0):
            raise ValidationFailed("a key's expiry must be in the future")
        expiry_s = expires_in.total_seconds() if expires_in is not None else None
        for _attempt in range(3):
            plaintext = generate_key()
            # A workspace key with this display prefix would shadow this one at sign-in
            # (store/keys.py looks workspace keys up first): draw again, as on a collision.
            taken = await self._pool.fetchval(
                "SELECT 1 FROM api_keys WHERE prefix = $1", display_prefix(plaintext)
            )
            if taken:
                continue  # pragma: no cover - 54 bits
            try:
                row = await self._pool.fetchrow(
                    f"""
                    INSERT INTO operator_keys (name, prefix, key_hash, expires_at)
                    VALUES ($1, $2, $3, now() + make_interval(secs => $4::float8))
                    RETURNING {_COLUMNS}
                    """,
                    label,
                    display_prefix(plaintext),
                    hash_key(plaintext),
                    expiry_s,
                )
            except db.UniqueViolationError:  # pragma: no cover - 54-bit prefix collided
                continue
            return _key(row), plaintext
        raise RuntimeError("could not generate a unique API key prefix")  # pragma: no cover

    async def list(self) -> builtins.list[OperatorKey]:
        """Every operator key (revoked ones included), oldest first."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM operator_keys ORDER BY created_at, id"
        )
        return [_key(row) for row in rows]

    async def revoke(self, key_id_or_prefix: str) -> OperatorKey:
        """Revoke by id or display prefix; idempotent. NotFound when none matches."""
        ident = key_id_or_prefix.strip()
        try:
            key_id: UUID | None = UUID(ident)
        except ValueError:
            key_id = None
        row = await self._pool.fetchrow(
            f"""
            UPDATE operator_keys SET revoked_at = coalesce(revoked_at, now())
            WHERE {"id = $1::uuid" if key_id else "prefix = $1"}
            RETURNING {_COLUMNS}
            """,
            key_id if key_id else display_prefix(ident),
        )
        if row is None:
            raise NotFound(f"no operator key with id or prefix {key_id_or_prefix!r}")
        return _key(row)
