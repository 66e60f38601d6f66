"""Calling ``/v1/auth/…`` in server tests: requests, people to sign in as, their audit trail."""

from __future__ import annotations

import asyncio
import email
import email.policy
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp

from voicestream.identity.mail import OUTBOX_DIR
from voicestream.rest.auth import ACCOUNTS
from voicestream.rest.resources import POOL
from voicestream.store.users import User, UserRepository

__all__ = ["audit_trail", "auth_call", "house_error", "mails_to", "new_address", "person"]


def new_address() -> str:
    return f"Mfa.{uuid.uuid4().hex[:10]}@Example.com"


async def auth_call(
    http: aiohttp.ClientSession,
    server: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
) -> tuple[int, Any]:
    """``method /v1/auth/<path>`` with a JSON body; the status and the JSON answer, if any."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    url = server.url + "/v1/auth/" + path
    async with http.request(method, url, json=body, headers=headers) as response:
        data = await response.json() if response.content_type == "application/json" else None
        return response.status, data


async def person(server: Any) -> tuple[User, str]:
    """A verified user without a password (no argon2 work) and an access token of theirs."""
    users = UserRepository(server.app[POOL])
    user = await users.create(new_address(), None, verified=True)
    await users.set_membership(user.id, f"mfa-{uuid.uuid4().hex[:8]}", "owner")
    return user, server.app[ACCOUNTS].access.issue(user.id)


def house_error(data: Any, code: str) -> None:
    assert isinstance(data, dict) and data["error"]["code"] == code, data
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]


async def audit_trail(server: Any, user: uuid.UUID) -> list[tuple[str, str | None]]:
    """(action, details.method) of every audit entry the user is the actor of, oldest first."""
    rows = await server.app[POOL].fetch(
        "SELECT action, details->>'method' AS method FROM audit_log"
        " WHERE actor_user_id = $1 ORDER BY id",
        user,
    )
    return [(r["action"], r["method"]) for r in rows]


def _mails(server: Any, to: str) -> list[EmailMessage]:
    folder = Path(server.settings.data_dir) / OUTBOX_DIR
    found = []
    for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if str(message["To"]).lower() == to.lower():
            found.append(message)
    return found


async def mails_to(server: Any, to: str) -> list[EmailMessage]:
    """The mails the server has written to its outbox for ``to``, oldest first."""
    return await asyncio.to_thread(_mails, server, to)
