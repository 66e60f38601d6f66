"""SCIM provisioning of people and roles: a User makes its account a member, groups map to
roles, and deprovisioning (DELETE, or ``active`` false) ends access at once, an open socket
included (closed 4401). Bad credentials and bad documents get SCIM errors."""

from __future__ import annotations

import uuid
from typing import Any

from server.scim_calls import ScimWorkspace, scim, scim_workspace
from server.waiting import JsonTextRecorder, eventually
from server.workspace_people import call
from voicestream.rest.auth import ACCOUNTS
from voicestream.rest.resources import POOL
from voicestream.store.users import UserRepository

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def _user(email: str, **extra: Any) -> dict[str, Any]:
    return {
        "schemas": [USER_SCHEMA],
        "userName": email,
        "externalId": f"ext-{email}",
        "emails": [{"value": email, "primary": True}],
        "active": True,
        **extra,
    }


async def _role_of(server: Any, ws: ScimWorkspace, email: str) -> str | None:
    users = UserRepository(server.app[POOL])
    account = await users.by_email(email)
    if account is None:
        return None
    for membership in await users.memberships(account.id):
        if str(membership.workspace_id) == ws.id:
            return membership.role
    return None


async def _session(server: Any, email: str) -> str:
    account = await UserRepository(server.app[POOL]).by_email(email)
    assert account is not None
    return server.app[ACCOUNTS].access.issue(account.id)


async def test_a_user_becomes_a_member_and_groups_map_to_roles(server, http) -> None:
    ws = await scim_workspace(server, http)
    admin = ws.people["admin"].token
    status, _ = await call(
        http,
        server,
        "PUT",
        "/v1/admin/scim/settings",
        {"default_role": "viewer", "group_roles": {"Studio Editors": "editor"}},
        token=admin,
        workspace=ws.id,
    )
    assert status == 200
    email = f"ada.{uuid.uuid4().hex[:8]}@corp.example"
    status, user = await scim(http, ws, "POST", "/Users", _user(email))
    assert status == 201, user
    assert user["userName"] == email and user["meta"]["resourceType"] == "User"
    assert await _role_of(server, ws, email) == "viewer"

    group = {"schemas": [GROUP_SCHEMA], "displayName": "Studio Editors"}
    group["members"] = [{"value": user["id"]}]
    status, made = await scim(http, ws, "POST", "/Groups", group)
    assert status == 201, made
    assert await _role_of(server, ws, email) == "editor"

    # Filters and paging answer what an IdP asks before it provisions.
    status, found = await scim(http, ws, "GET", f'/Users?filter=userName eq "{email.upper()}"')
    assert status == 200 and [r["id"] for r in found["Resources"]] == [user["id"]]
    status, found = await scim(http, ws, "GET", f'/Users?filter=externalId eq "ext-{email}"')
    assert [r["id"] for r in found["Resources"]] == [user["id"]]
    status, found = await scim(http, ws, "GET", '/Groups?filter=displayName eq "Studio Editors"')
    assert [r["id"] for r in found["Resources"]] == [made["id"]]
    status, page = await scim(http, ws, "GET", "/Users?startIndex=2&count=1")
    assert page["totalResults"] == 1 and page["Resources"] == [] and page["startIndex"] == 2

    # Leaving the group (a PATCH, as Entra and Okta send it) takes the mapped role away.
    remove = {"op": "remove", "path": f'members[value eq "{user["id"]}"]'}
    patch = {"schemas": [PATCH_SCHEMA], "Operations": [remove]}
    status, patched = await scim(http, ws, "PATCH", f"/Groups/{made['id']}", patch)
    assert status == 200, patched
    assert "members" not in patched
    assert await _role_of(server, ws, email) == "viewer"

    # Another workspace's token sees none of it.
    other = await scim_workspace(server, http)
    status, error = await scim(http, other, "GET", f"/Users/{user['id']}")
    assert status == 404 and error["schemas"] == [ERROR_SCHEMA] and error["status"] == "404"


