"""Access tokens that must be refused: forged, foreign or broken in every way RFC 8725 lists.

Shared by the pure token tests and the server's (tests/server/test_auth_api.py).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from voicestream.identity.access_tokens import ACCESS_AUDIENCE, ACCESS_ISSUER, derive_access_key
from voicestream.identity.tickets import mint_ticket

__all__ = ["FORGED_KINDS", "claims_for", "forged_tokens"]


def claims_for(user: uuid.UUID, **changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ACCESS_ISSUER,
        "aud": ACCESS_AUDIENCE,
        "sub": str(user),
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, object]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hs512(claims: dict[str, object], key: bytes) -> str:
    # By hand: pyjwt warns (an error here) about a 32-byte key for HS512, which is the point.
    signing_input = (
        _b64(json.dumps({"alg": "HS512", "typ": "JWT"}).encode())
        + "."
        + _b64(json.dumps(claims).encode())
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha512).digest()
    return f"{signing_input}.{_b64(signature)}"


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["sub"] = str(uuid.uuid4())  # someone else, keeping the original signature
    return f"{header}.{_b64(json.dumps(body).encode())}.{signature}"


FORGED_KINDS = (
    "alg-none",
    "hs512",
    "rs256",
    "wrong-audience",
    "wrong-issuer",
    "expired",
    "tampered",
    "missing-sub",
    "missing-exp",
    "sub-not-a-user-id",
    "other-key",
    "ticket-key",
    "ticket",
    "garbage",
)


@functools.cache
def forged_tokens(secret: str, user: uuid.UUID) -> dict[str, str]:
    """Every way a token must be refused (also used by the server tests)."""
    key = derive_access_key(secret)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    good = jwt.encode(claims_for(user), key, algorithm="HS256")
    return {
        "alg-none": _unsigned(claims_for(user)),
        "hs512": _hs512(claims_for(user), key),
        "rs256": jwt.encode(claims_for(user), rsa_key, algorithm="RS256"),
        "wrong-audience": jwt.encode(claims_for(user, aud="convai"), key, algorithm="HS256"),
        "wrong-issuer": jwt.encode(claims_for(user, iss="someone-else"), key, algorithm="HS256"),
        "expired": jwt.encode(
            claims_for(user, iat=int(time.time()) - 3600, exp=int(time.time()) - 60),
            key,
            algorithm="HS256",
        ),
        "tampered": _tampered(good),
        "missing-sub": jwt.encode(claims_for(user, sub=None), key, algorithm="HS256"),
        "missing-exp": jwt.encode(claims_for(user, exp=None), key, algorithm="HS256"),
        "sub-not-a-user-id": jwt.encode(claims_for(user, sub="admin"), key, algorithm="HS256"),
        "other-key": jwt.encode(claims_for(user), b"k" * 32, algorithm="HS256"),
        # Signed with the raw secret, as conversation tickets are.
        "ticket-key": jwt.encode(claims_for(user), secret, algorithm="HS256"),
        "ticket": mint_ticket(
            secret,
            workspace_id=str(uuid.uuid4()),
            agent_id=str(user),
            end_user_id=None,
            ttl_s=600,
            family="webchat",
            key_id=None,
        ),
        "garbage": "a.b.c",
    }
