"""Passkeys through the real server: registration and sign-in ceremonies answered by a software
authenticator (``tests/software_authenticator.py``), and what the server refuses: answers to
spent or foreign challenges, another site's origin, another key, counters that go backwards."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp
from auth_calls import audit_trail, auth_call, house_error, person

from software_authenticator import SoftwareAuthenticator, b64url
from voicestream.store.users import User


def _rp_id(server: Any) -> str:
    host = urlsplit(server.url).hostname
    assert host is not None
    return host


async def _options(http: aiohttp.ClientSession, server: Any, path: str, **kw: Any) -> Any:
    status, body = await auth_call(http, server, "POST", f"passkeys/{path}/options", **kw)
    assert status == 200, body
    return body["publicKey"]


async def _registered(
    http: aiohttp.ClientSession, server: Any
) -> tuple[User, str, SoftwareAuthenticator]:
    user, access = await person(server)
    authenticator = SoftwareAuthenticator(server.url)
    options = await _options(http, server, "register", token=access)
    credential = authenticator.create(options)
    status, body = await auth_call(
        http, server, "POST", "passkeys/register/verify", {"credential": credential}, token=access
    )
    assert status == 201, body
    return user, access, authenticator


async def _sign_in(
    http: aiohttp.ClientSession, server: Any, authenticator: SoftwareAuthenticator, **kw: Any
) -> tuple[int, Any]:
    options = await _options(http, server, "login")
    assertion = authenticator.get(options, rp_id=_rp_id(server), **kw)
    return await auth_call(http, server, "POST", "passkeys/login/verify", {"credential": assertion})


async def test_register_a_passkey_and_sign_in_with_it(server, http) -> None:
    user, access, authenticator = await _registered(http, server)
    # The options say what the browser needs, and nothing about other accounts.
    options = await _options(http, server, "register", token=access)
    assert options["rp"]["id"] == _rp_id(server)
    assert options["user"]["name"] == user.email
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert [c["id"] for c in options["excludeCredentials"]] == [b64url(authenticator.credential_id)]
    login_options = await _options(http, server, "login")
    assert login_options["rpId"] == _rp_id(server)
    assert login_options.get("allowCredentials", []) == []

    status, pair = await _sign_in(http, server, authenticator)
    assert status == 200, pair
    status, me = await auth_call(http, server, "GET", "me", token=pair["access_token"])
    assert status == 200 and me["user"]["id"] == str(user.id)
    status, again = await _sign_in(http, server, authenticator)
    assert status == 200, again  # a fresh challenge and a higher counter: fine
    assert await audit_trail(server, user.id) == [
        ("auth.passkey_added", None),
        ("auth.signed_in", "passkey"),
        ("auth.signed_in", "passkey"),
    ]


async def test_a_challenge_is_answered_once(server, http) -> None:
    _, _, authenticator = await _registered(http, server)
    options = await _options(http, server, "login")
    # Counter 0, as many passkeys send: only the spent challenge can stop the replay.
    assertion = authenticator.get(options, rp_id=_rp_id(server), sign_count=0)
    body = {"credential": assertion}
    status, _ = await auth_call(http, server, "POST", "passkeys/login/verify", body)
    assert status == 200
    status, data = await auth_call(http, server, "POST", "passkeys/login/verify", body)
    assert status == 401, data
    house_error(data, "unauthorized")
    # A challenge of our own making was never issued.
    forged = {**options, "challenge": b64url(b"\x01" * 32)}
    forged_body = {"credential": authenticator.get(forged, rp_id=_rp_id(server))}
    status, data = await auth_call(http, server, "POST", "passkeys/login/verify", forged_body)
    assert status == 401, data


async def test_look_alike_sites_cloned_keys_and_strangers_are_refused(server, http) -> None:
    _, _, authenticator = await _registered(http, server)
    # A look-alike site relaying the ceremony: the browser writes its own origin.
    status, data = await _sign_in(http, server, authenticator, origin="https://voicestream.evil")
    assert status == 401 and "origin" in data["error"]["message"], data
    # Credentials bound to another relying party.
    options = await _options(http, server, "login")
    other_rp = authenticator.get(options, rp_id="evil.example")
    status, data = await auth_call(
        http, server, "POST", "passkeys/login/verify", {"credential": other_rp}
    )
    assert status == 401, data
    # The same credential id, signed by another key.
    impostor = SoftwareAuthenticator(server.url)
    impostor.credential_id, impostor.user_handle = (
        authenticator.credential_id,
        authenticator.user_handle,
    )
    status, data = await _sign_in(http, server, impostor, sign_count=50)
    assert status == 401, data
    # A counter that does not move forward: a cloned authenticator.
    status, _ = await _sign_in(http, server, authenticator, sign_count=10)
    assert status == 200
    status, data = await _sign_in(http, server, authenticator, sign_count=10)
    assert status == 401 and "count" in data["error"]["message"], data
    # A passkey nobody registered.
    status, data = await _sign_in(http, server, SoftwareAuthenticator(server.url))
    assert status == 401, data
    # No user verification: presence alone is one factor, not a sign-in.
    user, access = await person(server)
    lax = SoftwareAuthenticator(server.url, user_verification=False)
    credential = lax.create(await _options(http, server, "register", token=access))
    status, data = await auth_call(
        http, server, "POST", "passkeys/register/verify", {"credential": credential}, token=access
    )
    assert status == 422, data
    assert await audit_trail(server, user.id) == []


async def test_registration_answers_only_its_own_challenge(server, http) -> None:
    _, access = await person(server)
    _, other_access = await person(server)
    authenticator = SoftwareAuthenticator(server.url)
    options = await _options(http, server, "register", token=access)
    credential = authenticator.create(options)
    body = {"credential": credential}
    # Another user cannot complete this user's registration.
    status, data = await auth_call(
        http, server, "POST", "passkeys/register/verify", body, token=other_access
    )
    assert status == 422, data
    # Nor burn it: the owner still can, once.
    for expected in (201, 422):
        status, data = await auth_call(
            http, server, "POST", "passkeys/register/verify", body, token=access
        )
        assert status == expected, data
    status, data = await auth_call(http, server, "POST", "passkeys/register/verify", body)
    assert status == 401, data  # no access token
    status, data = await auth_call(http, server, "POST", "passkeys/register/options")
    assert status == 401, data
    # Registering the same authenticator again (on a fresh challenge) is a conflict.
    _, access, registered = await _registered(http, server)
    options = await _options(http, server, "register", token=access)
    credential = registered.create(options)
    status, data = await auth_call(
        http, server, "POST", "passkeys/register/verify", {"credential": credential}, token=access
    )
    assert status == 409, data


def _bad_credentials(good: dict[str, Any]) -> list[Any]:
    response = good["response"]
    return [
        {},
        {**good, "id": 5},
        {**good, "rawId": "!!!"},
        {**good, "type": "password"},
        {**good, "response": "x"},
        {**good, "response": {**response, "clientDataJSON": "not base64 ~"}},
        {**good, "response": {**response, "clientDataJSON": b64url(b"not json")}},
        {**good, "response": {**response, "clientDataJSON": b64url(b"[1, 2]")}},
        {**good, "response": {**response, "clientDataJSON": b64url(b'{"type": 1}')}},
        *({**good, "response": {**response, field: b64url(b"\xff" * 40)}} for field in response),
        *({**good, "response": {k: v for k, v in response.items() if k != f}} for f in response),
    ]


async def test_bad_input_on_every_route_is_a_4xx_json_error(server, http) -> None:
    _, access, authenticator = await _registered(http, server)
    registration = authenticator.create(await _options(http, server, "register", token=access))
    assertion = authenticator.get(await _options(http, server, "login"), rp_id=_rp_id(server))
    failures = []
    for path, good in (("register", registration), ("login", assertion)):
        bodies: list[Any] = [{}, [], "x", {"credential": None}, {"credential": [1]}]
        bodies += [{"credential": good, "extra": 1}, {"credential": "x" * 100_000}]
        bodies += [{"credential": bad} for bad in _bad_credentials(good)]
        for body in bodies:
            status, data = await auth_call(
                http, server, "POST", f"passkeys/{path}/verify", body, token=access
            )
            if not (400 <= status < 500 and isinstance(data, dict) and data["error"]["code"]):
                failures.append((path, body, status, data))
    async with http.post(
        f"{server.url}/v1/auth/passkeys/login/verify",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        house_error(await response.json(), "invalid_json")
    async with http.post(
        f"{server.url}/v1/auth/passkeys/login/options", headers={"Host": "bad host:x"}
    ) as response:
        assert 400 <= response.status < 500
    assert not failures, failures
