"""People and sign-in through the real server: ``/v1/auth/…`` and user sessions on every route.

Sign-up, verification, sign-in, rotation with reuse detection, magic links and resets are
driven over HTTP, reading the mails the server writes to its outbox; forged tokens of every
kind are refused with the house error; a user's membership decides their workspace and role
on each request, so a removal or a disabled account takes effect at once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from auth_calls import house_error, mails_to

from jwt_forgeries import FORGED_KINDS, forged_tokens
from voicestream.identity.access_tokens import new_email_token
from voicestream.identity.passwords import Passwords
from voicestream.rest.auth import ACCOUNTS
from voicestream.rest.resources import POOL, SECRET_KEY
from voicestream.store.sign_in_tokens import SignInTokenRepository
from voicestream.store.users import User, UserRepository

PASSWORD = "correct horse battery"
_EMAIL_TOKEN = re.compile(r"vse_[A-Za-z0-9_-]{43}")


def _address() -> str:
    return f"Ada.{uuid.uuid4().hex[:10]}@Example.com"


async def _call(
    http: aiohttp.ClientSession,
    server: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    workspace: str | None = None,
) -> tuple[int, Any]:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if workspace is not None:
        headers["X-Workspace-Id"] = workspace
    async with http.request(method, server.url + path, json=body, headers=headers) as response:
        data = await response.json() if response.content_type == "application/json" else None
        return response.status, data


async def _post(http: aiohttp.ClientSession, server: Any, path: str, body: Any) -> tuple[int, Any]:
    return await _call(http, server, "POST", "/v1/auth/" + path, body)


async def _token_from_mail(server: Any, to: str, subject: str) -> str:
    """The token of the newest mail to ``to`` whose subject has ``subject``."""
    mails = [m for m in await mails_to(server, to) if subject in str(m["Subject"])]
    assert mails, f"no mail about {subject!r} to {to}"
    body = mails[-1].get_content()
    match = _EMAIL_TOKEN.search(body)
    assert match is not None, body
    return match.group(0)


async def _member(server: Any, role: str, workspace: str | None = None) -> tuple[User, str]:
    """A user (no password: no argon2 work) who is ``role`` of a fresh workspace."""
    users = UserRepository(server.app[POOL])
    user = await users.create(_address(), None, verified=True)
    await users.set_membership(user.id, workspace or f"people-{uuid.uuid4().hex[:8]}", role)
    return user, server.app[ACCOUNTS].access.issue(user.id)


async def _sign_up_and_in(http: aiohttp.ClientSession, server: Any, address: str) -> dict[str, Any]:
    status, body = await _post(http, server, "signup", {"email": address, "password": PASSWORD})
    assert status == 201, body
    status, tokens = await _post(http, server, "login", {"email": address, "password": PASSWORD})
    assert status == 200, tokens
    return dict(tokens)


# --- access tokens --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FORGED_KINDS)
async def test_forged_and_foreign_tokens_get_401(server, http, kind: str) -> None:
    user, _ = await _member(server, "owner")
    token = forged_tokens(server.app[SECRET_KEY], user.id)[kind]
    for path in ("/v1/agents", "/v1/auth/me"):
        status, data = await _call(http, server, "GET", path, token=token)
        assert status == 401, (path, data)
        house_error(data, "unauthorized")


async def test_a_session_acts_with_its_memberships_role(server, http) -> None:
    owner, owner_token = await _member(server, "owner")
    workspace = (await UserRepository(server.app[POOL]).memberships(owner.id))[0]
    viewer, viewer_token = await _member(server, "viewer", workspace.workspace_name)

    status, me = await _call(http, server, "GET", "/v1/auth/me", token=viewer_token)
    assert status == 200, me
    assert me["user"] == {
        "id": str(viewer.id),
        "email": viewer.email,
        "email_verified": True,
        "created_at": me["user"]["created_at"],
    }
    assert [(m["workspace"], m["role"]) for m in me["memberships"]] == [
        (workspace.workspace_name, "viewer")
    ]

    status, created = await _call(
        http, server, "POST", "/v1/agents", {"name": "desk", "voice": "slt"}, token=owner_token
    )
    assert status == 201, created
    status, listed = await _call(http, server, "GET", "/v1/agents", token=viewer_token)
    assert status == 200 and [a["id"] for a in listed["agents"]] == [created["id"]]
    status, refused = await _call(
        http, server, "POST", "/v1/agents", {"name": "b", "voice": "slt"}, token=viewer_token
    )
    assert status == 403, refused
    house_error(refused, "forbidden")
    # An API key still means what it did, in the header the session used.
    status, _ = await _call(http, server, "GET", "/v1/voices", token=server.api_key)
    assert status == 200


async def test_the_workspace_header_picks_a_membership_checked_per_request(server, http) -> None:
    users = UserRepository(server.app[POOL])
    user, token = await _member(server, "owner")
    (first,) = await users.memberships(user.id)
    second = await users.set_membership(user.id, f"people-{uuid.uuid4().hex[:8]}", "viewer")

    async def create_agent(workspace: str | None) -> tuple[int, Any]:
        body = {"name": "desk", "voice": "slt"}
        return await _call(
            http, server, "POST", "/v1/agents", body, token=token, workspace=workspace
        )

    status, agent = await create_agent(None)  # the oldest membership: owner
    assert status == 201, agent
    status, data = await create_agent(str(second.workspace_id))  # a viewer there
    assert status == 403, data
    status, listed = await _call(
        http, server, "GET", "/v1/agents", token=token, workspace=str(second.workspace_id)
    )
    assert status == 200 and listed["agents"] == []  # the first workspace's agent stays there

    status, data = await create_agent(str(uuid.uuid4()))
    assert status == 403 and "not a member" in data["error"]["message"], data
    status, data = await create_agent("not-a-uuid")
    assert status == 400, data
    house_error(data, "bad_request")

    # Removed: refused at once, the token being as valid as before.
    await users.remove_membership(user.id, first.workspace_id)
    status, data = await _call(
        http, server, "GET", "/v1/agents", token=token, workspace=str(first.workspace_id)
    )
    assert status == 403 and "not a member" in data["error"]["message"], data
    # Disabled: nothing works any more.
    await users.set_disabled(user.id, True)
    for path in ("/v1/agents", "/v1/auth/me"):
        status, data = await _call(http, server, "GET", path, token=token)
        assert status == 401, (path, data)
        house_error(data, "unauthorized")


async def test_me_needs_a_session_not_a_key(server, http) -> None:
    for token in (server.api_key, None):
        status, data = await _call(http, server, "GET", "/v1/auth/me", token=token)
        assert status == 401, data
        house_error(data, "unauthorized")


# --- sign-up, verification, sign-in, rotation ------------------------------------------------


async def test_sign_up_verify_sign_in_and_rotate(server, http) -> None:
    address = _address()
    status, body = await _post(
        http, server, "signup", {"email": address, "password": PASSWORD, "workspace": None}
    )
    assert status == 201 and body == {"status": "verification_sent", "email": address}
    token = await _token_from_mail(server, address, "Confirm your e-mail")

    # Unverified people may sign in (documented): verification matters for inviting others.
    status, first = await _post(
        http, server, "login", {"email": address.upper(), "password": PASSWORD}
    )
    assert status == 200, first
    assert first["token_type"] == "bearer" and first["expires_in"] == 15 * 60
    assert first["refresh_token"].startswith("vsr_")
    status, me = await _call(http, server, "GET", "/v1/auth/me", token=first["access_token"])
    assert status == 200 and me["user"]["email_verified"] is False
    (membership,) = me["memberships"]
    assert membership["role"] == "owner" and membership["workspace"].startswith("Ada.")

    assert (await _post(http, server, "verify-email", {"token": token}))[0] == 204
    status, again = await _post(http, server, "verify-email", {"token": token})
    assert status == 401, again  # single use
    status, me = await _call(http, server, "GET", "/v1/auth/me", token=first["access_token"])
    assert me["user"]["email_verified"] is True

    # Rotation: a new pair; the old refresh token presented again kills the whole family.
    status, second = await _post(http, server, "refresh", {"refresh_token": first["refresh_token"]})
    assert status == 200, second
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    status, reused = await _post(http, server, "refresh", {"refresh_token": first["refresh_token"]})
    assert status == 401, reused
    house_error(reused, "unauthorized")
    status, newest = await _post(
        http, server, "refresh", {"refresh_token": second["refresh_token"]}
    )
    assert status == 401, newest  # the family's newest token died with it
    # Another sign-in is another family, untouched.
    status, third = await _post(http, server, "login", {"email": address, "password": PASSWORD})
    status, fourth = await _post(http, server, "refresh", {"refresh_token": third["refresh_token"]})
    assert status == 200, fourth
    # Each sign-in is in the audit log, under the person, with no workspace yet.
    user = await UserRepository(server.app[POOL]).by_email(address)
    assert user is not None
    rows = await server.app[POOL].fetch(
        "SELECT action, actor_display, workspace_id, details FROM audit_log"
        " WHERE actor_user_id = $1 ORDER BY id",
        user.id,
    )
    assert [(r["action"], r["actor_display"].lower(), r["workspace_id"]) for r in rows] == [
        ("auth.signed_in", address.lower(), None),
        ("auth.signed_in", address.lower(), None),
    ]


async def test_sign_up_reveals_nothing_about_registered_addresses(server, http) -> None:
    address = _address()
    first = await _post(http, server, "signup", {"email": address})
    again = await _post(http, server, "signup", {"email": address.lower(), "password": PASSWORD})
    assert first[0] == again[0] == 201
    assert first[1]["status"] == again[1]["status"] == "verification_sent"
    subjects = [str(m["Subject"]) for m in await mails_to(server, address)]
    assert subjects == ["Confirm your e-mail address", "Someone tried to sign up with your address"]
    notice = (await mails_to(server, address))[-1].get_content()
    assert _EMAIL_TOKEN.search(notice) is None  # no way in for whoever tried
    assert await UserRepository(server.app[POOL]).by_email(address) is not None
    # The magic-link-only account has no password: signing in with one fails as usual.
    status, data = await _post(http, server, "login", {"email": address, "password": PASSWORD})
    assert status == 401, data


async def test_a_taken_workspace_name_is_409(server, http) -> None:
    name = f"taken-{uuid.uuid4().hex[:8]}"
    status, _ = await _post(http, server, "signup", {"email": _address(), "workspace": name})
    assert status == 201
    status, data = await _post(http, server, "signup", {"email": _address(), "workspace": name})
    assert status == 409, data
    house_error(data, "conflict")


async def test_wrong_password_and_unknown_address_look_the_same(server, http) -> None:
    address = _address()
    await _sign_up_and_in(http, server, address)
    wrong = await _post(http, server, "login", {"email": address, "password": "wrong" * 3})
    unknown = await _post(http, server, "login", {"email": _address(), "password": PASSWORD})
    assert wrong[0] == unknown[0] == 401
    assert wrong[1] == unknown[1]
    house_error(wrong[1], "unauthorized")


async def test_logout_revokes_the_sign_in(server, http) -> None:
    pair = await _sign_up_and_in(http, server, _address())
    status, rotated = await _post(http, server, "refresh", {"refresh_token": pair["refresh_token"]})
    assert status == 200, rotated
    # Signing out with the latest token ends the sign-in, and so every token of it.
    assert (await _post(http, server, "logout", {"refresh_token": rotated["refresh_token"]}))[
        0
    ] == 204
    status, data = await _post(http, server, "refresh", {"refresh_token": rotated["refresh_token"]})
    assert status == 401, data
    # Unknown tokens: nothing to revoke, the same answer.
    status, _ = await _post(http, server, "logout", {"refresh_token": "vsr_" + "x" * 43})
    assert status == 204


# --- magic links and resets -----------------------------------------------------------------


async def test_a_magic_link_works_once_and_not_after_expiry(server, http) -> None:
    user, _ = await _member(server, "editor")
    stranger = _address()
    for address in (user.email, stranger):
        status, body = await _post(http, server, "magic-link", {"email": address})
        assert status == 202 and body["status"] == "accepted", body
    assert await mails_to(server, stranger) == []
    token = await _token_from_mail(server, user.email, "sign-in link")

    status, pair = await _post(http, server, "magic-link/redeem", {"token": token})
    assert status == 200, pair
    status, me = await _call(http, server, "GET", "/v1/auth/me", token=pair["access_token"])
    assert status == 200 and me["user"]["id"] == str(user.id)
    status, data = await _post(http, server, "magic-link/redeem", {"token": token})
    assert status == 401, data
    house_error(data, "unauthorized")

    expired = new_email_token()
    tokens = SignInTokenRepository(server.app[POOL])
    await tokens.create_email_token(
        user.id, "magic", hashlib.sha256(expired.encode()).digest(), ttl_s=-1
    )
    status, data = await _post(http, server, "magic-link/redeem", {"token": expired})
    assert status == 401, data
    # A token for one purpose opens nothing else.
    status, _ = await _post(http, server, "verify-email", {"token": token})
    assert status == 401


async def test_a_password_reset_ends_every_session(server, http) -> None:
    address = _address()
    before = await _sign_up_and_in(http, server, address)
    status, body = await _post(http, server, "password-reset", {"email": address})
    assert status == 202, body
    assert (await _post(http, server, "password-reset", {"email": _address()}))[0] == 202
    token = await _token_from_mail(server, address, "Reset your password")

    new_password = "a better horse battery"
    status, data = await _post(
        http, server, "password-reset/confirm", {"token": token, "password": "short"}
    )
    assert status == 422, data  # refused before the token is used up
    house_error(data, "invalid_request")
    status, data = await _post(
        http, server, "password-reset/confirm", {"token": token, "password": new_password}
    )
    assert status == 204, data
    status, data = await _post(
        http, server, "password-reset/confirm", {"token": token, "password": new_password}
    )
    assert status == 401, data  # single use

    status, data = await _post(http, server, "refresh", {"refresh_token": before["refresh_token"]})
    assert status == 401, data
    status, data = await _call(http, server, "GET", "/v1/auth/me", token=before["access_token"])
    assert status == 401, data
    status, _ = await _post(http, server, "login", {"email": address, "password": PASSWORD})
    assert status == 401
    status, after = await _post(http, server, "login", {"email": address, "password": new_password})
    assert status == 200, after
    status, me = await _call(http, server, "GET", "/v1/auth/me", token=after["access_token"])
    assert status == 200 and me["user"]["email_verified"] is True  # the mail reached them


# --- bad input ------------------------------------------------------------------------------

_ROUTES = {
    "signup": {"email": "a@example.com"},
    "verify-email": {"token": "vse_x"},
    "login": {"email": "a@example.com", "password": PASSWORD},
    "refresh": {"refresh_token": "vsr_x"},
    "logout": {"refresh_token": "vsr_x"},
    "magic-link": {"email": "a@example.com"},
    "magic-link/redeem": {"token": "vse_x"},
    "password-reset": {"email": "a@example.com"},
    "password-reset/confirm": {"token": "vse_x", "password": PASSWORD},
}


def _bad_bodies(good: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    yield "empty", {}
    yield "array", [good]
    yield "unknown-field", {**good, "admin": True}
    for field in good:
        yield f"{field}-missing", {k: v for k, v in good.items() if k != field}
        yield f"{field}-number", {**good, field: 5}
        yield f"{field}-null", {**good, field: None}
        yield f"{field}-list", {**good, field: ["x"]}
        yield f"{field}-huge", {**good, field: "x" * 100_000 + "@example.com"}
    if "email" in good:
        for bad in ("not-an-email", "a@b", "a b@example.com", "@example.com", "a@example..com"):
            yield f"email-{bad!r}", {**good, "email": bad}


_CASES = [
    (route, name, body) for route, good in _ROUTES.items() for name, body in _bad_bodies(good)
]


async def test_bad_input_on_every_route_is_a_4xx_json_error(server, http) -> None:
    failures = []
    extra = [
        ("signup", "workspace-bad-name", {"email": _address(), "workspace": "no spaces!"}),
        ("signup", "workspace-huge", {"email": _address(), "workspace": "w" * 65}),
        ("signup", "password-weak", {"email": _address(), "password": "short"}),
        ("signup", "password-huge", {"email": _address(), "password": "p" * 10_000}),
    ]
    for route, name, body in _CASES + extra:
        status, data = await _post(http, server, route, body)
        ok = 400 <= status < 500 and isinstance(data, dict) and data.get("error", {}).get("code")
        if not ok:
            failures.append((route, name, status, data))
    async with http.post(
        f"{server.url}/v1/auth/login",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        house_error(await response.json(), "invalid_json")
    assert not failures, failures


# --- secrets at rest and in the log ---------------------------------------------------------


class _Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def every_log_line() -> Iterator[list[str]]:
    handler = _Everything()
    loggers = [logging.getLogger(n) for n in ("voicestream", "aiohttp")]
    levels = [lg.level for lg in loggers]
    root = logging.getLogger()
    root.addHandler(handler)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    yield handler.lines
    root.removeHandler(handler)
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


async def test_secrets_are_never_stored_or_logged_in_clear(server, http, every_log_line) -> None:
    address = _address()
    pair = await _sign_up_and_in(http, server, address)
    verify = await _token_from_mail(server, address, "Confirm your e-mail")
    await _post(http, server, "magic-link", {"email": address})
    magic = await _token_from_mail(server, address, "sign-in link")
    await _post(http, server, "refresh", {"refresh_token": pair["refresh_token"]})
    await _post(http, server, "refresh", {"refresh_token": pair["refresh_token"]})  # reuse: logged
    secrets = [PASSWORD, pair["refresh_token"], pair["access_token"], verify, magic]

    pool = server.app[POOL]
    user = await UserRepository(pool).by_email(address)
    assert user is not None and user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert (await Passwords().verify(user.password_hash, PASSWORD)).ok
    rows = []
    for table in ("users", "refresh_tokens", "email_tokens"):
        column = "id" if table == "users" else "user_id"
        rows += await pool.fetch(
            f"SELECT row_to_json(t)::text AS row FROM {table} t WHERE {column} = $1", user.id
        )
    stored = "\n".join(r["row"] for r in rows)
    assert stored.count('"token_hash"') == 2 + 2  # two refresh tokens, two mail tokens
    for secret in secrets:
        assert secret not in stored
    hashes = await pool.fetch("SELECT token_hash FROM refresh_tokens WHERE user_id = $1", user.id)
    assert hashlib.sha256(pair["refresh_token"].encode()).digest() in {
        bytes(r["token_hash"]) for r in hashes
    }

    assert any("reused" in line for line in every_log_line)
    logged = "\n".join(every_log_line)
    for secret in secrets:
        assert secret not in logged
