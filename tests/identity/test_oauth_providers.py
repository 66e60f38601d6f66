"""The pure parts of provider sign-in: the authorization URL, Apple's client secret, the
id_token checks, and which GitHub address counts (``identity/oauth_providers.py``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from voicestream.config import ConfigError, load_settings
from voicestream.identity.oauth_providers import (
    IdTokenRejected,
    UnknownSigningKey,
    apple_client_secret,
    authorization_request,
    check_id_token,
    configured_providers,
    github_account,
    oidc_account,
)

ISSUER = "https://accounts.example"
AUDIENCE = "client-1"
NONCE = "n-0S6_WzA2Mj"


@pytest.fixture(scope="module")
def rsa() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "r1"})


@pytest.fixture(scope="module")
def apple_pem() -> bytes:
    return ECKey.generate_key("P-256").as_pem(private=True)


def _providers(apple_pem: bytes | None = None, **env: str) -> dict[str, Any]:
    values = {
        "VOICESTREAM_OAUTH_GOOGLE_CLIENT_ID": "g",
        "VOICESTREAM_OAUTH_GOOGLE_CLIENT_SECRET": "gs",
        "VOICESTREAM_OAUTH_GITHUB_CLIENT_ID": "h",
        "VOICESTREAM_OAUTH_GITHUB_CLIENT_SECRET": "hs",
        "VOICESTREAM_OAUTH_APPLE_CLIENT_ID": "com.example.app",
        "VOICESTREAM_OAUTH_APPLE_TEAM_ID": "TEAM",
        "VOICESTREAM_OAUTH_APPLE_KEY_ID": "KID",
        "VOICESTREAM_OAUTH_APPLE_PRIVATE_KEY_PATH": "/unused/here.p8",
        **env,
    }
    return configured_providers(load_settings(values), apple_pem)


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "42", "iat": now, "exp": now + 300}
    claims["nonce"] = NONCE
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _check(token: str, keys: KeySet) -> dict[str, Any]:
    return check_id_token(token, keys, issuer=ISSUER, audience=AUDIENCE, nonce=NONCE)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_the_authorization_url_carries_state_nonce_and_an_s256_challenge(apple_pem) -> None:
    providers = _providers(apple_pem)
    for name in ("google", "github", "apple"):
        request = authorization_request(providers[name], "https://voice.example/cb")
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        digest = hashlib.sha256(request.code_verifier.encode()).digest()
        assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        assert query["code_challenge_method"] == "S256"
        assert query["state"] == request.state and len(request.state) >= 43
        assert 43 <= len(request.code_verifier) <= 128
        assert request.code_verifier not in request.url  # it never leaves the server
        assert query["redirect_uri"] == "https://voice.example/cb"
        assert ("nonce" in query) == (name != "github")  # OpenID Connect only
        assert (query.get("response_mode") == "form_post") == (name == "apple")
    two = {authorization_request(providers["google"], "x").state for _ in range(2)}
    assert len(two) == 2


def test_one_base_url_moves_every_endpoint_and_the_issuer(apple_pem) -> None:
    providers = _providers(
        apple_pem,
        VOICESTREAM_OAUTH_GOOGLE_BASE_URL="http://127.0.0.1:9/google/",
        VOICESTREAM_OAUTH_GITHUB_BASE_URL="http://127.0.0.1:9/github",
    )
    google, github, apple = providers["google"], providers["github"], providers["apple"]
    assert google.issuer == "http://127.0.0.1:9/google"
    for url in (google.authorize_url, google.token_url, google.jwks_url):
        assert url is not None and url.startswith("http://127.0.0.1:9/google/")
    for url in (github.authorize_url, github.token_url, github.user_url, github.emails_url):
        assert url is not None and url.startswith("http://127.0.0.1:9/github/")
    assert apple.issuer == "https://appleid.apple.com"  # untouched: the real one
    assert providers.keys() == {"google", "github", "apple"}
    assert _providers(apple_pem, VOICESTREAM_OAUTH_GITHUB_CLIENT_ID="").keys() == {
        "google",
        "apple",
    }


def test_an_unusable_apple_key_stops_the_start() -> None:
    with pytest.raises(ConfigError, match="PRIVATE_KEY_PATH"):
        _providers(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    rsa_pem = RSAKey.generate_key(2048).as_pem(private=True)
    with pytest.raises(ConfigError, match="PRIVATE_KEY_PATH"):
        _providers(rsa_pem)


def test_apples_client_secret_is_an_es256_jwt_of_the_team(apple_pem) -> None:
    apple = _providers(apple_pem)["apple"]
    secret = apple_client_secret(apple, now=1_700_000_000)
    public = ECKey.import_key(ECKey.import_key(apple_pem).as_dict(private=False))
    token = jwt.decode(secret, public, algorithms=["ES256"])
    assert token.header == {"typ": "JWT", "alg": "ES256", "kid": "KID"}
    assert token.claims == {
        "iss": "TEAM",
        "iat": 1_700_000_000,
        "exp": 1_700_000_300,
        "aud": "https://appleid.apple.com",
        "sub": "com.example.app",
    }


def test_a_good_id_token_passes(rsa) -> None:
    keys = KeySet([rsa])
    token = jwt.encode({"alg": "RS256", "kid": "r1"}, _claims(email="a@x.io"), rsa)
    claims = _check(token, keys)
    assert claims["sub"] == "42"
    # Google's older tokens name the issuer without the scheme.
    token = jwt.encode({"alg": "RS256", "kid": "r1"}, _claims(iss="accounts.example"), rsa)
    assert _check(token, keys)["iss"] == "accounts.example"


@pytest.mark.parametrize(
    "changes",
    [
        {"nonce": "another"},
        {"nonce": None},
        {"aud": "client-2"},
        {"aud": None},
        {"iss": "https://evil.example"},
        {"exp": 1_000_000_000},  # long past; fixed, so xdist workers collect the same id
        {"exp": None},
        {"iat": None},
        {"sub": None},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_claims_that_do_not_check_out_are_refused(rsa, changes) -> None:
    token = jwt.encode({"alg": "RS256", "kid": "r1"}, _claims(**changes), rsa)
    with pytest.raises(IdTokenRejected):
        _check(token, KeySet([rsa]))


def test_forged_signatures_are_refused(rsa) -> None:
    keys = KeySet([rsa])
    good = jwt.encode({"alg": "RS256", "kid": "r1"}, _claims(), rsa)
    header, payload, signature = good.split(".")
    # alg "none", and HS256 keyed with the public key (algorithm confusion).
    unsigned = f"{_b64({'alg': 'none', 'kid': 'r1'})}.{payload}."
    # Built by hand: joserfc itself will not key an HMAC with a public key.
    confused_head = _b64({"alg": "HS256", "kid": "r1"})
    mac = hmac.new(rsa.as_pem(private=False), f"{confused_head}.{payload}".encode(), "sha256")
    confused = (
        f"{confused_head}.{payload}.{base64.urlsafe_b64encode(mac.digest()).rstrip(b'=').decode()}"
    )
    flipped = f"{header}.{payload}.{signature[:-4]}AAAA"
    other = RSAKey.generate_key(2048, parameters={"kid": "r1"})
    impostor = jwt.encode({"alg": "RS256", "kid": "r1"}, _claims(), other)
    for token in (unsigned, confused, flipped, impostor, "not.a.jwt", "x"):
        with pytest.raises(IdTokenRejected):
            _check(token, keys)


def test_an_unknown_key_id_asks_for_fresh_keys(rsa) -> None:
    rotated = RSAKey.generate_key(2048, parameters={"kid": "r2"})
    token = jwt.encode({"alg": "RS256", "kid": "r2"}, _claims(), rotated)
    with pytest.raises(UnknownSigningKey):
        _check(token, KeySet([rsa]))
    assert _check(token, KeySet([rsa, rotated]))["sub"] == "42"


def test_what_counts_as_a_verified_address() -> None:
    assert oidc_account({"sub": "1", "email": "a@x.io", "email_verified": True}).email_verified
    assert oidc_account({"sub": "1", "email": "a@x.io", "email_verified": "true"}).email_verified
    for flag in (False, "false", None, 1, "yes"):
        claims = {"sub": "1", "email": "a@x.io", "email_verified": flag}
        assert not oidc_account(claims).email_verified
    user = {"id": 7, "email": "typed@anything.io"}
    emails = [
        {"email": "old@x.io", "primary": False, "verified": True},
        {"email": "main@x.io", "primary": True, "verified": True},
    ]
    account = github_account(user, emails)
    assert (account.subject, account.email, account.email_verified) == ("7", "main@x.io", True)
    emails[1]["verified"] = False
    assert not github_account(user, emails).email_verified  # a verified secondary is no help
    assert github_account(user, []).email is None  # the profile's address never counts
    with pytest.raises(ValueError):
        github_account({"id": "7"}, emails)
