"""Time-based one-time passwords (RFC 6238) and recovery codes: pure functions, no I/O.

A code is accepted for the current 30-second step or one step either side (RFC 6238 §5.2's
allowance for clock drift and typing time), and only for a step later than the last one
accepted: a code seen once, on the wire or over a shoulder, cannot be used again, and neither
can an older code of the same window. The caller stores the step ``matching_step`` returns.

Recovery codes are 50 random bits written as two groups of five base32 letters; the database
keeps a SHA-256 over the user's id and the normalised code (a fast hash is enough for random
codes that work once, as for ``access_tokens.hash_token``; the user id keeps equal codes of two
users apart).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Final
from uuid import UUID

import pyotp

__all__ = [
    "CODE_DIGITS",
    "RECOVERY_CODE_COUNT",
    "STEP_SECONDS",
    "hash_recovery_code",
    "matching_step",
    "new_recovery_codes",
    "new_totp_secret",
    "normalise_recovery_code",
    "provisioning_uri",
]

STEP_SECONDS: Final = 30
CODE_DIGITS: Final = 6
WINDOW_STEPS: Final = 1
RECOVERY_CODE_COUNT: Final = 10
_SECRET_BYTES: Final = 20  # 160 bits, RFC 4226 §4's recommended HMAC-SHA1 key length
_CODE = re.compile(rf"[0-9]{{{CODE_DIGITS}}}")
_RECOVERY_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
_RECOVERY_GROUP: Final = 5
_RECOVERY = re.compile(rf"[{_RECOVERY_ALPHABET}]{{{2 * _RECOVERY_GROUP}}}")


def new_totp_secret() -> str:
    """A fresh base32 secret for an authenticator app."""
    return pyotp.random_base32(length=_SECRET_BYTES * 8 // 5)


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://totp/…`` URI an authenticator app reads (usually from a QR code)."""
    return pyotp.TOTP(secret, digits=CODE_DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


def matching_step(
    secret: str, code: str, *, last_used_step: int | None, now: float | None = None
) -> int | None:
    """The time step ``code`` belongs to, if it is valid now and newer than ``last_used_step``;
    None otherwise (a wrong, stale, future or replayed code)."""
    candidate = code.strip().replace(" ", "")
    if not _CODE.fullmatch(candidate):
        return None
    totp = pyotp.TOTP(secret, digits=CODE_DIGITS, interval=STEP_SECONDS)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    found: int | None = None
    # Every step of the window is computed and compared, matched or not: the time taken does
    # not say which step (if any) matched.
    for step in range(current - WINDOW_STEPS, current + WINDOW_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), candidate):
            fresh = last_used_step is None or step > last_used_step
            if fresh and found is None:
                found = step
    return found


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``count`` distinct codes such as ``k7d2m-x4qpa``, shown to the user once."""
    codes: set[str] = set()
    while len(codes) < count:
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(2 * _RECOVERY_GROUP))
        codes.add(f"{raw[:_RECOVERY_GROUP]}-{raw[_RECOVERY_GROUP:]}")
    return sorted(codes)


def normalise_recovery_code(code: str) -> str | None:
    """The code as stored (lower case, no dash or spaces), or None if it cannot be one."""
    candidate = re.sub(r"[\s-]", "", code).lower()
    return candidate if _RECOVERY.fullmatch(candidate) else None


def hash_recovery_code(user_id: UUID, code: str) -> bytes | None:
    """What the database keeps for ``code`` of this user; None for a malformed code."""
    normal = normalise_recovery_code(code)
    if normal is None:
        return None
    salted = b"voicestream recovery code v1\0" + user_id.bytes + normal.encode()
    return hashlib.sha256(salted).digest()
