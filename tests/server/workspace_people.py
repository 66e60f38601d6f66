"""Signed-in people of every role for the workspace and key tests, and one JSON caller."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from server.auth_calls import house_error
from voicestream.rest.auth import ACCOUNTS
from voicestream.rest.resources import POOL
from voicestream.store.users import User, UserRepository

__all__ = ["Person", "call", "house_error", "person", "team", "workspace_id_of"]


class Person:
    def __init__(self, user: User, token: str) -> None:
        self.user = user
        self.token = token

    @property
    def id(self) -> str:
        return str(self.user.id)


async def person(server: Any, workspace: str | None = None, role: str = "owner") -> Person:
    """A user (no password: no argon2 work), ``role`` of ``workspace`` (fresh if None)."""
    users = UserRepository(server.app[POOL])
    user = await users.create(f"m.{uuid.uuid4().hex[:10]}@Example.com", None, verified=True)
    await users.set_membership(user.id, workspace or f"team-{uuid.uuid4().hex[:8]}", role)
    return Person(user, server.app[ACCOUNTS].access.issue(user.id))


async def workspace_id_of(server: Any, person: Person) -> str:
    (membership,) = await UserRepository(server.app[POOL]).memberships(person.user.id)
    return str(membership.workspace_id)


async def team(server: Any) -> tuple[str, str, dict[str, Person]]:
    """A workspace (name, id) with a member of every role."""
    owner = await person(server)
    workspace_id = await workspace_id_of(server, owner)
    (membership,) = await UserRepository(server.app[POOL]).memberships(owner.user.id)
    name = membership.workspace_name
    people = {"owner": owner}
    for role in ("admin", "editor", "viewer"):
        people[role] = await person(server, name, role)
    return name, workspace_id, people


async def call(
    http: aiohttp.ClientSession,
    server: Any,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    workspace: str | None = None,
    data: bytes | None = None,
) -> tuple[int, Any]:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if workspace is not None:
        headers["X-Workspace-Id"] = workspace
    kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body}
    async with http.request(method, server.url + path, headers=headers, **kwargs) as response:
        payload = await response.json() if response.content_type == "application/json" else None
        return response.status, payload
