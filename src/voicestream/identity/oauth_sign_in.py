"""Sign-in with Google, GitHub and Apple: authorization code + PKCE, then our own tokens.

``start`` stores the state's digest with the PKCE verifier and the OIDC nonce (ten minutes,
single use) and hands back the provider's authorization URL: the browser carries only the
state. ``finish`` takes the state back (a second callback with it finds nothing), exchanges the
code with the stored verifier, learns who the provider says this is, and signs that user in
exactly as a password would: a second factor, if on, is still asked for (an MFA challenge
instead of tokens).

Who the account is: the provider's stable subject id, linked to one user
(``oauth_identities``). A first sign-in links to the user with the same address only when the
provider vouches for the address (Google's and Apple's ``email_verified``, GitHub's primary
verified address); otherwise it is refused, whether or not such a user exists, since linking on
an address anyone can type into a profile hands over that account. With no such user, one is
created, with its own workspace, as sign-up would.

A provider that does not answer within ``oauth_timeout_seconds``, or answers 5xx, makes the
sign-in fail with 503 (ServiceUnavailable, ``retryable``); what it refuses (a code already used,
a verifier that does not match) is the request's fault: 400.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import aiohttp
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..config import ConfigError, Settings
from ..errors import AuthError, BadRequest, Forbidden, NotFound, ServiceUnavailable
from ..store import db
from ..store.oauth_identities import OAuthIdentityRepository, PendingSignIn
from .accounts import Accounts, TokenPair
from .accounts import _personal_workspace as personal_workspace
from .oauth_providers import (
    PROVIDER_NAMES,
    IdTokenRejected,
    Provider,
    ProviderAccount,
    UnknownSigningKey,
    apple_client_secret,
    authorization_request,
    check_id_token,
    configured_providers,
    github_account,
    oidc_account,
    state_digest,
)
from .second_factor import MfaChallenge

__all__ = ["STATE_TTL_S", "OAuthSignIn", "OAuthSignInResult", "open_oauth_sign_in"]

log = logging.getLogger(__name__)

STATE_TTL_S: Final = 600
_STATE_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]{20,200}")
_MAX_ANSWER_BYTES: Final = 256 * 1024  # a token answer, a key set, a profile
_MAX_ERROR_TEXT: Final = 300
_JWKS_TTL_S: Final = 3600.0
_BAD_STATE: Final = (
    "this sign-in is invalid, expired or already finished; start again at "
    "/v1/auth/oauth/{provider}/start"
)


@dataclass(frozen=True, slots=True)
class OAuthSignInResult:
    user_id: UUID
    outcome: TokenPair | MfaChallenge
    linked: bool  # this sign-in linked the provider account to the user
    created: bool  # and created the user


class _ProviderDown(Exception):
    """A provider call failed on the provider's side (unreachable, slow, 5xx, unreadable)."""


