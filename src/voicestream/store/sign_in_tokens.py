"""Refresh tokens and one-time e-mail tokens, stored as SHA-256 hashes only.

Refresh tokens rotate: each use marks the token used and issues its successor in the same
family (every token descended from one sign-in). A used token presented again means two
parties hold the family, one of them a thief, and nobody can tell which: the whole family is
revoked (OAuth 2.0 Security BCP, refresh token rotation). The check and the rotation happen
under a row lock, so two concurrent uses of one token cannot both succeed.

E-mail tokens (verification, magic link, password reset) are consumed by a single UPDATE
that also checks purpose, expiry and earlier use: the first redeemer wins, atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID, uuid4

from voicestream.store import db

__all__ = ["EmailPurpose", "Rotation", "SignInTokenRepository"]

EmailPurpose = Literal["verify", "magic", "reset"]


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of presenting a refresh token: ``rotated`` with the user and family, or
    why not (``unknown``, ``expired``, ``revoked``, ``reused`` — the family is revoked now)."""

    outcome: Literal["rotated", "unknown", "expired", "revoked", "reused"]
    user_id: UUID | None = None
    family_id: UUID | None = None


class SignInTokenRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def issue_refresh(
        self, user_id: UUID, token_hash: bytes, ttl_s: float, family_id: UUID | None = None
    ) -> UUID:
        """Store a refresh token (a new family unless ``family_id``); returns the family."""
        family = family_id or uuid4()
        await self._pool.execute(
            """
            INSERT INTO refresh_tokens (family_id, user_id, token_hash, expires_at)
            VALUES ($1, $2, $3, now() + make_interval(secs => $4))
            """,
            family,
            user_id,
            token_hash,
            float(ttl_s),
        )
        return family

    async def rotate_refresh(self, old_hash: bytes, new_hash: bytes, ttl_s: float) -> Rotation:
        """Exchange a refresh token for its successor, or say why not (see ``Rotation``)."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                SELECT r.id, r.family_id, r.user_id, r.used_at, r.revoked_at,
                       r.expires_at <= now() AS expired, u.disabled_at IS NOT NULL AS disabled
                FROM refresh_tokens r JOIN users u ON u.id = r.user_id
                WHERE r.token_hash = $1
                FOR UPDATE OF r
                """,
                old_hash,
            )
            if row is None:
                return Rotation("unknown")
            family, user = row["family_id"], row["user_id"]
            if row["revoked_at"] is not None or row["disabled"]:
                return Rotation("revoked", user, family)
            if row["used_at"] is not None:
                await conn.execute(
                    "UPDATE refresh_tokens SET revoked_at = now() "
                    "WHERE family_id = $1 AND revoked_at IS NULL",
                    family,
                )
                return Rotation("reused", user, family)
            if row["expired"]:
                return Rotation("expired", user, family)
            await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE id = $1", row["id"])
            await conn.execute(
                """
                INSERT INTO refresh_tokens (family_id, user_id, token_hash, expires_at)
                VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                """,
                family,
                user,
                new_hash,
                float(ttl_s),
            )
            return Rotation("rotated", user, family)

    async def revoke_family_of(self, token_hash: bytes) -> bool:
        """Revoke the family of a refresh token (sign-out); False if no token has this hash."""
        revoked = await self._pool.fetchval(
            """
            WITH target AS (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)
            UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now())
            WHERE family_id IN (SELECT family_id FROM target)
            RETURNING family_id
            """,
            token_hash,
        )
        return revoked is not None

    async def create_email_token(
        self, user_id: UUID, purpose: EmailPurpose, token_hash: bytes, ttl_s: float
    ) -> None:
        await self._pool.execute(
            """
            INSERT INTO email_tokens (user_id, purpose, token_hash, expires_at)
            VALUES ($1, $2, $3, now() + make_interval(secs => $4))
            """,
            user_id,
            purpose,
            token_hash,
            float(ttl_s),
        )

    async def peek_email_token(self, token_hash: bytes, purpose: EmailPurpose) -> UUID | None:
        """Whom a valid, unused, unexpired token of ``purpose`` was sent to, without using it."""
        user_id: UUID | None = await self._pool.fetchval(
            "SELECT user_id FROM email_tokens WHERE token_hash = $1 AND purpose = $2 "
            "AND used_at IS NULL AND expires_at > now()",
            token_hash,
            purpose,
        )
        return user_id

    async def consume_email_token(self, token_hash: bytes, purpose: EmailPurpose) -> UUID | None:
        """The user a valid, unused, unexpired token of ``purpose`` was sent to, using it up;
        None otherwise."""
        user_id: UUID | None = await self._pool.fetchval(
            """
            UPDATE email_tokens SET used_at = now()
            WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
            RETURNING user_id
            """,
            token_hash,
            purpose,
        )
        return user_id
