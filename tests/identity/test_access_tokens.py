"""Access tokens accept only what this server signed, with its one algorithm and claims; the
opaque refresh and e-mail tokens are random, prefixed, and stored as hashes."""

from __future__ import annotations

import hashlib
import time
import uuid

import jwt
import pytest

from jwt_forgeries import FORGED_KINDS, forged_tokens
from voicestream.errors import AuthError
from voicestream.identity.access_tokens import (
    AccessTokens,
    derive_access_key,
    hash_token,
    new_email_token,
    new_refresh_token,
    token_shape_ok,
)

SECRET = "s" * 48
USER = uuid.UUID("6a0e5e1c-6a35-4c38-9a4f-7b1f0f6f2a11")


def test_a_token_it_issued_verifies() -> None:
    tokens = AccessTokens(SECRET, ttl_s=900)
    before = time.time()
    claims = tokens.verify(tokens.issue(USER))
    assert claims.user_id == USER
    assert before - 0.001 <= claims.issued_at <= time.time() + 0.001
    assert claims.expires_at == int(claims.issued_at) + 900
    header = jwt.get_unverified_header(tokens.issue(USER))
    assert header["alg"] == "HS256"


def test_every_kind_is_forged() -> None:
    assert set(forged_tokens(SECRET, USER)) == set(FORGED_KINDS)


@pytest.mark.parametrize("kind", FORGED_KINDS)
def test_forged_and_foreign_tokens_are_refused(kind: str) -> None:
    token = forged_tokens(SECRET, USER)[kind]
    with pytest.raises(AuthError) as caught:
        AccessTokens(SECRET, ttl_s=900).verify(token)
    assert caught.value.http_status == 401
    expected = "expired" if kind == "expired" else "invalid access token"
    assert expected in caught.value.message


def test_the_key_is_derived_not_the_secret_itself() -> None:
    key = derive_access_key(SECRET)
    assert len(key) == 32 and key != SECRET.encode()
    assert derive_access_key("t" * 48) != key


def test_opaque_tokens_are_random_prefixed_and_hashed() -> None:
    refresh, mail = new_refresh_token(), new_email_token()
    assert refresh.startswith("vsr_") and mail.startswith("vse_")
    assert len(refresh) == len(mail) == 47
    assert new_refresh_token() != refresh
    assert token_shape_ok(refresh, "vsr_") and not token_shape_ok(refresh, "vse_")
    assert not token_shape_ok(refresh + "x", "vsr_") and not token_shape_ok("vsr_short", "vsr_")
    digest = hash_token(refresh)
    assert digest == hashlib.sha256(refresh.encode()).digest() and len(digest) == 32
