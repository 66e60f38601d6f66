"""Limits on the sign-in routes (issue 9 §5): per client address, per account, per user.

A server of its own with small limits, which believes ``X-Forwarded-For``: every request here
names a made-up address, so this module's buckets never touch the one of 127.0.0.1 that the
rest of the suite signs in from, and each test starts from full buckets.

- every sign-in route is limited per address: past the burst 429 ``rate_limited`` with
  ``Retry-After`` and ``RateLimit-*``; concurrent requests never pass it together;
- wrong passwords are limited per e-mail from any address, answered alike whether or not an
  account has that e-mail; the right password clears the count;
- wrong one-time codes are limited per user across TOTP confirmation, turning it off and the
  second step of signing in, whichever challenge they come through;
- enrolling a second factor (TOTP's start, passkey registration) is limited per user, from
  any address.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pyotp
import pytest

from helpers import StartedServer, settings_for_test_server, start_test_server
from server.auth_calls import house_error, new_address, person
from voicestream.engines.catalog import EngineRegistry
from voicestream.rest.auth import ACCOUNTS
from voicestream.rest.resources import POOL
from voicestream.server.rate_limits import ENROLMENT_PATHS, SIGN_IN_PATHS
from voicestream.store.embedded import ServiceURLs
from voicestream.store.users import UserRepository

BURST = 3  # sign-in requests per address at once; one more a minute after that
FAILURES = 3  # wrong passwords per e-mail, wrong codes per user
PASSWORD = "correct horse battery"
_HOSTS = itertools.count(1)
_RUN = uuid.uuid4().int % 250 + 1  # another run's buckets (same Redis) are not ours


def _address() -> str:
    n = next(_HOSTS)
    return f"203.{_RUN}.{n // 250}.{n % 250 + 1}"


@pytest.fixture(scope="module")
async def limited(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[StartedServer]:
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("auth-limits"),
        auth_rate_limit_per_minute=1,
        auth_rate_limit_burst=BURST,
        login_max_failures=FAILURES,
        totp_max_failures=FAILURES,
        sign_in_failure_window_seconds=3600,
        trust_forwarded_headers=True,
    )
    async with start_test_server(settings, registry) as started:
        yield started


class Answer:
    def __init__(self, status: int, headers: Any, body: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"{self.status} {self.body}"


async def _auth(
    http: aiohttp.ClientSession,
    server: StartedServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    address: str | None = None,
    token: str | None = None,
) -> Answer:
    """``method /v1/auth/<path>`` from ``address`` (a fresh one unless given)."""
    headers = {"X-Forwarded-For": address or _address()}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{server.url}/v1/auth/{path}"
    async with http.request(method, url, json=body, headers=headers) as r:
        data = await r.json() if r.content_type == "application/json" else None
        return Answer(r.status, r.headers, data)


def _limited(answer: Answer, limit: int) -> None:
    assert answer.status == 429, answer
    house_error(answer.body, "rate_limited")
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.headers["RateLimit-Limit"] == str(limit)
    assert answer.headers["RateLimit-Remaining"] == "0"


async def _user_with_password(server: StartedServer) -> str:
    email = new_address()
    password_hash = await server.app[ACCOUNTS].passwords.hash(PASSWORD)
    users = UserRepository(server.app[POOL])
    user = await users.create(email, password_hash, verified=True)
    await users.set_membership(user.id, f"limits-{uuid.uuid4().hex[:8]}", "owner")
    return email


async def test_every_sign_in_route_is_limited_per_address(
    limited: StartedServer, http: aiohttp.ClientSession
) -> None:
    for path in sorted(SIGN_IN_PATHS):
        route = path.removeprefix("/v1/auth/")
        address = _address()
        for _ in range(BURST):
            answer = await _auth(http, limited, "POST", route, {}, address=address)
            assert answer.status != 429, (route, answer)
            assert "RateLimit-Remaining" in answer.headers, route
        refused = await _auth(http, limited, "POST", route, {}, address=address)
        _limited(refused, BURST)

    # Another address is served; routes that need an access token are not counted here.
    assert (
        await _auth(http, limited, "POST", "magic-link", {"email": new_address()})
    ).status == 202
    assert (await _auth(http, limited, "GET", "me", address=address)).status == 401
    assert (await _auth(http, limited, "POST", "logout", {}, address=address)).status == 422


async def test_concurrent_sign_in_requests_never_pass_the_address_limit(
    limited: StartedServer, http: aiohttp.ClientSession
) -> None:
    address = _address()
    answers = await asyncio.gather(
        *(
            _auth(http, limited, "POST", "magic-link", {"email": new_address()}, address=address)
            for _ in range(10)
        )
    )
    assert sorted(a.status for a in answers) == [202] * BURST + [429] * (10 - BURST), answers


async def test_wrong_passwords_lock_an_e_mail_from_anywhere_and_reveal_nothing(
    limited: StartedServer, http: aiohttp.ClientSession
) -> None:
    existing = await _user_with_password(limited)
    unknown = new_address()
    seen: dict[str, list[tuple[int, str, bool]]] = {}
    for email in (existing, unknown):
        answers = [
            await _auth(http, limited, "POST", "login", {"email": email, "password": "wrong"})
            for _ in range(FAILURES)
        ]
        # Past the limit even the right password is refused, before it is looked at.
        answers.append(
            await _auth(http, limited, "POST", "login", {"email": email, "password": PASSWORD})
        )
        _limited(answers[-1], FAILURES)
        seen[email] = [
            (a.status, a.body["error"]["code"], "Retry-After" in a.headers) for a in answers
        ]
    assert (
        seen[existing]
        == seen[unknown]
        == [(401, "unauthorized", False)] * FAILURES + [(429, "rate_limited", True)]
    )

    # Another account is not affected.
    other = await _user_with_password(limited)
    ok = await _auth(http, limited, "POST", "login", {"email": other, "password": PASSWORD})
    assert ok.status == 200 and "access_token" in ok.body, ok


async def test_the_right_password_clears_the_count(
    limited: StartedServer, http: aiohttp.ClientSession
) -> None:
    email = await _user_with_password(limited)
    wrong = {"email": email, "password": "wrong"}
    for _ in range(FAILURES - 1):
        assert (await _auth(http, limited, "POST", "login", wrong)).status == 401
    right = await _auth(http, limited, "POST", "login", {"email": email, "password": PASSWORD})
    assert right.status == 200, right
    for _ in range(FAILURES):
        assert (await _auth(http, limited, "POST", "login", wrong)).status == 401
    _limited(await _auth(http, limited, "POST", "login", wrong), FAILURES)


async def test_concurrent_wrong_passwords_never_pass_the_account_limit(
    limited: StartedServer, http: aiohttp.ClientSession
) -> None:
    body = {"email": new_address(), "password": "wrong"}
    answers = await asyncio.gather(*(_auth(http, limited, "POST", "login", body) for _ in range(8)))
    assert sorted(a.status for a in answers) == [401] * FAILURES + [429] * (8 - FAILURES), answers


def _wrong_code(totp: pyotp.TOTP) -> str:
    window = {totp.at(time.time() + 30 * k) for k in range(-2, 4)}
    return next(c for c in (f"{n:06d}" for n in range(100)) if c not in window)


async def _start_totp(http: aiohttp.ClientSession, server: StartedServer, access: str) -> Any:
    started = await _auth(http, server, "POST", "mfa/totp", token=access)
    assert started.status == 201, started
    totp = pyotp.parse_uri(started.body["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    return totp


async def test_wrong_codes_are_limited_per_user(
    limited: StartedServer, http: aiohttp.ClientSession
) -> None:
    # Confirming an enrolment.
    _, access = await person(limited)
    totp = await _start_totp(http, limited, access)
    wrong = {"code": _wrong_code(totp)}
    for _ in range(FAILURES):
        answer = await _auth(http, limited, "POST", "mfa/totp/confirm", wrong, token=access)
        assert answer.status == 422, answer
    right = {"code": totp.now()}
    _limited(await _auth(http, limited, "POST", "mfa/totp/confirm", right, token=access), FAILURES)

    # Turning it off (after a right code cleared enrolment's count).
    _, access = await person(limited)
    totp = await _start_totp(http, limited, access)
    confirmed = await _auth(
        http, limited, "POST", "mfa/totp/confirm", {"code": totp.now()}, token=access
    )
    assert confirmed.status == 200, confirmed
    for _ in range(FAILURES):
        answer = await _auth(http, limited, "DELETE", "mfa/totp", wrong, token=access)
        assert answer.status == 403, answer
    _limited(await _auth(http, limited, "DELETE", "mfa/totp", wrong, token=access), FAILURES)


async def test_wrong_codes_at_sign_in_count_per_user_across_challenges(
    limited: StartedServer, http: aiohttp.ClientSession
) -> None:
    email = await _user_with_password(limited)
    user = await UserRepository(limited.app[POOL]).by_email(email)
    assert user is not None
    access = limited.app[ACCOUNTS].access.issue(user.id)
    totp = await _start_totp(http, limited, access)
    confirmed = await _auth(
        http, limited, "POST", "mfa/totp/confirm", {"code": totp.now()}, token=access
    )
    assert confirmed.status == 200, confirmed

    async def challenge() -> str:
        answer = await _auth(http, limited, "POST", "login", {"email": email, "password": PASSWORD})
        assert answer.status == 200 and answer.body["mfa_required"], answer
        token: str = answer.body["mfa_token"]
        return token

    first, second = await challenge(), await challenge()
    code = _wrong_code(totp)
    for token in (first, first, second):
        answer = await _auth(
            http, limited, "POST", "mfa/verify", {"mfa_token": token, "code": code}
        )
        assert answer.status == 401, answer
    # The second challenge has attempts left of its own; the user has none.
    refused = await _auth(http, limited, "POST", "mfa/verify", {"mfa_token": second, "code": code})
    _limited(refused, FAILURES)


async def test_second_factor_enrolment_is_limited_per_user_from_any_address(
    limited: StartedServer, http: aiohttp.ClientSession
) -> None:
    for path in sorted(ENROLMENT_PATHS):
        route = path.removeprefix("/v1/auth/")
        body = {"credential": {}} if route.endswith("verify") else None
        _, access = await person(limited)
        for _ in range(BURST):
            answer = await _auth(http, limited, "POST", route, body, token=access)
            assert answer.status != 429 and answer.status < 500, (route, answer)
        _limited(await _auth(http, limited, "POST", route, body, token=access), BURST)
        # Another user is served from the very address; a forged token is not counted (401).
        _, other = await person(limited)
        address = _address()
        answer = await _auth(http, limited, "POST", route, body, token=other, address=address)
        assert answer.status != 429, (route, answer)
        for _ in range(BURST + 1):
            forged = await _auth(http, limited, "POST", route, body, token=access[:-4] + "AAAA")
            assert forged.status == 401, (route, forged)
