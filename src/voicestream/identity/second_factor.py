"""Second factors: TOTP enrolment, recovery codes, and the step between the two factors.

Enrolment is two steps: ``start_totp`` makes a secret and hands out its ``otpauth://`` URI
(once; the stored copy is sealed), and only ``confirm_totp``, with a code the authenticator
computed, activates it, so nobody is locked out by a secret their app never read. Confirming
returns ten recovery codes, shown once and stored hashed; each works once, in place of a code.

Sign-in with a factor active is two requests. The first factor (a password, a magic link)
earns a challenge: an opaque ``vsm_`` token that lives five minutes, is good for nothing but
``verify``, dies after five wrong codes, and works once. The database keeps its SHA-256.

Turning the factor off takes a current code or a recovery code, so a stolen access token
alone cannot remove it.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import Final, Literal
from uuid import UUID

from ..errors import AuthError, Conflict, Forbidden, NotFound, ValidationFailed
from ..store.mfa import MfaRepository
from ..store.secrets import SecretBox, SecretUnreadable
from .access_tokens import hash_token
from .totp import (
    hash_recovery_code,
    matching_step,
    new_recovery_codes,
    new_totp_secret,
    provisioning_uri,
)

__all__ = [
    "CHALLENGE_TTL_S",
    "MAX_CHALLENGE_ATTEMPTS",
    "MFA_TOKEN_PREFIX",
    "MfaChallenge",
    "SecondFactorUsed",
    "SecondFactors",
]

log = logging.getLogger(__name__)

MFA_TOKEN_PREFIX: Final = "vsm_"
CHALLENGE_TTL_S: Final = 300
MAX_CHALLENGE_ATTEMPTS: Final = 5
_MFA_TOKEN = re.compile(r"vsm_[A-Za-z0-9_-]{43}")
_BAD_CHALLENGE: Final = "this sign-in step is invalid, expired or used up; sign in again"

Method = Literal["totp", "recovery_code"]


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    """The first factor was right; a second one is needed to get tokens."""

    mfa_token: str
    methods: list[Method]
    expires_in: int


@dataclass(frozen=True, slots=True)
class SecondFactorUsed:
    user_id: UUID
    method: Method
    first_factor: str | None = None  # at sign-in: how the first factor was shown


class SecondFactors:
    def __init__(self, repo: MfaRepository, box: SecretBox, *, issuer: str = "voicestream") -> None:
        self.repo = repo
        self._box = box
        self._issuer = issuer

    # --- enrolment ----------------------------------------------------------------------

    async def start_totp(self, user_id: UUID, account: str) -> str:
        """A new unconfirmed secret's ``otpauth://`` URI. Raises Conflict if a confirmed
        factor exists (turn it off first)."""
        secret = new_totp_secret()
        if not await self.repo.start_totp(user_id, self._seal(user_id, secret)):
            raise Conflict("two-factor sign-in is on already; turn it off before enrolling again")
        return provisioning_uri(secret, account, self._issuer)

    async def confirm_totp(self, user_id: UUID, code: str) -> list[str]:
        """Activate the pending secret with a code from it; returns the recovery codes.

        Raises:
            NotFound: no enrolment was started.
            Conflict: the factor is active already.
            ValidationFailed: the code does not match.
        """
        factor = await self.repo.totp(user_id)
        if factor is None:
            raise NotFound("no TOTP enrolment is pending; POST /v1/auth/mfa/totp first")
        if factor.confirmed:
            raise Conflict("two-factor sign-in is on already")
        secret = self._open(user_id, factor.secret_sealed)
        step = None if secret is None else matching_step(secret, code, last_used_step=None)
        if step is None:
            raise ValidationFailed(
                "the code does not match; check the authenticator's clock and try a fresh code",
                details={"fields": [{"field": "code", "message": "does not match"}]},
            )
        codes = new_recovery_codes()
        hashes = [hash_recovery_code(user_id, code) for code in codes]
        stored = [h for h in hashes if h is not None]
        if not await self.repo.confirm_totp(user_id, factor.secret_sealed, step, stored):
            # A concurrent enrolment replaced or confirmed the secret this code was for.
            raise Conflict("the enrolment changed meanwhile; start again")
        return codes

    async def disable(self, user_id: UUID, code: str | None, recovery_code: str | None) -> Method:
        """Turn TOTP off, given a current code or an unused recovery code; returns which.

        Raises:
            NotFound: the user has no factor.
            Forbidden: the code is wrong, stale or used.
        """
        if await self.repo.totp(user_id) is None:
            raise NotFound("two-factor sign-in is not on")
        method = await self._check(user_id, code, recovery_code)
        if method is None:
            raise Forbidden("a current code or an unused recovery code is needed to turn this off")
        await self.repo.remove_totp(user_id)
        return method

    # --- sign-in ------------------------------------------------------------------------

    async def methods(self, user_id: UUID) -> list[Method]:
        factor = await self.repo.totp(user_id)
        return ["totp", "recovery_code"] if factor is not None and factor.confirmed else []

    async def challenge_for(self, user_id: UUID, first_factor: str) -> MfaChallenge | None:
        """A challenge if the user has an active factor; None if the first one is enough."""
        methods = await self.methods(user_id)
        if not methods:
            return None
        token = MFA_TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self.repo.create_challenge(user_id, hash_token(token), first_factor, CHALLENGE_TTL_S)
        return MfaChallenge(token, methods, CHALLENGE_TTL_S)

    async def verify(
        self, mfa_token: str, code: str | None, recovery_code: str | None
    ) -> SecondFactorUsed:
        """The user a challenge belongs to, once they show a second factor. Every call counts
        against the challenge's attempts, right or wrong. Raises AuthError."""
        if not _MFA_TOKEN.fullmatch(mfa_token):
            raise AuthError(_BAD_CHALLENGE)
        attempt = await self.repo.attempt_challenge(hash_token(mfa_token), MAX_CHALLENGE_ATTEMPTS)
        if attempt is None:
            raise AuthError(_BAD_CHALLENGE)
        method = await self._check(attempt.user_id, code, recovery_code)
        if method is None:
            left = MAX_CHALLENGE_ATTEMPTS - attempt.attempts
            tail = f"{left} attempt{'s' if left != 1 else ''} left" if left else "sign in again"
            raise AuthError(
                f"wrong, expired or already used code; {tail}", details={"attempts_left": left}
            )
        if not await self.repo.finish_challenge(attempt.id):
            raise AuthError(_BAD_CHALLENGE)
        return SecondFactorUsed(attempt.user_id, method, attempt.first_factor)

    # --- helpers ------------------------------------------------------------------------

    async def _check(
        self, user_id: UUID, code: str | None, recovery_code: str | None
    ) -> Method | None:
        """Which factor was shown and is good (using it up), or None."""
        if recovery_code is not None:
            code_hash = hash_recovery_code(user_id, recovery_code)
            if code_hash is not None and await self.repo.use_recovery_code(user_id, code_hash):
                return "recovery_code"
            return None
        if code is None:
            return None
        factor = await self.repo.totp(user_id)
        secret = None if factor is None else self._open(user_id, factor.secret_sealed)
        if factor is None or secret is None:
            return None
        step = matching_step(secret, code, last_used_step=factor.last_used_step)
        # The step is claimed in one statement: of two requests with the same code, one wins.
        if step is not None and await self.repo.use_step(user_id, step):
            return "totp"
        return None

    def _seal(self, user_id: UUID, secret: str) -> str:
        return self._box.seal(secret, context=_context(user_id))

    def _open(self, user_id: UUID, sealed: str) -> str | None:
        try:
            return self._box.open(sealed, context=_context(user_id))
        except SecretUnreadable:
            # The server secret changed since enrolment: codes cannot be checked, but the
            # recovery codes still work, and they are the way back in.
            log.warning("the TOTP secret of user %s does not open with this secret", user_id)
            return None


def _context(user_id: UUID) -> str:
    # Binds the sealed secret to this user's row: copied into another user's, it opens nowhere.
    return f"user:{user_id}:totp_secret"