async def test_deprovisioning_ends_access_and_closes_an_open_socket_at_once(server, http) -> None:
    ws = await scim_workspace(server, http)
    await call(
        http,
        server,
        "PUT",
        "/v1/admin/scim/settings",
        {"default_role": "editor"},
        token=ws.people["admin"].token,
        workspace=ws.id,
    )
    email = f"bo.{uuid.uuid4().hex[:8]}@corp.example"
    status, user = await scim(http, ws, "POST", "/Users", _user(email))
    assert status == 201, user
    token = await _session(server, email)
    headers = {"Authorization": f"Bearer {token}", "X-Workspace-Id": ws.id}
    status, _ = await call(http, server, "GET", "/v1/agents", token=token, workspace=ws.id)
    assert status == 200
    ws_socket = await http.ws_connect(
        f"{server.ws_url}/elevenlabs/v1/text-to-speech/slt/stream-input",
        params={"output_format": "pcm_16000"},
        headers=headers,
    )
    socket = JsonTextRecorder(ws_socket)

    off = {"op": "replace", "path": "active", "value": False}
    patch = {"schemas": [PATCH_SCHEMA], "Operations": [off]}
    status, patched = await scim(http, ws, "PATCH", f"/Users/{user['id']}", patch)
    assert status == 200 and patched["active"] is False, patched

    await eventually(lambda: socket.ws.closed, within=5.0, what="the socket to close")
    assert socket.ws.close_code == 4401, socket.describe()
    status, _ = await call(http, server, "GET", "/v1/agents", token=token, workspace=ws.id)
    assert status == 403
    assert await _role_of(server, ws, email) is None

    # Active again: a member again; deleted: gone again.
    on = {"op": "replace", "value": {"active": True}}
    status, _ = await scim(http, ws, "PATCH", f"/Users/{user['id']}", {**patch, "Operations": [on]})
    assert status == 200 and await _role_of(server, ws, email) == "editor"
    status, _ = await scim(http, ws, "DELETE", f"/Users/{user['id']}")
    assert status == 204 and await _role_of(server, ws, email) is None
    status, _ = await call(http, server, "GET", "/v1/agents", token=token, workspace=ws.id)
    assert status == 403


async def test_scim_refuses_bad_tokens_and_bad_documents_with_scim_errors(server, http) -> None:
    ws = await scim_workspace(server, http)
    for token in ("", "vs_scim_" + "x" * 43, ws.people["owner"].token):
        status, error = await scim(http, ws, "GET", "/Users", token=token or "none")
        assert status == 401 and error["schemas"] == [ERROR_SCHEMA], (token, error)
    # A revoked token stops at once.
    status, listed = await call(
        http,
        server,
        "GET",
        "/v1/admin/scim/tokens",
        token=ws.people["admin"].token,
        workspace=ws.id,
    )
    assert status == 200 and len(listed["tokens"]) == 1
    assert "token" not in listed["tokens"][0]  # shown once, at minting
    status, bad = await scim(http, ws, "POST", "/Users", {"schemas": [USER_SCHEMA]})
    assert status == 400 and bad["scimType"] == "invalidValue", bad
    email = f"cy.{uuid.uuid4().hex[:8]}@corp.example"
    assert (await scim(http, ws, "POST", "/Users", _user(email)))[0] == 201
    status, taken = await scim(http, ws, "POST", "/Users", _user(email.upper()))
    assert status == 409 and taken["scimType"] == "uniqueness", taken
    status, bad = await scim(http, ws, "GET", "/Users?filter=userName eq")
    assert status == 400 and bad["scimType"] == "invalidFilter", bad
    status, bad = await scim(http, ws, "GET", f"/Users/{uuid.uuid4()}")
    assert status == 404
    token_id = listed["tokens"][0]["id"]
    status, _ = await call(
        http,
        server,
        "DELETE",
        f"/v1/admin/scim/tokens/{token_id}",
        token=ws.people["admin"].token,
        workspace=ws.id,
    )
    assert status == 200
    status, error = await scim(http, ws, "GET", "/Users")
    assert status == 401
    # Editors are not the workspace's administration.
    status, _ = await call(
        http,
        server,
        "POST",
        "/v1/admin/scim/tokens",
        {"name": "x"},
        token=ws.people["editor"].token,
        workspace=ws.id,
    )
    assert status == 403
