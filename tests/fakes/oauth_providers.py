"""Small local fakes of Google's, GitHub's and Apple's sign-in, for the OAuth tests.

One aiohttp server on 127.0.0.1 (ephemeral port), one path prefix per provider, each serving
the provider's real paths, so the server under test reaches them through its base-URL
settings (``base_url(provider)``):

- ``/google``: ``/o/oauth2/v2/auth``, ``/token``, ``/oauth2/v3/certs``; id_tokens signed RS256.
- ``/github``: ``/login/oauth/authorize``, ``/login/oauth/access_token``, ``/user``,
  ``/user/emails``; no id_token (plain OAuth 2), a refused code answered 200 with ``error``.
- ``/apple``: ``/auth/authorize`` (answers an auto-submitting form: ``form_post``),
  ``/auth/token``, ``/auth/keys``; id_tokens signed ES256, ``email_verified`` as the string
  Apple sends; the client secret must be an ES256 JWT signed with the team key the fake made
  (``apple_team_key_pem``, for the server's settings).

The authorize page approves at once, as whichever account the test chose with ``approve``, and
sends the browser back with a code and the state. The token endpoint checks what a real one
does: the client's credentials, that the code is live and unused, the redirect URI, and the
PKCE verifier against the challenge the authorize request carried (S256).

Misbehaviour is scripted per provider: ``deny`` (the person declines: ``access_denied``),
``tamper`` (the next id_token has a wrong nonce, audience, issuer or signature, or is
expired), ``stall_token`` (the token endpoint says nothing until ``release_stalls`` or
``stall_s``, then 503), ``keys_down`` (the key set answers 503), ``rotate_key`` (a new signing
key the cached key set lacks).

    async with FakeOAuthProviders() as fake:
        fake.approve("google", FakeAccount("1234", "ann@example.com"))
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import html
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlencode

from aiohttp import web
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

__all__ = ["CLIENTS", "FakeAccount", "FakeOAuthProviders", "Tamper"]

Provider = Literal["google", "github", "apple"]
Tamper = Literal["nonce", "aud", "iss", "expired", "signature"]

# (client id, client secret); Apple's secret is a JWT the server signs, checked with the key.
CLIENTS: Final[dict[str, tuple[str, str | None]]] = {
    "google": ("google-client.apps.example", "google-secret"),
    "github": ("Iv1.github-client", "github-secret"),
    "apple": ("com.example.voicestream", None),
}
APPLE_TEAM_ID: Final = "TEAM123456"
APPLE_KEY_ID: Final = "KEY1234567"


@dataclass
class FakeAccount:
    subject: str
    email: str | None
    email_verified: bool = True
    # GitHub only: more addresses, listed after the account's primary one.
    other_emails: list[tuple[str, bool]] = field(default_factory=list)


@dataclass
class _Grant:
    provider: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    account: FakeAccount


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _oauth_error(error: str, description: str, status: int = 400) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


class FakeOAuthProviders:
    def __init__(self) -> None:
        self.url = ""
        self.accounts: dict[str, FakeAccount] = {}
        self.deny: set[str] = set()
        self.tamper: dict[str, Tamper] = {}
        self.stall_token: set[str] = set()
        self.stall_s = 30.0
        self.keys_down: set[str] = set()
        self.token_requests: list[dict[str, str]] = []
        self._grants: dict[str, _Grant] = {}
        self._github_tokens: dict[str, FakeAccount] = {}
        self._signing: dict[str, RSAKey | ECKey] = {}
        self._apple_team_key: ECKey | None = None
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()

    # -- scripting -------------------------------------------------------------------------

    def base_url(self, provider: str) -> str:
        return f"{self.url}/{provider}"

    def approve(self, provider: str, account: FakeAccount) -> None:
        """Who the provider's sign-in page signs in as from now on."""
        self.accounts[provider] = account

    def rotate_key(self, provider: str) -> None:
        """Sign from now on with a new key (Apple's or Google's kind), under a new kid."""
        kid = f"{provider}-{secrets.token_hex(4)}"
        if provider == "apple":
            self._signing[provider] = ECKey.generate_key("P-256", parameters={"kid": kid})
        else:
            self._signing[provider] = RSAKey.generate_key(2048, parameters={"kid": kid})

    def release_stalls(self) -> None:
        """Let stalled token requests answer (they no longer hold the fake's shutdown)."""
        self._released.set()
        self._released = asyncio.Event()

    @property
    def apple_team_key_pem(self) -> bytes:
        assert self._apple_team_key is not None
        return self._apple_team_key.as_pem(private=True)

    # -- lifetime ----------------------------------------------------------------------------

    async def __aenter__(self) -> FakeOAuthProviders:
        # RSA key generation takes a moment of CPU: off the loop the servers share.
        google = await asyncio.to_thread(RSAKey.generate_key, 2048, parameters={"kid": "google-1"})
        self._signing = {
            "google": google,
            "apple": ECKey.generate_key("P-256", parameters={"kid": "apple-1"}),
        }
        self._apple_team_key = ECKey.generate_key("P-256", parameters={"kid": APPLE_KEY_ID})
        app = web.Application()
        app.router.add_get("/google/o/oauth2/v2/auth", self._authorize("google"))
        app.router.add_post("/google/token", self._token("google"))
        app.router.add_get("/google/oauth2/v3/certs", self._keys("google"))
        app.router.add_get("/github/login/oauth/authorize", self._authorize("github"))
        app.router.add_post("/github/login/oauth/access_token", self._token("github"))
        app.router.add_get("/github/user", self._github_user)
        app.router.add_get("/github/user/emails", self._github_emails)
        app.router.add_get("/apple/auth/authorize", self._authorize("apple"))
        app.router.add_post("/apple/auth/token", self._token("apple"))
        app.router.add_get("/apple/auth/keys", self._keys("apple"))
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the authorize page ------------------------------------------------------------------

    def _authorize(self, provider: Provider) -> Any:
        async def handler(request: web.Request) -> web.Response:
            q = request.query
            client_id, _ = CLIENTS[provider]
            problems = [
                name
                for name, ok in (
                    ("client_id", q.get("client_id") == client_id),
                    ("response_type", q.get("response_type") == "code"),
                    ("redirect_uri", bool(q.get("redirect_uri"))),
                    ("state", bool(q.get("state"))),
                    ("code_challenge", len(q.get("code_challenge", "")) == 43),
                    ("code_challenge_method", q.get("code_challenge_method") == "S256"),
                    ("nonce", provider == "github" or bool(q.get("nonce"))),
                    ("response_mode", provider != "apple" or q.get("response_mode") == "form_post"),
                )
                if not ok
            ]
            if problems:
                return web.Response(status=400, text=f"bad authorize request: {problems}")
            redirect_uri, state = q["redirect_uri"], q["state"]
            if provider in self.deny:
                answer = {
                    "error": "access_denied",
                    "error_description": "The user declined to sign in.",
                    "state": state,
                }
            else:
                code = secrets.token_urlsafe(24)
                self._grants[code] = _Grant(
                    provider,
                    redirect_uri,
                    q["code_challenge"],
                    q.get("nonce"),
                    self.accounts[provider],
                )
                answer = {"code": code, "state": state}
            if provider == "apple":
                # form_post: a page that posts the answer back to the redirect URI.
                inputs = "".join(
                    f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                    for k, v in answer.items()
                )
                page = (
                    f'<html><body onload="document.forms[0].submit()">'
                    f'<form method="post" action="{html.escape(redirect_uri)}">{inputs}</form>'
                    "</body></html>"
                )
                return web.Response(text=page, content_type="text/html")
            return web.Response(
                status=302, headers={"Location": f"{redirect_uri}?{urlencode(answer)}"}
            )

        return handler

    # -- the token endpoint ------------------------------------------------------------------

    def _token(self, provider: Provider) -> Any:
        async def handler(request: web.Request) -> web.Response:
            form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
            self.token_requests.append(form)
            if provider in self.stall_token:
                # Until the test lets go (or stall_s passes): longer than the server waits.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), self.stall_s)
                return web.Response(status=503, text="stalled")
            if (refusal := self._client_refusal(provider, form)) is not None:
                return _oauth_error("invalid_client", refusal, 401)
            grant = self._grants.pop(form.get("code", ""), None)
            if grant is None or grant.provider != provider:
                return self._refused(provider, "the code is unknown or already used")
            if form.get("grant_type") != "authorization_code":
                return self._refused(provider, "grant_type must be authorization_code")
            if form.get("redirect_uri") != grant.redirect_uri:
                return self._refused(provider, "redirect_uri does not match")
            if _s256(form.get("code_verifier", "")) != grant.challenge:
                return self._refused(provider, "code_verifier does not match the challenge")
            access = f"{provider}-access-{secrets.token_urlsafe(16)}"
            if provider == "github":
                self._github_tokens[access] = grant.account
                return web.json_response(
                    {
                        "access_token": access,
                        "token_type": "bearer",
                        "scope": "read:user,user:email",
                    }
                )
            return web.json_response(
                {
                    "access_token": access,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "id_token": self._id_token(provider, grant),
                }
            )

        return handler

    def _refused(self, provider: str, description: str) -> web.Response:
        if provider == "github":
            # GitHub answers a refused code with 200 and an error member.
            return web.json_response(
                {"error": "bad_verification_code", "error_description": description}
            )
        return _oauth_error("invalid_grant", description)

    def _client_refusal(self, provider: str, form: dict[str, str]) -> str | None:
        client_id, secret = CLIENTS[provider]
        if form.get("client_id") != client_id:
            return "unknown client_id"
        if provider != "apple":
            return None if form.get("client_secret") == secret else "wrong client_secret"
        assert self._apple_team_key is not None
        try:
            token = jwt.decode(form.get("client_secret", ""), self._apple_team_key, ["ES256"])
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": APPLE_TEAM_ID},
                sub={"essential": True, "value": client_id},
                aud={"essential": True, "value": self.base_url("apple")},
                exp={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            return f"the client secret JWT is not valid: {exc}"
        if token.header.get("kid") != APPLE_KEY_ID:
            return "the client secret JWT names another key"
        return None

    def _id_token(self, provider: str, grant: _Grant) -> str:
        now = int(time.time())
        account = grant.account
        claims: dict[str, Any] = {
            "iss": self.base_url(provider),
            "aud": CLIENTS[provider][0],
            "sub": account.subject,
            "iat": now,
            "exp": now + 600,
            "nonce": grant.nonce,
        }
        if account.email is not None:
            claims["email"] = account.email
            verified = account.email_verified
            # Apple has sent the flag as a string.
            claims["email_verified"] = (
                ("true" if verified else "false") if provider == "apple" else verified
            )
        match self.tamper.pop(provider, None):
            case "nonce":
                claims["nonce"] = "not-the-nonce-you-sent"
            case "aud":
                claims["aud"] = "someone-elses-client"
            case "iss":
                claims["iss"] = "https://issuer.example"
            case "expired":
                claims["iat"], claims["exp"] = now - 7200, now - 3600
            case "signature":
                return self._signed(provider, claims)[:-6] + "AAAAAA"
        return self._signed(provider, claims)

    def _signed(self, provider: str, claims: dict[str, Any]) -> str:
        key = self._signing[provider]
        alg = "ES256" if provider == "apple" else "RS256"
        return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])

    def _keys(self, provider: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            if provider in self.keys_down:
                return web.Response(status=503, text="keys unavailable")
            public = self._signing[provider].as_dict(private=False)
            return web.json_response({"keys": [public]})

        return handler

    # -- GitHub's REST API -------------------------------------------------------------------

    def _github_account(self, request: web.Request) -> FakeAccount:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        account = self._github_tokens.get(token)
        if account is None:
            raise web.HTTPUnauthorized(text='{"message": "Bad credentials"}')
        return account

    async def _github_user(self, request: web.Request) -> web.Response:
        account = self._github_account(request)
        # The profile's public address is whatever the user typed: never to be trusted.
        return web.json_response(
            {"id": int(account.subject), "login": f"user{account.subject}", "email": account.email}
        )

    async def _github_emails(self, request: web.Request) -> web.Response:
        account = self._github_account(request)
        emails = []
        if account.email is not None:
            emails.append(
                {"email": account.email, "primary": True, "verified": account.email_verified}
            )
        emails += [
            {"email": address, "primary": False, "verified": verified}
            for address, verified in account.other_emails
        ]
        return web.json_response(emails)
