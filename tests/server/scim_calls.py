"""A workspace provisioned over SCIM: its admin, a SCIM token, and SCIM calls with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from server.workspace_people import Person, call, team

__all__ = ["ScimWorkspace", "scim", "scim_workspace"]

SCIM_JSON = "application/scim+json"


@dataclass(frozen=True)
class ScimWorkspace:
    name: str
    id: str
    people: dict[str, Person]
    token: str
    base_url: str


async def scim_workspace(server: Any, http: aiohttp.ClientSession) -> ScimWorkspace:
    """A fresh workspace with a member of each role and a SCIM token its admin minted."""
    name, workspace_id, people = await team(server)
    status, body = await call(
        http,
        server,
        "POST",
        "/v1/admin/scim/tokens",
        {"name": "the IdP"},
        token=people["admin"].token,
        workspace=workspace_id,
    )
    assert status == 201, body
    return ScimWorkspace(name, workspace_id, people, body["token"], server.url + "/scim/v2")


async def scim(
    http: aiohttp.ClientSession,
    ws: ScimWorkspace,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token or ws.token}", "Content-Type": SCIM_JSON}
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    async with http.request(method, ws.base_url + path, headers=headers, **kwargs) as response:
        if response.status == 204:
            return 204, None
        assert response.content_type == SCIM_JSON, (response.status, await response.text())
        return response.status, await response.json(content_type=None)
