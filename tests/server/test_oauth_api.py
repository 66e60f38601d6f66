"""Sign-in with Google, GitHub and Apple, end to end against local fakes of the three.

A server of this module's own has the three providers configured, each pointed at
``tests/fakes/oauth_providers.py`` through its base-URL setting; the fake's authorize page
approves at once as the account a test chose, so a whole sign-in is: start → the provider's
page → the callback (a redirect, or Apple's form post) → tokens that work on /v1/auth/me.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pyotp
import pytest
from auth_calls import auth_call, house_error, new_address

from fakes.oauth_providers import (
    APPLE_KEY_ID,
    APPLE_TEAM_ID,
    CLIENTS,
    FakeAccount,
    FakeOAuthProviders,
    _s256,
)
from helpers import StartedServer, settings_for_test_server, start_test_server
from voicestream.rest.auth import ACCOUNTS
from voicestream.rest.resources import POOL
from voicestream.store.users import UserRepository

PROVIDERS = ("google", "github", "apple")
PASSWORD = "correct horse battery staple 42"


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeOAuthProviders]:
    async with FakeOAuthProviders() as started:
        yield started


@pytest.fixture(scope="module")
async def oauth_server(
    embedded_services: Any,
    registry: Any,
    fake: FakeOAuthProviders,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[StartedServer]:
    data = tmp_path_factory.mktemp("oauth-server")
    key_path = data / "AuthKey.p8"
    key_path.write_bytes(fake.apple_team_key_pem)
    settings = settings_for_test_server(
        embedded_services,
        data,
        oauth_google_client_id=CLIENTS["google"][0],
        oauth_google_client_secret=CLIENTS["google"][1],
        oauth_google_base_url=fake.base_url("google"),
        oauth_github_client_id=CLIENTS["github"][0],
        oauth_github_client_secret=CLIENTS["github"][1],
        oauth_github_base_url=fake.base_url("github"),
        oauth_apple_client_id=CLIENTS["apple"][0],
        oauth_apple_team_id=APPLE_TEAM_ID,
        oauth_apple_key_id=APPLE_KEY_ID,
        oauth_apple_private_key_path=key_path,
        oauth_apple_base_url=fake.base_url("apple"),
        # Short, so the stalled-provider test is quick; the fake answers in milliseconds.
        oauth_timeout_seconds=2.0,
    )
    async with start_test_server(settings, registry) as started:
        yield started


def _account(email: str | None = None, *, verified: bool = True) -> FakeAccount:
    # GitHub's ids are numbers; the others' any string: a number suits all three.
    subject = str(uuid.uuid4().int % 10**12)
    return FakeAccount(subject, email if email is not None else new_address(), verified)


class _Form(HTMLParser):
    """The form of Apple's form_post page: where it posts, and its hidden fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = found["action"]
        elif tag == "input":
            self.fields[found["name"]] = found["value"]


