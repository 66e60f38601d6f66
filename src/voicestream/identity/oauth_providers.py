"""Sign-in providers (Google, GitHub, Apple): where they live and how to read what they say.

Pure: no I/O. ``identity/oauth_sign_in.py`` does the talking; this module builds the
authorization URL (``authlib``: ``state``, OIDC ``nonce``, PKCE S256), signs Apple's client
secret, checks an id_token against a provider's keys, and picks GitHub's e-mail address.

Every provider endpoint moves with one base-URL setting per provider (for a proxy, or the
tests' local fakes): the paths stay the real ones, and for Google and Apple the base is then
also the issuer the id_token must name.

Id tokens: the signature against the provider's JWKS, and ``iss``, ``aud``, ``exp``, ``iat``,
``sub`` and ``nonce``, all required. Only asymmetric algorithms are accepted (RS256, which both
Google and Apple use today, and ES256), each bound to its key type by ``joserfc``, so a token
signed with the public key as an HMAC secret is refused. ``joserfc`` is authlib's own JOSE
library, which replaced ``authlib.jose``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from ..config import ConfigError, Settings

__all__ = [
    "ID_TOKEN_ALGORITHMS",
    "PROVIDER_NAMES",
    "AuthorizationRequest",
    "IdTokenRejected",
    "Provider",
    "ProviderAccount",
    "ProviderName",
    "UnknownSigningKey",
    "apple_client_secret",
    "authorization_request",
    "check_id_token",
    "configured_providers",
    "github_account",
    "oidc_account",
    "state_digest",
]

ProviderName = Literal["google", "github", "apple"]
PROVIDER_NAMES: Final[tuple[ProviderName, ...]] = get_args(ProviderName)
ID_TOKEN_ALGORITHMS: Final = ("RS256", "ES256")
# A clock a few seconds off at either end must not fail sign-ins.
_LEEWAY_S: Final = 60
# Apple accepts a client secret valid for up to six months; a fresh one per exchange needs
# minutes at most.
_APPLE_SECRET_TTL_S: Final = 300


@dataclass(frozen=True, slots=True)
class Provider:
    name: ProviderName
    client_id: str
    client_secret: str | None  # Google and GitHub; Apple signs one per exchange
    authorize_url: str
    token_url: str
    scope: str
    issuer: str | None = None  # OpenID Connect providers (Google, Apple)
    jwks_url: str | None = None
    user_url: str | None = None  # GitHub's REST API
    emails_url: str | None = None
    form_post: bool = False  # Apple posts the callback as a form
    apple_team_id: str | None = None
    apple_key_id: str | None = None
    apple_key: ECKey | None = None

    @property
    def oidc(self) -> bool:
        return self.issuer is not None


def _google(settings: Settings) -> Provider | None:
    if settings.oauth_google_client_id is None:
        return None
    base = settings.oauth_google_base_url
    return Provider(
        name="google",
        client_id=settings.oauth_google_client_id,
        client_secret=settings.oauth_google_client_secret,
        authorize_url=f"{base or 'https://accounts.google.com'}/o/oauth2/v2/auth",
        token_url=f"{base or 'https://oauth2.googleapis.com'}/token",
        jwks_url=f"{base or 'https://www.googleapis.com'}/oauth2/v3/certs",
        issuer=base or "https://accounts.google.com",
        scope="openid email profile",
    )


def _github(settings: Settings) -> Provider | None:
    if settings.oauth_github_client_id is None:
        return None
    base = settings.oauth_github_base_url
    return Provider(
        name="github",
        client_id=settings.oauth_github_client_id,
        client_secret=settings.oauth_github_client_secret,
        authorize_url=f"{base or 'https://github.com'}/login/oauth/authorize",
        token_url=f"{base or 'https://github.com'}/login/oauth/access_token",
        user_url=f"{base or 'https://api.github.com'}/user",
        emails_url=f"{base or 'https://api.github.com'}/user/emails",
        scope="read:user user:email",
    )


def _apple(settings: Settings, key_pem: bytes | None) -> Provider | None:
    if settings.oauth_apple_client_id is None:
        return None
    base = settings.oauth_apple_base_url or "https://appleid.apple.com"
    try:
        key = ECKey.import_key(key_pem or b"")
    except (JoseError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"{Settings.env_name('oauth_apple_private_key_path')}: not an EC private key in "
            f"PEM form (the .p8 file Apple hands out): {exc}"
        ) from None
    if not key.is_private or key.curve_name != "P-256":
        raise ConfigError(
            f"{Settings.env_name('oauth_apple_private_key_path')}: Apple's keys are P-256 "
            "private keys; this one is not"
        )
    return Provider(
        name="apple",
        client_id=settings.oauth_apple_client_id,
        client_secret=None,
        authorize_url=f"{base}/auth/authorize",
        token_url=f"{base}/auth/token",
        jwks_url=f"{base}/auth/keys",
        issuer=base,
        scope="name email",
        form_post=True,
        apple_team_id=settings.oauth_apple_team_id,
        apple_key_id=settings.oauth_apple_key_id,
        apple_key=key,
    )


def configured_providers(settings: Settings, apple_key_pem: bytes | None) -> dict[str, Provider]:
    """The providers whose client id is set. Raises ConfigError for an unusable Apple key."""
    found = (_google(settings), _github(settings), _apple(settings, apple_key_pem))
    return {p.name: p for p in found if p is not None}


# --- the authorization request ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    url: str
    state: str  # travels through the browser; only its digest is stored
    code_verifier: str  # stays on the server
    nonce: str  # bound into the id_token by OpenID Connect providers


def state_digest(state: str) -> bytes:
    return hashlib.sha256(state.encode()).digest()


def authorization_request(provider: Provider, redirect_uri: str) -> AuthorizationRequest:
    # Letters and digits: 43 of them carry about 256 bits; the verifier's 64 sit inside
    # RFC 7636's 43 to 128.
    state, verifier, nonce = generate_token(43), generate_token(64), generate_token(32)
    extra: dict[str, str] = {
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    if provider.oidc:
        extra["nonce"] = nonce
    if provider.form_post:
        # Apple sends the e-mail scope's answer only to a form post.
        extra["response_mode"] = "form_post"
    url = prepare_grant_uri(
        provider.authorize_url,
        provider.client_id,
        "code",
        redirect_uri=redirect_uri,
        scope=provider.scope,
        state=state,
        **extra,
    )
    return AuthorizationRequest(str(url), state, verifier, nonce)


def apple_client_secret(provider: Provider, now: float | None = None) -> str:
    """The ES256 JWT Apple takes as the client secret, signed with the team's key."""
    assert provider.apple_key is not None and provider.issuer is not None
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": provider.apple_team_id,
        "iat": issued,
        "exp": issued + _APPLE_SECRET_TTL_S,
        "aud": provider.issuer,
        "sub": provider.client_id,
    }
    header = {"alg": "ES256", "kid": provider.apple_key_id}
    return jwt.encode(header, claims, provider.apple_key, algorithms=["ES256"])


