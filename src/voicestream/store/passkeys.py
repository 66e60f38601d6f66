"""Passkeys (WebAuthn credentials) and their ceremonies' challenges (migration 0008).

A challenge is answered at most once: taking it is a DELETE, so of two answers to the same
challenge one finds it and the other does not. A sign-in updates the signature counter only
from the value it was checked against, so two concurrent uses of one credential cannot both
pass the counter check.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal
from uuid import UUID

from voicestream.store import db

__all__ = ["CeremonyPurpose", "Passkey", "PasskeyRepository"]

CeremonyPurpose = Literal["register", "login"]
_COLUMNS: Final = "id, user_id, credential_id, public_key, sign_count, created_at, last_used_at"


@dataclass(frozen=True, slots=True)
class Passkey:
    id: UUID
    user_id: UUID
    credential_id: bytes
    public_key: bytes
    sign_count: int
    created_at: datetime
    last_used_at: datetime | None


def _passkey(row: db.Record) -> Passkey:
    return Passkey(**{name: row[name] for name in _COLUMNS.split(", ")})


class PasskeyRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def create_challenge(
        self, challenge: bytes, purpose: CeremonyPurpose, user_id: UUID | None, ttl_s: float
    ) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            # Sign-in options are public: expired challenges are swept as new ones come, so
            # the table stays as small as the ceremonies under way.
            await conn.execute(
                "DELETE FROM webauthn_challenges WHERE expires_at < now() - interval '1 minute'"
            )
            await conn.execute(
                """
                INSERT INTO webauthn_challenges (challenge, purpose, user_id, expires_at)
                VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                """,
                challenge,
                purpose,
                user_id,
                float(ttl_s),
            )

    async def take_challenge(
        self, challenge: bytes, purpose: CeremonyPurpose, user_id: UUID | None
    ) -> bool:
        """Use up a live challenge of ``purpose`` (issued to ``user_id``); False if there is
        none: unknown, expired, used, or another's."""
        taken = await self._pool.fetchval(
            """
            DELETE FROM webauthn_challenges
            WHERE challenge = $1 AND purpose = $2 AND user_id IS NOT DISTINCT FROM $3
            RETURNING expires_at > now()
            """,
            challenge,
            purpose,
            user_id,
        )
        return bool(taken)

    async def add(
        self, user_id: UUID, credential_id: bytes, public_key: bytes, sign_count: int
    ) -> Passkey | None:
        """Store a new passkey; None if that credential is registered already."""
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO passkeys (user_id, credential_id, public_key, sign_count)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (credential_id) DO NOTHING
            RETURNING {_COLUMNS}
            """,
            user_id,
            credential_id,
            public_key,
            sign_count,
        )
        return _passkey(row) if row else None

    async def of_user(self, user_id: UUID) -> builtins.list[Passkey]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at", user_id
        )
        return [_passkey(row) for row in rows]

    async def by_credential_id(self, credential_id: bytes) -> Passkey | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM passkeys WHERE credential_id = $1", credential_id
        )
        return _passkey(row) if row else None

    async def record_use(self, passkey_id: UUID, checked_count: int, new_count: int) -> bool:
        """Store the new counter if it is still the one the assertion was checked against."""
        status = await self._pool.execute(
            "UPDATE passkeys SET sign_count = $3, last_used_at = now() "
            "WHERE id = $1 AND sign_count = $2",
            passkey_id,
            checked_count,
            new_count,
        )
        return not status.endswith(" 0")
