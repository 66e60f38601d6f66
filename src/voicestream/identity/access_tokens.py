"""Access tokens (JWT) and the opaque secrets of sign-in: refresh tokens and e-mail tokens.

An access token is a JWT the server both signs and checks, so the algorithm is the server's
choice, never the token's: HS256 under a key derived from the server secret, and decoding
accepts that one algorithm only, which refuses ``alg: none``, HS512 and RS256 headers alike
(RFC 8725 §3.1). ``iss``, ``aud``, ``exp``, ``iat``, ``sub`` and ``jti`` are required; the
audience differs from the conversation tickets' (``identity/tickets.py``), and the key is
derived separately, so neither kind of token passes for the other.

Refresh tokens and e-mail tokens are opaque random strings with a recognisable prefix
(``vsr_``, ``vse_``) so the log redaction finds them; the database keeps their SHA-256 only.
As with API keys, a fast unsalted hash is right for 256 random bits (``store/keys.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Final
from uuid import UUID

import jwt

from ..errors import AuthError

__all__ = [
    "ACCESS_AUDIENCE",
    "ACCESS_ISSUER",
    "EMAIL_TOKEN_PREFIX",
    "REFRESH_TOKEN_PREFIX",
    "AccessClaims",
    "AccessTokens",
    "derive_access_key",
    "hash_token",
    "new_email_token",
    "new_refresh_token",
    "token_shape_ok",
]

ACCESS_ISSUER: Final = "voicestream"
ACCESS_AUDIENCE: Final = "voicestream-api"
_ALGORITHM: Final = "HS256"
REFRESH_TOKEN_PREFIX: Final = "vsr_"
EMAIL_TOKEN_PREFIX: Final = "vse_"
_TOKEN_BYTES: Final = 32  # 256 bits -> 43 base64url characters
_OPAQUE = re.compile(r"vs[re]_[A-Za-z0-9_-]{43}")


def derive_access_key(secret_key: str) -> bytes:
    """The HS256 key for access tokens: the server secret under a label of its own, so a
    conversation ticket (signed with the secret itself) can never verify as one."""
    return hmac.new(secret_key.encode(), b"voicestream access tokens v1", hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: UUID
    issued_at: float  # unix seconds, to the millisecond
    expires_at: int
    jti: str


class AccessTokens:
    def __init__(self, secret_key: str, *, ttl_s: int) -> None:
        self._key = derive_access_key(secret_key)
        self.ttl_s = ttl_s

    def issue(self, user_id: UUID, *, now: float | None = None) -> str:
        # Milliseconds (a NumericDate may be fractional, RFC 7519 §2): a password reset
        # refuses tokens issued before it, and a sign-in a moment later must not count as such.
        issued = round(time.time() if now is None else now, 3)
        claims = {
            "iss": ACCESS_ISSUER,
            "aud": ACCESS_AUDIENCE,
            "sub": str(user_id),
            "iat": issued,
            "exp": int(issued) + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def verify(self, token: str) -> AccessClaims:
        """Raises ``AuthError`` for anything but an unexpired access token of this server."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                audience=ACCESS_AUDIENCE,
                issuer=ACCESS_ISSUER,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the access token has expired; refresh it or sign in again") from None
        except jwt.PyJWTError:
            raise AuthError("invalid access token") from None
        sub, iat, exp, jti = claims["sub"], claims["iat"], claims["exp"], claims["jti"]
        try:
            user_id = UUID(sub) if isinstance(sub, str) else None
        except ValueError:
            user_id = None
        if user_id is None or not isinstance(jti, str):
            raise AuthError("invalid access token")
        return AccessClaims(user_id, float(iat), int(exp), jti)


def _opaque(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(_TOKEN_BYTES)


def new_refresh_token() -> str:
    return _opaque(REFRESH_TOKEN_PREFIX)


def new_email_token() -> str:
    return _opaque(EMAIL_TOKEN_PREFIX)


def token_shape_ok(token: str, prefix: str) -> bool:
    """Whether ``token`` could be one of ours of this kind (not worth a query otherwise)."""
    return token.startswith(prefix) and _OPAQUE.fullmatch(token) is not None


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
