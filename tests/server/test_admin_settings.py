"""``GET``/``PATCH /v1/admin/settings``: the caller's workspace's name and allowed origins.

Changes are audited, a refused change changes nothing, and the same list is what
``/v1/workspaces/{id}`` shows (one setting, two consoles).
"""

from __future__ import annotations

import uuid

import aiohttp

from helpers import StartedServer
from server.workspace_people import call, house_error, team


async def test_an_admin_renames_the_workspace_and_sets_its_origins(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    name, workspace_id, people = await team(server)
    admin = people["admin"].token
    status, settings = await call(http, server, "GET", "/v1/admin/settings", token=admin)
    assert status == 200, settings
    assert settings["id"] == workspace_id and settings["name"] == name
    assert settings["members"] == 4 and settings["allowed_origins"] == []

    renamed = f"renamed-{uuid.uuid4().hex[:8]}"
    change = {"name": renamed, "allowed_origins": ["https://Shop.Example.com:443"]}
    status, settings = await call(http, server, "PATCH", "/v1/admin/settings", change, token=admin)
    assert status == 200, settings
    assert settings["name"] == renamed
    assert settings["allowed_origins"] == ["https://shop.example.com"]
    status, same = await call(http, server, "GET", f"/v1/workspaces/{workspace_id}", token=admin)
    assert status == 200 and same["allowed_origins"] == ["https://shop.example.com"], same

    status, log = await call(
        http, server, "GET", "/v1/audit-logs?action=workspace.&limit=5", token=admin
    )
    assert status == 200, log
    entries = {entry["action"]: entry["details"] for entry in log["data"]}
    assert entries["workspace.renamed"] == {"from": name, "to": renamed}
    assert entries["workspace.origins_changed"]["to"] == ["https://shop.example.com"]


async def test_a_refused_settings_change_changes_nothing(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    name, _, people = await team(server)
    taken, _, _ = await team(server)
    owner = people["owner"].token
    for body, status_code in (
        ({}, 422),
        ({"name": "has spaces"}, 422),
        ({"name": ""}, 422),
        ({"colour": "blue"}, 422),
        ({"allowed_origins": ["not an origin"], "name": "fine-name"}, 422),
        ({"allowed_origins": ["https://*.example.com"]}, 422),
        ({"name": taken, "allowed_origins": ["https://a.example.com"]}, 409),
    ):
        status, answer = await call(http, server, "PATCH", "/v1/admin/settings", body, token=owner)
        assert status == status_code, (body, answer)
        house_error(answer, "conflict" if status_code == 409 else "invalid_request")
    status, settings = await call(http, server, "GET", "/v1/admin/settings", token=owner)
    assert settings["name"] == name and settings["allowed_origins"] == [], settings
    for role in ("editor", "viewer"):
        for method in ("GET", "PATCH"):
            status, answer = await call(
                http, server, method, "/v1/admin/settings", {"name": "x"}, token=people[role].token
            )
            assert status == 403, (role, method, answer)
