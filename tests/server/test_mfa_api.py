"""Two-factor sign-in through the real server: ``/v1/auth/mfa/…`` and the two-step sign-in.

Codes are computed the way an authenticator app does, with pyotp from the URI the server
hands out. Without waiting for the clock: enrolment uses the current step's code, and each
later sign-in the next step's (inside the ±1 step window), so every code is fresh once and
refused on replay.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pyotp
from auth_calls import audit_trail, auth_call, house_error, mails_to, new_address, person

from voicestream.identity.second_factor import MAX_CHALLENGE_ATTEMPTS
from voicestream.observability.log_redaction import redact
from voicestream.rest.auth import ACCOUNTS
from voicestream.rest.resources import POOL, SECRET_KEY
from voicestream.store.secrets import SecretBox
from voicestream.store.users import UserRepository

PASSWORD = "correct horse battery"
_EMAIL_TOKEN = re.compile(r"vse_[A-Za-z0-9_-]{43}")


async def _token_from_mail(server: Any, to: str, subject: str) -> str:
    mails = [m for m in await mails_to(server, to) if subject in str(m["Subject"])]
    assert mails, f"no mail about {subject!r} to {to}"
    match = _EMAIL_TOKEN.search(mails[-1].get_content())
    assert match is not None
    return match.group(0)


async def _magic_link_sign_in(http: aiohttp.ClientSession, server: Any, address: str) -> Any:
    status, _ = await auth_call(http, server, "POST", "magic-link", {"email": address})
    assert status == 202
    token = await _token_from_mail(server, address, "sign-in link")
    status, body = await auth_call(http, server, "POST", "magic-link/redeem", {"token": token})
    assert status == 200, body
    return body


async def _enrol(http: aiohttp.ClientSession, server: Any, access: str) -> tuple[pyotp.TOTP, Any]:
    """Turn TOTP on; the authenticator and the recovery codes."""
    status, started = await auth_call(http, server, "POST", "mfa/totp", token=access)
    assert status == 201, started
    assert started["status"] == "pending_confirmation"
    totp = pyotp.parse_uri(started["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    status, confirmed = await auth_call(
        http, server, "POST", "mfa/totp/confirm", {"code": totp.now()}, token=access
    )
    assert status == 200, confirmed
    return totp, confirmed["recovery_codes"]


def _next_code(totp: pyotp.TOTP) -> str:
    # The next step's code: inside the window, and newer than the one enrolment used.
    return totp.at(time.time() + 30)


def _wrong_code(totp: pyotp.TOTP) -> str:
    window = {totp.at(time.time() + 30 * k) for k in range(-2, 4)}
    return next(c for c in (f"{n:06d}" for n in range(100)) if c not in window)


async def test_sign_up_verify_enrol_and_sign_in_with_a_code(server, http) -> None:
    address = new_address()
    status, body = await auth_call(http, server, "POST", "signup", {"email": address})
    assert status == 201, body
    verify = await _token_from_mail(server, address, "Confirm your e-mail")
    assert (await auth_call(http, server, "POST", "verify-email", {"token": verify}))[0] == 204
    first = await _magic_link_sign_in(http, server, address)
    status, before = await auth_call(http, server, "GET", "mfa", token=first["access_token"])
    assert (status, before) == (200, {"methods": [], "recovery_codes_left": 0})

    totp, recovery = await _enrol(http, server, first["access_token"])
    assert len(recovery) == len(set(recovery)) == 10
    status, after = await auth_call(http, server, "GET", "mfa", token=first["access_token"])
    assert after == {"methods": ["totp", "recovery_code"], "recovery_codes_left": 10}

    # The magic link alone no longer signs in: it earns a challenge, and no tokens.
    challenge = await _magic_link_sign_in(http, server, address)
    assert challenge["mfa_required"] is True
    assert challenge["methods"] == ["totp", "recovery_code"]
    assert challenge["expires_in"] == 300
    assert "access_token" not in challenge and "refresh_token" not in challenge
    assert challenge["mfa_token"].startswith("vsm_")

    wrong = {"mfa_token": challenge["mfa_token"], "code": _wrong_code(totp)}
    status, data = await auth_call(http, server, "POST", "mfa/verify", wrong)
    assert status == 401, data
    house_error(data, "unauthorized")
    assert data["error"]["details"]["attempts_left"] == MAX_CHALLENGE_ATTEMPTS - 1

    # Two challenges, one code, sent at once: exactly one sign-in.
    other = await _magic_link_sign_in(http, server, address)
    code = _next_code(totp)
    answers = await asyncio.gather(
        *(
            auth_call(
                http, server, "POST", "mfa/verify", {"mfa_token": c["mfa_token"], "code": code}
            )
            for c in (challenge, other)
        )
    )
    assert sorted(status for status, _ in answers) == [200, 401], answers
    pair = next(body for status, body in answers if status == 200)
    assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token"}
    status, me = await auth_call(http, server, "GET", "me", token=pair["access_token"])
    assert status == 200 and me["user"]["email"] == address

    # Replayed on a fresh challenge: refused, as is the used challenge itself.
    third = await _magic_link_sign_in(http, server, address)
    for token in (third["mfa_token"], challenge["mfa_token"]):
        status, data = await auth_call(
            http, server, "POST", "mfa/verify", {"mfa_token": token, "code": code}
        )
        assert status == 401, data

    user_id = uuid.UUID(me["user"]["id"])
    assert await audit_trail(server, user_id) == [
        ("auth.signed_in", "magic_link"),
        ("auth.mfa_enabled", "totp"),
        ("auth.signed_in", "totp"),
    ]


async def test_password_sign_in_with_a_recovery_code_works_once(server, http) -> None:
    address = new_address()
    body = {"email": address, "password": PASSWORD}
    assert (await auth_call(http, server, "POST", "signup", body))[0] == 201
    status, first = await auth_call(http, server, "POST", "login", body)
    assert status == 200, first
    _, recovery = await _enrol(http, server, first["access_token"])

    status, challenge = await auth_call(http, server, "POST", "login", body)
    assert status == 200 and challenge["mfa_required"] is True, challenge
    # Typed the way people type them: upper case, spaces for the dash.
    typed = recovery[0].upper().replace("-", " ")
    verify = {"mfa_token": challenge["mfa_token"], "recovery_code": typed}
    status, pair = await auth_call(http, server, "POST", "mfa/verify", verify)
    assert status == 200, pair
    status, left = await auth_call(http, server, "GET", "mfa", token=pair["access_token"])
    assert left["recovery_codes_left"] == 9

    _, again = await auth_call(http, server, "POST", "login", body)
    used = {"mfa_token": again["mfa_token"], "recovery_code": recovery[0]}
    status, data = await auth_call(http, server, "POST", "mfa/verify", used)
    assert status == 401, data
    status, pair = await auth_call(
        http,
        server,
        "POST",
        "mfa/verify",
        {"mfa_token": again["mfa_token"], "recovery_code": recovery[1]},
    )
    assert status == 200, pair  # a wrong code costs an attempt, not the challenge

    user = await UserRepository(server.app[POOL]).by_email(address)
    assert user is not None
    assert [a for a in await audit_trail(server, user.id) if a[0] != "auth.mfa_enabled"] == [
        ("auth.signed_in", "password"),
        ("auth.recovery_code_used", None),
        ("auth.signed_in", "recovery_code"),
        ("auth.recovery_code_used", None),
        ("auth.signed_in", "recovery_code"),
    ]


async def test_a_challenge_dies_after_its_attempts(server, http) -> None:
    user, access = await person(server)
    totp, _ = await _enrol(http, server, access)
    challenge = await _magic_link_sign_in(http, server, user.email)
    for _ in range(MAX_CHALLENGE_ATTEMPTS):
        body = {"mfa_token": challenge["mfa_token"], "code": _wrong_code(totp)}
        status, _ = await auth_call(http, server, "POST", "mfa/verify", body)
        assert status == 401
    body = {"mfa_token": challenge["mfa_token"], "code": _next_code(totp)}
    status, data = await auth_call(http, server, "POST", "mfa/verify", body)
    assert status == 401, data
    assert "sign in again" in data["error"]["message"]
    # An expired one is refused too.
    expired = "vsm_" + "e" * 43
    await server.app[ACCOUNTS].second_factors.repo.create_challenge(
        user.id, hashlib.sha256(expired.encode()).digest(), "magic_link", -1
    )
    status, data = await auth_call(
        http, server, "POST", "mfa/verify", {"mfa_token": expired, "code": _next_code(totp)}
    )
    assert status == 401, data


async def test_turning_it_off_needs_a_current_code(server, http) -> None:
    user, access = await person(server)
    totp, recovery = await _enrol(http, server, access)

    status, data = await auth_call(http, server, "DELETE", "mfa/totp", {"code": _next_code(totp)})
    assert status == 401, data  # no access token
    status, data = await auth_call(http, server, "DELETE", "mfa/totp", {}, token=access)
    assert status == 422, data
    wrong = {"code": _wrong_code(totp)}
    status, data = await auth_call(http, server, "DELETE", "mfa/totp", wrong, token=access)
    assert status == 403, data
    house_error(data, "forbidden")
    status, data = await auth_call(
        http, server, "DELETE", "mfa/totp", {"code": totp.now()}, token=access
    )
    assert status == 403, data  # the step enrolment used: spent
    status, data = await auth_call(
        http, server, "DELETE", "mfa/totp", {"code": _next_code(totp)}, token=access
    )
    assert status == 204, data
    status, data = await auth_call(
        http, server, "DELETE", "mfa/totp", {"recovery_code": recovery[0]}, token=access
    )
    assert status == 404, data  # nothing left to turn off; the recovery codes went with it

    pair = await _magic_link_sign_in(http, server, user.email)
    assert "access_token" in pair and "mfa_required" not in pair
    assert ("auth.mfa_disabled", "totp") in await audit_trail(server, user.id)


async def test_the_secret_is_sealed_at_rest(server, http) -> None:
    user, access = await person(server)
    totp, recovery = await _enrol(http, server, access)
    pool = server.app[POOL]
    rows = []
    for table in ("totp_factors", "recovery_codes", "mfa_challenges"):
        rows += await pool.fetch(
            f"SELECT row_to_json(t)::text AS row FROM {table} t WHERE user_id = $1", user.id
        )
    challenge = await _magic_link_sign_in(http, server, user.email)  # a challenge row too
    assert challenge["mfa_token"] not in redact(f"verify failed for {challenge['mfa_token']}")
    rows += await pool.fetch(
        "SELECT row_to_json(t)::text AS row FROM mfa_challenges t WHERE user_id = $1", user.id
    )
    stored = "\n".join(r["row"] for r in rows)
    assert stored.count('"code_hash"') == 10 and stored.count('"token_hash"') == 1
    for secret in [totp.secret, *recovery, *(c.replace("-", "") for c in recovery)]:
        assert secret not in stored and secret.lower() not in stored.lower()
    sealed = await pool.fetchval(
        "SELECT secret_sealed FROM totp_factors WHERE user_id = $1", user.id
    )
    assert sealed.startswith(SecretBox.CURRENT_PREFIX)
    box = SecretBox(server.app[SECRET_KEY])
    assert box.open(sealed, context=f"user:{user.id}:totp_secret") == totp.secret


async def test_enrolment_states(server, http) -> None:
    _, access = await person(server)
    status, data = await auth_call(
        http, server, "POST", "mfa/totp/confirm", {"code": "123456"}, token=access
    )
    assert status == 404, data  # nothing started
    status, started = await auth_call(http, server, "POST", "mfa/totp", token=access)
    totp = pyotp.parse_uri(started["otpauth_uri"])
    status, data = await auth_call(
        http, server, "POST", "mfa/totp/confirm", {"code": _wrong_code(totp)}, token=access
    )
    assert status == 422, data
    # Starting again replaces the unconfirmed secret: the old one's codes no longer confirm.
    status, restarted = await auth_call(http, server, "POST", "mfa/totp", token=access)
    assert status == 201 and restarted["otpauth_uri"] != started["otpauth_uri"]
    fresh = pyotp.parse_uri(restarted["otpauth_uri"])
    old_code = totp.now()
    if old_code != fresh.now():
        status, data = await auth_call(
            http, server, "POST", "mfa/totp/confirm", {"code": old_code}, token=access
        )
        assert status == 422, data
    status, _ = await auth_call(
        http, server, "POST", "mfa/totp/confirm", {"code": fresh.now()}, token=access
    )
    assert status == 200
    for path, body in (("mfa/totp", None), ("mfa/totp/confirm", {"code": _next_code(fresh)})):
        status, data = await auth_call(http, server, "POST", path, body, token=access)
        assert status == 409, (path, data)
        house_error(data, "conflict")


# --- bad input ------------------------------------------------------------------------------

_BODIES = {
    ("POST", "mfa/totp/confirm"): {"code": "123456"},
    ("DELETE", "mfa/totp"): {"code": "123456"},
    ("POST", "mfa/verify"): {"mfa_token": "vsm_" + "x" * 43, "code": "123456"},
}


def _bad_bodies(good: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    yield "empty", {}
    yield "array", [good]
    yield "string", "code"
    yield "unknown-field", {**good, "admin": True}
    for field in good:
        yield f"{field}-number", {**good, field: 123456}
        yield f"{field}-null", {**good, field: None}
        yield f"{field}-list", {**good, field: ["x"]}
        yield f"{field}-huge", {**good, field: "1" * 100_000}
        yield f"{field}-empty", {**good, field: ""}
    yield "both-factors", {**good, "recovery_code": "abcde-fghij"}


async def test_bad_input_on_every_route_is_a_4xx_json_error(server, http) -> None:
    _, access = await person(server)
    failures = []
    for (method, path), good in _BODIES.items():
        for name, body in _bad_bodies(good):
            status, data = await auth_call(http, server, method, path, body, token=access)
            if not (400 <= status < 500 and isinstance(data, dict) and data["error"]["code"]):
                failures.append((method, path, name, status, data))
    # Wrong or missing credentials on the routes for signed-in people.
    for token in (None, "not-a-jwt", "vs_" + "k" * 40, "eyJhbGciOiJub25lIn0.e30."):
        for method, path in (("GET", "mfa"), ("POST", "mfa/totp"), *_BODIES):
            if path == "mfa/verify":
                continue
            status, data = await auth_call(
                http, server, method, path, _BODIES.get((method, path)), token=token
            )
            if status != 401 or data["error"]["code"] != "unauthorized":
                failures.append((method, path, token, status, data))
    # Challenge tokens that are not ours, malformed or unknown: 401.
    for token in ("vsm_short", "vsr_" + "x" * 43, "vsm_" + "x" * 43, "x" * 200):
        body = {"mfa_token": token, "recovery_code": "abcde-fghij"}
        status, data = await auth_call(http, server, "POST", "mfa/verify", body)
        if status != 401:
            failures.append(("verify", token, status, data))
    async with http.post(
        f"{server.url}/v1/auth/mfa/verify",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        house_error(await response.json(), "invalid_json")
    assert not failures, failures
