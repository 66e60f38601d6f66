"""``/v1/admin/seats`` and ``/v1/admin/usage``: the caller's workspace's seats, as a console.

Listing shows every member with role, own quotas, the quota that applies and this month's use,
plus pending invitations; invite, change role and quotas, and remove go through the same
domain rules as ``/v1/workspaces/{id}/members`` (an admin cannot touch an owner), each one in
the audit log. Another workspace's member is as missing as someone who does not exist.
"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from helpers import StartedServer
from server.workspace_people import call, house_error, team
from voicestream.rest.resources import POOL, USAGE
from voicestream.store.keys import ApiKeyRepository


async def _key(server: StartedServer, workspace_id: str, role: str) -> str:
    _, secret = await ApiKeyRepository(server.app[POOL]).create(
        workspace_id=uuid.UUID(workspace_id), role=role
    )
    return secret


async def _seats(http: aiohttp.ClientSession, server: StartedServer, token: str) -> Any:
    status, body = await call(http, server, "GET", "/v1/admin/seats", token=token)
    assert status == 200, body
    return body


async def test_an_admin_runs_the_seats_of_their_own_workspace(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, workspace_id, people = await team(server)
    editor, viewer = people["editor"], people["viewer"]
    await server.app[USAGE].record(
        (uuid.UUID(workspace_id), None, editor.user.id), "tts_characters", 30
    )
    admin_key = await _key(server, workspace_id, "admin")

    listing = await _seats(http, server, admin_key)
    seats = {seat["user_id"]: seat for seat in listing["seats"]}
    assert {seat["role"] for seat in seats.values()} == {"owner", "admin", "editor", "viewer"}
    assert seats[editor.id]["used"]["tts_characters"] == 30
    assert seats[viewer.id]["used"]["tts_characters"] == 0
    assert seats[editor.id]["quotas"]["tts_characters"] is None
    assert listing["invitations"] == []

    email = f"seat.{uuid.uuid4().hex[:8]}@example.com"
    status, invitation = await call(
        http, server, "POST", "/v1/admin/seats", {"email": email, "role": "editor"}, token=admin_key
    )
    assert status == 201 and invitation["role"] == "editor", invitation
    change = {"role": "viewer", "quotas": {"tts_characters": 100}}
    status, seat = await call(
        http, server, "PATCH", f"/v1/admin/seats/{editor.id}", change, token=admin_key
    )
    assert status == 200 and seat["role"] == "viewer", seat
    assert seat["quotas"]["tts_characters"] == 100
    status, _ = await call(http, server, "DELETE", f"/v1/admin/seats/{viewer.id}", token=admin_key)
    assert status == 204

    listing = await _seats(http, server, admin_key)
    seats = {seat["user_id"]: seat for seat in listing["seats"]}
    assert viewer.id not in seats and len(seats) == 3
    assert seats[editor.id]["role"] == "viewer"
    assert seats[editor.id]["effective_quotas"]["tts_characters"] == 100
    assert [i["email"] for i in listing["invitations"]] == [email.lower()]
    # The removed member has lost the workspace at once.
    status, _ = await call(
        http, server, "GET", "/v1/usage", token=viewer.token, workspace=workspace_id
    )
    assert status in (403, 404)

    status, log = await call(
        http, server, "GET", "/v1/audit-logs?action=member.&limit=10", token=admin_key
    )
    assert status == 200, log
    assert [entry["action"] for entry in log["data"]] == [
        "member.removed",
        "member.quotas_changed",
        "member.role_changed",
        "member.invited",
    ]


async def test_an_admin_cannot_touch_an_owner_and_editors_cannot_use_the_console(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, workspace_id, people = await team(server)
    admin = people["admin"]
    owner = people["owner"].id
    for method, body in (("PATCH", {"role": "viewer"}), ("DELETE", None)):
        status, answer = await call(
            http, server, method, f"/v1/admin/seats/{owner}", body, token=admin.token
        )
        assert status == 403, answer
        house_error(answer, "forbidden")
    status, answer = await call(
        http,
        server,
        "POST",
        "/v1/admin/seats",
        {"email": "boss@example.com", "role": "owner"},
        token=admin.token,
    )
    assert status == 403, answer
    for role in ("editor", "viewer"):
        for token in (people[role].token, await _key(server, workspace_id, role)):
            for path in ("/v1/admin/seats", "/v1/admin/usage"):
                status, answer = await call(http, server, "GET", path, token=token)
                assert status == 403, (role, path, answer)


async def test_usage_per_seat_over_a_period(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, workspace_id, people = await team(server)
    editor = people["editor"]
    usage = server.app[USAGE]
    await usage.record((uuid.UUID(workspace_id), None, editor.user.id), "stt_seconds", 12.5)
    await usage.record((uuid.UUID(workspace_id), None, None), "tts_characters", 7)
    owner = people["owner"].token

    status, page = await call(http, server, "GET", "/v1/admin/usage", token=owner)
    assert status == 200, page
    rows = {row["user_id"]: row for row in page["data"]}
    assert rows[editor.id]["stt_seconds"] == 12.5
    assert rows[editor.id]["email"] == editor.user.email and rows[editor.id]["role"] == "editor"
    assert rows[None]["tts_characters"] == 7 and rows[None]["email"] is None

    status, page = await call(
        http, server, "GET", f"/v1/admin/usage?user_id={editor.id}", token=owner
    )
    assert status == 200 and [row["user_id"] for row in page["data"]] == [editor.id], page
    status, page = await call(
        http, server, "GET", "/v1/admin/usage?since=2020-01-01&until=2020-02-01", token=owner
    )
    assert status == 200 and page["data"] == [], page


async def test_the_seat_routes_refuse_bad_input(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, _, people = await team(server)
    _, _, others = await team(server)
    owner = people["owner"].token
    stranger = others["editor"].id
    bad_invites: list[Any] = [
        {"email": "not an address", "role": "editor"},
        {"email": "a@example.com", "role": "operator"},
        {"email": "a@example.com", "role": "editor", "extra": 1},
        {"email": "a@example.com"},
        [],
    ]
    for body in bad_invites:
        status, answer = await call(http, server, "POST", "/v1/admin/seats", body, token=owner)
        assert status == 422, (body, answer)
        house_error(answer, "invalid_request")
    editor = people["editor"].id
    for body in ({}, {"role": "chief"}, {"quotas": {"tts_characters": -1}}):
        status, answer = await call(
            http, server, "PATCH", f"/v1/admin/seats/{editor}", body, token=owner
        )
        assert status == 422, (body, answer)
    for user_id in ("not-a-uuid", str(uuid.uuid4()), stranger):
        for method, body in (("PATCH", {"role": "viewer"}), ("DELETE", None)):
            status, answer = await call(
                http, server, method, f"/v1/admin/seats/{user_id}", body, token=owner
            )
            assert status == 404, (method, user_id, answer)
            house_error(answer, "not_found")
    status, answer = await call(
        http, server, "GET", f"/v1/admin/usage?user_id={stranger}", token=owner
    )
    assert status == 404, answer
    for query in ("limit=0", "cursor=nope", "since=2026-02-01&until=2026-01-01", "group_by=day"):
        status, answer = await call(http, server, "GET", f"/v1/admin/usage?{query}", token=owner)
        assert status == 422, (query, answer)