async def _start(http: aiohttp.ClientSession, server: StartedServer, provider: str) -> str:
    """The provider's authorization URL that ``start`` redirects to."""
    url = f"{server.url}/v1/auth/oauth/{provider}/start"
    async with http.get(url, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        assert r.headers["Cache-Control"] == "no-store"
        return r.headers["Location"]


async def _provider_answer(
    http: aiohttp.ClientSession, authorize_url: str
) -> tuple[str, dict[str, str]]:
    """Visit the provider's page: (the callback URL, the parameters it sends back)."""
    async with http.get(authorize_url, allow_redirects=False) as r:
        if r.status == 302:
            location = urlsplit(r.headers["Location"])
            params = {k: v[0] for k, v in parse_qs(location.query).items()}
            return location._replace(query="").geturl(), params
        assert r.status == 200, await r.text()
        form = _Form()
        form.feed(await r.text())
        return form.action, form.fields


async def _callback(
    http: aiohttp.ClientSession, provider: str, url: str, params: dict[str, str]
) -> tuple[int, Any]:
    if provider == "apple":
        request = http.post(url, data=params, allow_redirects=False)
    else:
        request = http.get(url, params=params, allow_redirects=False)
    async with request as r:
        return r.status, await r.json()


async def _sign_in(
    http: aiohttp.ClientSession,
    server: StartedServer,
    fake: FakeOAuthProviders,
    provider: str,
    account: FakeAccount,
) -> tuple[int, Any]:
    fake.approve(provider, account)
    callback, params = await _provider_answer(http, await _start(http, server, provider))
    return await _callback(http, provider, callback, params)


async def _me(http: aiohttp.ClientSession, server: StartedServer, access: str) -> Any:
    status, me = await auth_call(http, server, "GET", "me", token=access)
    assert status == 200, me
    return me


async def _identities(server: StartedServer, user_id: str) -> list[tuple[str, str]]:
    rows = await server.app[POOL].fetch(
        "SELECT provider, subject FROM oauth_identities WHERE user_id = $1 ORDER BY provider",
        uuid.UUID(user_id),
    )
    return [(r["provider"], r["subject"]) for r in rows]


async def _password_user(server: StartedServer, email: str, *, verified: bool) -> uuid.UUID:
    accounts = server.app[ACCOUNTS]
    users = UserRepository(server.app[POOL])
    user = await users.create(email, await accounts.passwords.hash(PASSWORD), verified=verified)
    await users.set_membership(user.id, f"pw-{uuid.uuid4().hex[:8]}", "owner")
    return user.id


# --- whole sign-ins -----------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_first_sign_in_creates_the_user_and_the_second_finds_them(
    oauth_server, fake, http, provider
) -> None:
    account = _account()
    status, tokens = await _sign_in(http, oauth_server, fake, provider, account)
    assert status == 200, tokens
    assert tokens["token_type"] == "bearer" and tokens["refresh_token"]
    me = await _me(http, oauth_server, tokens["access_token"])
    assert me["user"]["email"] == account.email
    assert me["user"]["email_verified"] is True  # the provider vouched for it
    assert [m["role"] for m in me["memberships"]] == ["owner"]  # a workspace of their own
    assert await _identities(oauth_server, me["user"]["id"]) == [(provider, account.subject)]

    # Again, now under another address at the provider: the subject decides who it is.
    account.email = new_address()
    status, again = await _sign_in(http, oauth_server, fake, provider, account)
    assert status == 200, again
    assert (await _me(http, oauth_server, again["access_token"]))["user"]["id"] == me["user"]["id"]
    # The refresh token is a normal one: it rotates.
    status, refreshed = await auth_call(
        http, oauth_server, "POST", "refresh", {"refresh_token": again["refresh_token"]}
    )
    assert status == 200, refreshed

    entries = await oauth_server.app[POOL].fetch(
        "SELECT action, details FROM audit_log WHERE actor_user_id = $1 ORDER BY id",
        uuid.UUID(me["user"]["id"]),
    )
    actions = [(e["action"], e["details"]) for e in entries]
    signed_in = {"method": "oauth", "provider": provider}
    assert ("auth.signed_in", signed_in) in [(a, _json(d)) for a, d in actions]
    assert [a for a, _ in actions].count("auth.signed_in") == 2
    assert [a for a, _ in actions].count("auth.identity_linked") == 1


def _json(value: Any) -> Any:
    # asyncpg hands jsonb over as text.
    return json.loads(value) if isinstance(value, str) else value