class OAuthSignIn:
    def __init__(
        self,
        providers: Mapping[str, Provider],
        repo: OAuthIdentityRepository,
        accounts: Accounts,
        *,
        timeout_s: float,
    ) -> None:
        self.providers = dict(providers)
        self.repo = repo
        self.accounts = accounts
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._jwks: dict[str, tuple[float, KeySet]] = {}

    def enabled(self) -> list[str]:
        return [name for name in PROVIDER_NAMES if name in self.providers]

    def provider(self, name: str) -> Provider:
        """Raises NotFound for a provider we do not know or that is not configured."""
        provider = self.providers.get(name)
        if provider is None:
            if name in PROVIDER_NAMES:
                raise NotFound(
                    f"sign-in with {name} is not set up on this server",
                    details={"provider": name, "enabled": self.enabled()},
                )
            raise NotFound(
                "no such sign-in provider",
                details={"provider": name[:40], "enabled": self.enabled()},
            )
        return provider

    # --- the two legs -------------------------------------------------------------------

    async def start(self, name: str, redirect_uri: str) -> str:
        """The provider's authorization URL for a new sign-in that returns to
        ``redirect_uri``."""
        provider = self.provider(name)
        request = authorization_request(provider, redirect_uri)
        pending = PendingSignIn(provider.name, request.code_verifier, request.nonce, redirect_uri)
        await self.repo.save_state(state_digest(request.state), pending, STATE_TTL_S)
        return request.url

    async def finish(self, name: str, params: Mapping[str, str]) -> OAuthSignInResult:
        """Finish a sign-in from the callback's parameters (query or form).

        Raises:
            NotFound: unknown or unconfigured provider.
            BadRequest: a bad, used or expired state; the provider's refusal (``error``); a
                missing or refused code.
            AuthError / Forbidden: an id_token that fails its checks; an address the provider
                does not vouch for; a disabled account.
            ServiceUnavailable: the provider did not answer properly.
        """
        provider = self.provider(name)
        state = params.get("state", "")
        pending = None
        if _STATE_SHAPE.fullmatch(state):
            # Taken first, whatever else is wrong: a state works once.
            pending = await self.repo.take_state(state_digest(state))
        if error := params.get("error"):
            description = params.get("error_description") or "no description"
            raise BadRequest(
                f"{name} did not sign you in: {error[:60]}: {description[:_MAX_ERROR_TEXT]}",
                details={"provider": name, "provider_error": error[:60]},
            )
        if pending is None or pending.provider != provider.name:
            raise BadRequest(_BAD_STATE.format(provider=name), details={"provider": name})
        code = params.get("code", "")
        if not code or len(code) > 2048:
            raise BadRequest(f"{name} sent no authorization code", details={"provider": name})
        try:
            account = await self._account(provider, code, pending)
        except _ProviderDown as exc:
            log.warning("sign-in with %s failed on the provider's side: %s", name, exc)
            raise ServiceUnavailable(
                f"{name} did not answer properly ({exc}); try signing in again shortly",
                details={"service": name},
            ) from None
        user_id, linked, created = await self._user_for(provider.name, account)
        return OAuthSignInResult(user_id, await self._sign_in(user_id, name), linked, created)

    # --- what the provider says ---------------------------------------------------------

    async def _account(
        self, provider: Provider, code: str, pending: PendingSignIn
    ) -> ProviderAccount:
        async with aiohttp.ClientSession(timeout=self._timeout) as http:
            tokens = await self._exchange(http, provider, code, pending)
            if provider.oidc:
                id_token = tokens.get("id_token")
                if not isinstance(id_token, str):
                    raise AuthError(f"{provider.name} sent no id_token; sign in again")
                claims = await self._checked_id_token(http, provider, id_token, pending.nonce)
                return oidc_account(claims)
            access = tokens.get("access_token")
            if not isinstance(access, str):
                raise _ProviderDown("its token answer has no access_token")
            headers = {
                "Authorization": f"Bearer {access}",
                "Accept": "application/vnd.github+json",
            }
            assert provider.user_url is not None and provider.emails_url is not None
            user = await _get_json(http, provider.user_url, headers)
            emails = await _get_json(http, provider.emails_url, headers)
            try:
                return github_account(user, emails)
            except ValueError as exc:
                raise _ProviderDown(str(exc)) from None

    async def _exchange(
        self, http: aiohttp.ClientSession, provider: Provider, code: str, pending: PendingSignIn
    ) -> dict[str, Any]:
        secret = provider.client_secret
        if provider.apple_key is not None:
            secret = apple_client_secret(provider)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
            "client_id": provider.client_id,
            "client_secret": secret or "",
        }
        try:
            async with http.post(
                provider.token_url, data=form, headers={"Accept": "application/json"}
            ) as response:
                status = response.status
                body = await _read_json(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _ProviderDown(f"token endpoint: {_reason(exc)}") from None
        if status >= 500 or status == 429:
            raise _ProviderDown(f"token endpoint answered {status}")
        # GitHub reports a refused code with 200 and an "error" member.
        if status >= 400 or "error" in body:
            error = str(body.get("error", status))[:60]
            description = str(body.get("error_description", ""))[:_MAX_ERROR_TEXT]
            raise BadRequest(
                f"{provider.name} refused the authorization code ({error}"
                f"{': ' + description if description else ''}); start again",
                details={"provider": provider.name, "provider_error": error},
            )
        return body

    async def _checked_id_token(
        self, http: aiohttp.ClientSession, provider: Provider, id_token: str, nonce: str
    ) -> dict[str, Any]:
        assert provider.issuer is not None
        keys = await self._keys(http, provider, fresh=False)
        for attempt in range(2):
            try:
                return check_id_token(
                    id_token, keys, issuer=provider.issuer, audience=provider.client_id, nonce=nonce
                )
            except UnknownSigningKey as exc:
                if attempt == 0:
                    # Providers rotate keys; a cached set may predate this token's.
                    keys = await self._keys(http, provider, fresh=True)
                    continue
                raise AuthError(
                    f"{provider.name}'s id_token was refused: {exc}",
                    details={"provider": provider.name},
                ) from None
            except IdTokenRejected as exc:
                log.warning("id_token from %s refused: %s", provider.name, exc)
                raise AuthError(
                    f"{provider.name}'s id_token was refused: {exc}",
                    details={"provider": provider.name},
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _keys(
        self, http: aiohttp.ClientSession, provider: Provider, *, fresh: bool
    ) -> KeySet:
        cached = self._jwks.get(provider.name)
        if cached is not None and not fresh and time.monotonic() - cached[0] < _JWKS_TTL_S:
            return cached[1]
        assert provider.jwks_url is not None
        document = await _get_json(http, provider.jwks_url, {"Accept": "application/json"})
        try:
            keys = KeySet.import_key_set(document)
        except (JoseError, KeyError, TypeError, ValueError) as exc:
            raise _ProviderDown(f"its key set is unreadable ({exc})") from None
        self._jwks[provider.name] = (time.monotonic(), keys)
        return keys

    # --- who it is here -----------------------------------------------------------------

    async def _user_for(self, provider: str, account: ProviderAccount) -> tuple[UUID, bool, bool]:
        verified = account.email if account.email_verified else None
        user_id = await self.repo.user_of(provider, account.subject, verified)
        if user_id is not None:
            return user_id, False, False
        if verified is None:
            # The same answer whether or not someone here has that address: it must not tell.
            raise Forbidden(
                f"{provider} does not confirm that the e-mail address of this account is "
                "yours, so it cannot sign in here: verify the address with "
                f"{provider}{' (a verified primary address)' if provider == 'github' else ''}, "
                "then try again",
                details={"provider": provider, "reason": "email_not_verified"},
            )
        users = self.accounts.users
        created = False
        user = await users.by_email(verified)
        if user is None:
            user = await users.sign_up(verified, None, personal_workspace(verified), verified=True)
            created = user is not None
            # None: someone signed up with the address meanwhile; link to them.
            user = user or await users.by_email(verified)
        if user is None:  # pragma: no cover - deleted in the same instant
            raise ServiceUnavailable("the account changed meanwhile; sign in again")
        linked_to, linked = await self.repo.link(provider, account.subject, user.id, verified)
        return linked_to, linked, created and linked_to == user.id

    async def _sign_in(self, user_id: UUID, provider: str) -> TokenPair | MfaChallenge:
        user = await self.accounts.users.get(user_id)
        if user is None or not user.active:
            raise AuthError("this account cannot sign in")
        factors = self.accounts.second_factors
        if factors is not None:
            # As after a password: a second factor, when on, stands between this and tokens.
            challenge = await factors.challenge_for(user_id, f"oauth_{provider}")
            if challenge is not None:
                return challenge
        return await self.accounts.sign_in_with_second_factor(user_id)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > _MAX_ANSWER_BYTES:
            raise _ProviderDown(f"an answer over {_MAX_ANSWER_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The answer's JSON object, read within a bound; _ProviderDown if it is not one."""
    try:
        body = json.loads(await _read_bounded(response))
    except ValueError:
        raise _ProviderDown(f"a {response.status} answer that is not JSON") from None
    if not isinstance(body, dict):
        raise _ProviderDown("a JSON answer that is not an object")
    return body


async def _get_json(http: aiohttp.ClientSession, url: str, headers: Mapping[str, str]) -> Any:
    try:
        async with http.get(url, headers=headers) as response:
            if response.status != 200:
                raise _ProviderDown(f"{response.url.path} answered {response.status}")
            raw = await _read_bounded(response)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _ProviderDown(f"{url}: {_reason(exc)}") from None
    try:
        return json.loads(raw)
    except ValueError:
        raise _ProviderDown(f"{url} answered something that is not JSON") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}"[:200]


async def open_oauth_sign_in(settings: Settings, pool: db.Pool, accounts: Accounts) -> OAuthSignIn:
    """Sign-in with the configured providers. Raises ConfigError for an unusable Apple key."""
    path = settings.oauth_apple_private_key_path
    key_pem = None
    if settings.oauth_apple_client_id is not None and path is not None:
        key_pem = await asyncio.to_thread(_read_key, path)
    providers = configured_providers(settings, key_pem)
    return OAuthSignIn(
        providers,
        OAuthIdentityRepository(pool),
        accounts,
        timeout_s=settings.oauth_timeout_seconds,
    )


def _read_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{Settings.env_name('oauth_apple_private_key_path')}: cannot read {path}: "
            f"{exc.strerror or exc}"
        ) from None
