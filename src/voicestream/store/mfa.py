"""Second factors: TOTP factors, recovery codes and sign-in challenges (migration 0008).

Secrets arrive here sealed or hashed (``identity/second_factor.py``). Every rule that must hold
under concurrent requests is one statement: a time step is accepted only if it is newer than
the stored one, a recovery code and a challenge are used up at most once, and a challenge's
attempts are counted before the code is checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from voicestream.store import db

__all__ = ["ChallengeAttempt", "MfaRepository", "TotpFactor"]


@dataclass(frozen=True, slots=True)
class TotpFactor:
    user_id: UUID
    secret_sealed: str
    confirmed: bool
    last_used_step: int | None


@dataclass(frozen=True, slots=True)
class ChallengeAttempt:
    """A live challenge, with this attempt counted."""

    id: UUID
    user_id: UUID
    first_factor: str
    attempts: int


class MfaRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    # --- TOTP ---------------------------------------------------------------------------

    async def totp(self, user_id: UUID) -> TotpFactor | None:
        row = await self._pool.fetchrow(
            "SELECT user_id, secret_sealed, confirmed_at IS NOT NULL AS confirmed, last_used_step "
            "FROM totp_factors WHERE user_id = $1",
            user_id,
        )
        if row is None:
            return None
        return TotpFactor(
            row["user_id"], row["secret_sealed"], row["confirmed"], row["last_used_step"]
        )

    async def start_totp(self, user_id: UUID, secret_sealed: str) -> bool:
        """Store a new unconfirmed secret, replacing an unconfirmed one; False (nothing
        changed) if the user has a confirmed factor."""
        row = await self._pool.fetchval(
            """
            INSERT INTO totp_factors (user_id, secret_sealed) VALUES ($1, $2)
            ON CONFLICT (user_id) DO UPDATE
                SET secret_sealed = excluded.secret_sealed, created_at = now(),
                    last_used_step = NULL
                WHERE totp_factors.confirmed_at IS NULL
            RETURNING user_id
            """,
            user_id,
            secret_sealed,
        )
        return row is not None

    async def use_step(self, user_id: UUID, step: int) -> bool:
        """Record ``step`` as used if it is newer than the last one; False if a code of this
        step (or a later one) was accepted already."""
        status = await self._pool.execute(
            "UPDATE totp_factors SET last_used_step = $2 "
            "WHERE user_id = $1 AND (last_used_step IS NULL OR last_used_step < $2)",
            user_id,
            step,
        )
        return not status.endswith(" 0")

    async def confirm_totp(
        self, user_id: UUID, secret_sealed: str, step: int, code_hashes: Sequence[bytes]
    ) -> bool:
        """Activate the unconfirmed factor sealed as ``secret_sealed`` (the one the code was
        checked against), recording ``step``, and replace the recovery codes; False if that
        factor is no longer there to confirm."""
        async with self._pool.acquire() as conn, conn.transaction():
            confirmed = await conn.fetchval(
                """
                UPDATE totp_factors SET confirmed_at = now(), last_used_step = $3
                WHERE user_id = $1 AND secret_sealed = $2 AND confirmed_at IS NULL
                RETURNING user_id
                """,
                user_id,
                secret_sealed,
                step,
            )
            if confirmed is None:
                return False
            await conn.execute("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
            await conn.executemany(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)",
                [(user_id, code_hash) for code_hash in code_hashes],
            )
            return True

    async def remove_totp(self, user_id: UUID) -> None:
        """Remove the factor, its recovery codes and pending challenges."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM totp_factors WHERE user_id = $1", user_id)
            await conn.execute("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
            await conn.execute("DELETE FROM mfa_challenges WHERE user_id = $1", user_id)

    # --- recovery codes -----------------------------------------------------------------

    async def use_recovery_code(self, user_id: UUID, code_hash: bytes) -> bool:
        """Use up an unused recovery code of the user; False if there is none with this hash."""
        used = await self._pool.fetchval(
            "UPDATE recovery_codes SET used_at = now() "
            "WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL RETURNING id",
            user_id,
            code_hash,
        )
        return used is not None

    async def recovery_codes_left(self, user_id: UUID) -> int:
        left: int = await self._pool.fetchval(
            "SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL", user_id
        )
        return left

    # --- sign-in challenges -------------------------------------------------------------

    async def create_challenge(
        self, user_id: UUID, token_hash: bytes, first_factor: str, ttl_s: float
    ) -> None:
        await self._pool.execute(
            """
            INSERT INTO mfa_challenges (user_id, token_hash, first_factor, expires_at)
            VALUES ($1, $2, $3, now() + make_interval(secs => $4))
            """,
            user_id,
            token_hash,
            first_factor,
            float(ttl_s),
        )

    async def attempt_challenge(
        self, token_hash: bytes, max_attempts: int
    ) -> ChallengeAttempt | None:
        """Count an attempt on a live challenge (unused, unexpired, attempts left) and return
        it; None when there is no such challenge (unknown, used, expired or exhausted)."""
        row = await self._pool.fetchrow(
            """
            UPDATE mfa_challenges SET attempts = attempts + 1
            WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
                AND attempts < $2
            RETURNING id, user_id, first_factor, attempts
            """,
            token_hash,
            max_attempts,
        )
        if row is None:
            return None
        return ChallengeAttempt(row["id"], row["user_id"], row["first_factor"], row["attempts"])

    async def challenge_user(self, token_hash: bytes) -> UUID | None:
        """Whose challenge this is, used or not (the per-user code limit counts by it)."""
        user_id: UUID | None = await self._pool.fetchval(
            "SELECT user_id FROM mfa_challenges WHERE token_hash = $1", token_hash
        )
        return user_id

    async def finish_challenge(self, challenge_id: UUID) -> bool:
        """Use the challenge up; False if a concurrent attempt already did."""
        done = await self._pool.fetchval(
            "UPDATE mfa_challenges SET used_at = now() "
            "WHERE id = $1 AND used_at IS NULL AND expires_at > now() RETURNING id",
            challenge_id,
        )
        return done is not None