async def test_the_provider_list_and_the_url_as_json(oauth_server, http) -> None:
    async with http.get(f"{oauth_server.url}/v1/auth/oauth/providers") as r:
        assert r.status == 200
        assert await r.json() == {"providers": ["google", "github", "apple"]}
    url = f"{oauth_server.url}/v1/auth/oauth/google/start?redirect=false"
    async with http.get(url, allow_redirects=False) as r:
        assert r.status == 200
        body = await r.json()
    query = parse_qs(urlsplit(body["url"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"][0]
    assert query["redirect_uri"] == [f"{oauth_server.url}/v1/auth/oauth/google/callback"]
    assert body["expires_in"] == 600


async def test_a_verified_address_links_to_the_password_user(oauth_server, fake, http) -> None:
    email = new_address()
    user_id = await _password_user(oauth_server, email, verified=True)
    # The provider may spell the address in another case: the same person.
    status, tokens = await _sign_in(http, oauth_server, fake, "google", _account(email.upper()))
    assert status == 200, tokens
    me = await _me(http, oauth_server, tokens["access_token"])
    assert me["user"]["id"] == str(user_id)
    assert len(await _identities(oauth_server, str(user_id))) == 1
    # The password still works: this account's owner had proved the mailbox.
    status, body = await auth_call(
        http, oauth_server, "POST", "login", {"email": email, "password": PASSWORD}
    )
    assert status == 200, body


async def test_linking_to_an_unproven_account_drops_its_password(oauth_server, fake, http) -> None:
    """Someone signed up with another person's address and never verified it; when that
    person signs in with a provider that vouches for it, the squatter's password dies."""
    email = new_address()
    user_id = await _password_user(oauth_server, email, verified=False)
    status, squatter = await auth_call(
        http, oauth_server, "POST", "login", {"email": email, "password": PASSWORD}
    )
    assert status == 200, squatter
    status, tokens = await _sign_in(http, oauth_server, fake, "github", _account(email))
    assert status == 200, tokens
    assert (await _me(http, oauth_server, tokens["access_token"]))["user"]["id"] == str(user_id)
    status, body = await auth_call(
        http, oauth_server, "POST", "login", {"email": email, "password": PASSWORD}
    )
    assert status == 401, body
    status, body = await auth_call(
        http, oauth_server, "POST", "refresh", {"refresh_token": squatter["refresh_token"]}
    )
    assert status == 401, body


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_unverified_address_never_links_or_signs_up(
    oauth_server, fake, http, provider
) -> None:
    email = new_address()
    user_id = await _password_user(oauth_server, email, verified=True)
    for address in (email, new_address()):  # someone's address, or nobody's: the same answer
        status, body = await _sign_in(
            http, oauth_server, fake, provider, _account(address, verified=False)
        )
        assert status == 403, body
        house_error(body, "forbidden")
        assert body["error"]["details"]["reason"] == "email_not_verified"
        assert "verify" in body["error"]["message"]
    assert await _identities(oauth_server, str(user_id)) == []
    assert await UserRepository(oauth_server.app[POOL]).by_email(address) is None


async def test_github_counts_only_the_primary_verified_address(oauth_server, fake, http) -> None:
    email = new_address()
    await _password_user(oauth_server, email, verified=True)
    # A verified secondary address of someone else's account is not the primary one.
    account = _account(new_address(), verified=False)
    account.other_emails = [(email, True)]
    status, body = await _sign_in(http, oauth_server, fake, "github", account)
    assert status == 403, body


# --- a sign-in that must not go through -----------------------------------------------------


async def test_a_state_works_once(oauth_server, fake, http) -> None:
    fake.approve("google", _account())
    callback, params = await _provider_answer(http, await _start(http, oauth_server, "google"))
    assert (await _callback(http, "google", callback, params))[0] == 200
    exchanges = len(fake.token_requests)
    status, body = await _callback(http, "google", callback, params)
    assert status == 400, body
    house_error(body, "bad_request")
    assert "already finished" in body["error"]["message"]
    assert len(fake.token_requests) == exchanges  # refused before the code was sent anywhere


@pytest.mark.parametrize(
    "change",
    [
        lambda p: {**p, "state": p["state"][:-1] + ("A" if p["state"][-1] != "A" else "B")},
        lambda p: {k: v for k, v in p.items() if k != "state"},
        lambda p: {**p, "state": "x" * 5000},
    ],
    ids=["tampered", "missing", "oversized"],
)
async def test_a_bad_state_is_refused(oauth_server, fake, http, change) -> None:
    fake.approve("google", _account())
    callback, params = await _provider_answer(http, await _start(http, oauth_server, "google"))
    exchanges = len(fake.token_requests)
    status, body = await _callback(http, "google", callback, change(params))
    assert status == 400, body
    house_error(body, "bad_request")
    assert "already finished" in body["error"]["message"]
    assert len(fake.token_requests) == exchanges


async def test_a_state_of_another_provider_is_refused(oauth_server, fake, http) -> None:
    fake.approve("google", _account())
    callback, params = await _provider_answer(http, await _start(http, oauth_server, "google"))
    exchanges = len(fake.token_requests)
    status, body = await _callback(http, "github", callback.replace("google", "github"), params)
    assert status == 400, body
    assert "already finished" in body["error"]["message"]
    assert len(fake.token_requests) == exchanges


async def test_a_code_from_another_sign_in_fails_pkce(oauth_server, fake, http) -> None:
    """A code obtained for one sign-in, injected into another's callback (its state), is
    exchanged with the other's verifier: the provider refuses it."""
    for provider in ("google", "github"):
        fake.approve(provider, _account())
        victim = await _start(http, oauth_server, provider)
        attacker = await _start(http, oauth_server, provider)
        callback, victims = await _provider_answer(http, victim)
        _, attackers = await _provider_answer(http, attacker)
        injected = {"code": attackers["code"], "state": victims["state"]}
        status, body = await _callback(http, provider, callback, injected)
        assert status == 400, body
        assert "code_verifier does not match" in body["error"]["message"]
        assert fake.token_requests[-1]["code_verifier"]  # it was sent, and it was wrong


@pytest.mark.parametrize("tamper", ["nonce", "aud", "iss", "expired", "signature"])
@pytest.mark.parametrize("provider", ["google", "apple"])
async def test_a_bad_id_token_is_refused(oauth_server, fake, http, provider, tamper) -> None:
    fake.tamper[provider] = tamper
    account = _account()
    status, body = await _sign_in(http, oauth_server, fake, provider, account)
    assert status == 401, body
    house_error(body, "unauthorized")
    assert "id_token" in body["error"]["message"]
    assert await UserRepository(oauth_server.app[POOL]).by_email(account.email or "") is None


async def test_the_person_declining_is_a_400_with_the_reason(oauth_server, fake, http) -> None:
    fake.deny.add("github")
    try:
        status, body = await _sign_in(http, oauth_server, fake, "github", _account())
    finally:
        fake.deny.discard("github")
    assert status == 400, body
    house_error(body, "bad_request")
    assert "access_denied" in body["error"]["message"]
    assert "declined" in body["error"]["message"]


async def test_unknown_and_unconfigured_providers_are_404(oauth_server, server, http) -> None:
    async with http.get(f"{oauth_server.url}/v1/auth/oauth/myspace/start") as r:
        assert r.status == 404
        house_error(await r.json(), "not_found")
    # The session's server has no provider configured.
    for path in ("google/start", "apple/callback?code=x&state=y"):
        async with http.get(f"{server.url}/v1/auth/oauth/{path}") as r:
            body = await r.json()
            assert r.status == 404, body
            assert "not set up" in body["error"]["message"]
    async with http.get(f"{server.url}/v1/auth/oauth/providers") as r:
        assert await r.json() == {"providers": []}


async def test_a_provider_that_stalls_is_a_quick_503(oauth_server, fake, http) -> None:
    fake.approve("google", _account())
    callback, params = await _provider_answer(http, await _start(http, oauth_server, "google"))
    fake.stall_token.add("google")
    started = time.monotonic()
    try:
        status, body = await _callback(http, "google", callback, params)
    finally:
        fake.stall_token.discard("google")
        fake.release_stalls()
    assert status == 503, body
    house_error(body, "service_unavailable")
    assert "google" in body["error"]["message"]
    assert time.monotonic() - started < 10  # the 2 s timeout, not the fake's 30 s stall


async def test_keys_rotated_while_the_key_set_is_down_is_a_503(oauth_server, fake, http) -> None:
    fake.rotate_key("apple")
    fake.keys_down.add("apple")
    try:
        status, body = await _sign_in(http, oauth_server, fake, "apple", _account())
    finally:
        fake.keys_down.discard("apple")
    assert status == 503, body
    house_error(body, "service_unavailable")
    # Back up: the new key is fetched and the sign-in goes through.
    status, body = await _sign_in(http, oauth_server, fake, "apple", _account())
    assert status == 200, body


# --- a second factor ------------------------------------------------------------------------


async def test_a_user_with_totp_must_still_pass_it(oauth_server, fake, http) -> None:
    account = _account()
    status, tokens = await _sign_in(http, oauth_server, fake, "google", account)
    assert status == 200, tokens
    access = tokens["access_token"]
    status, started = await auth_call(http, oauth_server, "POST", "mfa/totp", token=access)
    assert status == 201, started
    totp = pyotp.parse_uri(started["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    status, body = await auth_call(
        http, oauth_server, "POST", "mfa/totp/confirm", {"code": totp.now()}, token=access
    )
    assert status == 200, body

    status, step = await _sign_in(http, oauth_server, fake, "google", account)
    assert status == 200, step
    assert step["mfa_required"] is True and "access_token" not in step
    next_code = totp.at(time.time() + 30)  # newer than the step enrolment used
    status, done = await auth_call(
        http,
        oauth_server,
        "POST",
        "mfa/verify",
        {"mfa_token": step["mfa_token"], "code": next_code},
    )
    assert status == 200, done
    me = await _me(http, oauth_server, done["access_token"])
    row = await oauth_server.app[POOL].fetchrow(
        "SELECT details FROM audit_log WHERE actor_user_id = $1 AND action = 'auth.signed_in' "
        "ORDER BY id DESC LIMIT 1",
        uuid.UUID(me["user"]["id"]),
    )
    assert _json(row["details"])["first_factor"] == "oauth_google"


def test_the_fakes_pkce_check_is_rfc_7636s() -> None:
    # The PKCE check above relies on the fake computing S256 as RFC 7636 §4.2 says.
    assert _s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == (
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", _s256("x" * 43))
