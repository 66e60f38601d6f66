"""Passwords: the minimum policy, and argon2id hashes computed off the event loop.

Argon2id (RFC 9106) is slow and memory-hard on purpose, so a stolen ``users`` table does not
give up its passwords to a dictionary attack. That same slowness would stall every session
on the process if it ran on the loop: each hash runs in a worker thread.

The parameters are argon2-cffi's defaults (RFC 9106's second recommendation). A hash made
with other parameters (older defaults, a cheaper test hasher) still verifies, and
``verify_password`` says when it should be replaced with one made now, which sign-in does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import ValidationFailed

__all__ = [
    "MAX_PASSWORD_CHARS",
    "MIN_PASSWORD_CHARS",
    "PasswordCheck",
    "Passwords",
    "check_password_policy",
]

MIN_PASSWORD_CHARS: Final = 10
# Argon2 takes any length, but a megabyte "password" is a denial of service, not a secret.
MAX_PASSWORD_CHARS: Final = 256


def check_password_policy(password: str, *, email: str, field: str = "password") -> None:
    """Raises ``ValidationFailed`` (422) for a password too short, too long, or the e-mail."""
    problem: str | None = None
    if len(password) < MIN_PASSWORD_CHARS:
        problem = f"must be at least {MIN_PASSWORD_CHARS} characters"
    elif len(password) > MAX_PASSWORD_CHARS:
        problem = f"must be at most {MAX_PASSWORD_CHARS} characters"
    elif password.strip().casefold() in {email.casefold(), email.split("@")[0].casefold()}:
        problem = "must not be your e-mail address"
    if problem is not None:
        raise ValidationFailed(
            f"{field} {problem}",
            details={"fields": [{"field": field, "message": problem}]},
        )


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    ok: bool
    # A replacement hash with the current parameters, when ``ok`` and the stored one is old.
    new_hash: str | None = None


class Passwords:
    """Hashes and verifies in worker threads. ``hasher``: argon2-cffi's defaults unless a
    caller (a test of rehashing) passes other parameters."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        # Verified against when the account is unknown or has no password, so that answer
        # costs as long as a wrong password and timing does not tell which it was.
        self._decoy: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> PasswordCheck:
        """Whether ``password`` matches ``stored``; a None ``stored`` never matches, but takes
        as long to say so."""
        if stored is None:
            if self._decoy is None:
                self._decoy = await self.hash("decoy password, never matches")
            await asyncio.to_thread(self._verify, self._decoy, password)
            return PasswordCheck(False)
        if not await asyncio.to_thread(self._verify, stored, password):
            return PasswordCheck(False)
        if self._hasher.check_needs_rehash(stored):
            return PasswordCheck(True, await self.hash(password))
        return PasswordCheck(True)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