# --- what the provider says about the account -------------------------------------------


class IdTokenRejected(Exception):
    """The id_token is not one this sign-in may trust; the message says why."""


class UnknownSigningKey(IdTokenRejected):
    """Signed with a key the cached JWKS lacks (the provider may have rotated its keys)."""


@dataclass(frozen=True, slots=True)
class ProviderAccount:
    subject: str  # the provider's stable id for the account
    email: str | None
    email_verified: bool


def check_id_token(
    id_token: str, keys: KeySet, *, issuer: str, audience: str, nonce: str, now: float | None = None
) -> dict[str, Any]:
    """The id_token's claims, once its signature and claims check out.

    Raises:
        UnknownSigningKey: its ``kid`` is not among ``keys`` (fetch them again, then retry).
        IdTokenRejected: anything else wrong with it.
    """
    try:
        token = jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
    except JoseError as exc:
        if exc.error == "invalid_key_id":
            raise UnknownSigningKey("signed with a key the provider does not publish") from None
        raise IdTokenRejected(f"bad signature or format ({exc.error})") from None
    except ValueError as exc:  # malformed base64 or JSON inside the compact form
        raise IdTokenRejected(f"malformed ({exc})") from None
    # Google's older tokens name the issuer without the scheme.
    issuers = [issuer, issuer.removeprefix("https://")]
    registry = jwt.JWTClaimsRegistry(
        now=int(time.time() if now is None else now),
        leeway=_LEEWAY_S,
        iss={"essential": True, "values": issuers},
        aud={"essential": True, "value": audience},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(token.claims)
    except JoseError as exc:
        raise IdTokenRejected(exc.description or exc.error) from None
    return token.claims


def _truthy(value: object) -> bool:
    # Apple has sent email_verified as the string "true".
    return value is True or value == "true"


def oidc_account(claims: dict[str, Any]) -> ProviderAccount:
    email = claims.get("email")
    return ProviderAccount(
        subject=str(claims["sub"]),
        email=email if isinstance(email, str) and email else None,
        email_verified=_truthy(claims.get("email_verified")),
    )


def github_account(user: object, emails: object) -> ProviderAccount:
    """GitHub's ``/user`` and ``/user/emails`` answers: only a primary, verified address
    counts (the profile's public e-mail is whatever the user typed). Raises ValueError if
    ``/user`` has no numeric id."""
    if not isinstance(user, dict) or not isinstance(user.get("id"), int):
        raise ValueError("GitHub's /user answer has no numeric id")
    chosen = None
    for entry in emails if isinstance(emails, list) else []:
        if isinstance(entry, dict) and entry.get("primary") is True:
            address = entry.get("email")
            if isinstance(address, str) and address:
                chosen = (address, entry.get("verified") is True)
    return ProviderAccount(
        subject=str(user["id"]),
        email=chosen[0] if chosen else None,
        email_verified=chosen[1] if chosen else False,
    )
