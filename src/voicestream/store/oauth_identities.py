"""Provider accounts linked to users, and sign-ins under way (migration 0010).

A sign-in's state is taken with a DELETE, so of two callbacks carrying the same state one
finds it and the other does not. Linking an identity is an insert that loses quietly to a
concurrent one for the same provider account; both callers then read the one that won.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from voicestream.store import db

__all__ = ["OAuthIdentityRepository", "PendingSignIn"]

# Sweeping expired states on each insert keeps the table as small as the sign-ins under way.
_SWEEP: Final = "DELETE FROM oauth_states WHERE expires_at < now() - interval '1 minute'"


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """What the callback needs from the start of a sign-in; never shown to the browser."""

    provider: str
    code_verifier: str
    nonce: str
    redirect_uri: str


class OAuthIdentityRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    # --- sign-ins under way -------------------------------------------------------------

    async def save_state(self, state_hash: bytes, pending: PendingSignIn, ttl_s: float) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_SWEEP)
            await conn.execute(
                """
                INSERT INTO oauth_states
                    (state_hash, provider, code_verifier, nonce, redirect_uri, expires_at)
                VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
                """,
                state_hash,
                pending.provider,
                pending.code_verifier,
                pending.nonce,
                pending.redirect_uri,
                float(ttl_s),
            )

    async def take_state(self, state_hash: bytes) -> PendingSignIn | None:
        """Use up a live state; None if unknown, expired or already used."""
        row = await self._pool.fetchrow(
            """
            DELETE FROM oauth_states WHERE state_hash = $1
            RETURNING provider, code_verifier, nonce, redirect_uri, expires_at > now() AS live
            """,
            state_hash,
        )
        if row is None or not row["live"]:
            return None
        return PendingSignIn(
            row["provider"], row["code_verifier"], row["nonce"], row["redirect_uri"]
        )

    # --- linked identities --------------------------------------------------------------

    async def user_of(self, provider: str, subject: str, email: str | None) -> UUID | None:
        """The user the provider account is linked to (noting this use), or None."""
        user_id: UUID | None = await self._pool.fetchval(
            """
            UPDATE oauth_identities SET last_used_at = now(), email = coalesce($3, email)
            WHERE provider = $1 AND subject = $2
            RETURNING user_id
            """,
            provider,
            subject,
            email,
        )
        return user_id

    async def link(
        self, provider: str, subject: str, user_id: UUID, email: str | None
    ) -> tuple[UUID, bool]:
        """Link the provider account to ``user_id``; (the user it is linked to, whether this
        call linked it). Another user when a concurrent sign-in linked it first.

        The user's address counts as verified from now on: the provider vouched for it. If it
        was not verified before, whoever chose the account's password never proved the
        mailbox (someone may have signed up with another person's address ahead of them), so
        that password is dropped and every session it opened ends.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            linked: UUID | None = await conn.fetchval(
                """
                INSERT INTO oauth_identities (provider, subject, user_id, email)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (provider, subject) DO NOTHING
                RETURNING user_id
                """,
                provider,
                subject,
                user_id,
                email,
            )
            if linked is None:
                winner: UUID = await conn.fetchval(
                    "SELECT user_id FROM oauth_identities WHERE provider = $1 AND subject = $2",
                    provider,
                    subject,
                )
                return winner, False
            unproven = await conn.fetchval(
                """
                UPDATE users SET email_verified_at = now(), password_hash = NULL,
                       sessions_revoked_at = to_timestamp($2)
                WHERE id = $1 AND email_verified_at IS NULL
                RETURNING id
                """,
                user_id,
                time.time(),
            )
            if unproven is not None:
                await conn.execute(
                    "UPDATE refresh_tokens SET revoked_at = now() "
                    "WHERE user_id = $1 AND revoked_at IS NULL",
                    user_id,
                )
            return user_id, True

    async def providers_of(self, user_id: UUID) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT provider FROM oauth_identities WHERE user_id = $1 ORDER BY provider", user_id
        )
        return [r["provider"] for r in rows]
