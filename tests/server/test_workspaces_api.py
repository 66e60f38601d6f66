"""Workspaces and their members through the real server: invitations by mail, role changes,
removals, the last owner, and another workspace's ids answering exactly like missing ones.

Members are signed-in people (access tokens minted for users made in the database); the mail
is read from the server's outbox. Each action is checked in the audit log too.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import aiohttp
import pytest

from server.auth_calls import mails_to
from server.workspace_people import Person, call, house_error, person, team
from voicestream.rest.auth import ACCOUNTS
from voicestream.rest.resources import POOL
from voicestream.store.users import UserRepository

_TOKEN = re.compile(r"vse_[A-Za-z0-9_-]{43}")


async def _invitation_token(server: Any, to: str) -> str:
    mails = await mails_to(server, to)
    assert mails, f"no mail to {to}"
    match = _TOKEN.search(mails[-1].get_content())
    assert match is not None, mails[-1].get_content()
    return match.group(0)


async def _audited(http: aiohttp.ClientSession, server: Any, owner: Person, action: str) -> Any:
    status, page = await call(
        http, server, "GET", f"/v1/audit-logs?action={action}", token=owner.token
    )
    assert status == 200, page
    return page["data"]


async def _members(http: aiohttp.ClientSession, server: Any, workspace_id: str, who: Person) -> Any:
    status, body = await call(
        http, server, "GET", f"/v1/workspaces/{workspace_id}/members", token=who.token
    )
    assert status == 200, body
    return {m["user_id"]: m["role"] for m in body["members"]}


# --- invitations ----------------------------------------------------------------------------


async def test_an_invitation_mail_makes_its_address_a_member(server, http) -> None:
    _, workspace_id, people = await team(server)
    invitee = await person(server)  # has a workspace of their own
    path = f"/v1/workspaces/{workspace_id}/invitations"
    status, invitation = await call(
        http,
        server,
        "POST",
        path,
        {"email": invitee.user.email, "role": "editor"},
        token=people["admin"].token,
    )
    assert status == 201, invitation
    assert invitation["role"] == "editor" and invitation["workspace_id"] == workspace_id
    token = await _invitation_token(server, invitee.user.email)
    assert token not in str(invitation)

    # Someone else signed in cannot use it, and trying does not use it up.
    stranger = await person(server)
    status, data = await call(
        http, server, "POST", "/v1/invitations/accept", {"token": token}, token=stranger.token
    )
    assert status == 403, data
    house_error(data, "forbidden")

    status, joined = await call(
        http, server, "POST", "/v1/invitations/accept", {"token": token}, token=invitee.token
    )
    assert status == 200, joined
    assert joined == {"workspace_id": workspace_id, "role": "editor"}
    members = await _members(http, server, workspace_id, people["viewer"])
    assert members[invitee.id] == "editor"
    # The new membership works on the next request, as an editor.
    status, agent = await call(
        http,
        server,
        "POST",
        "/v1/agents",
        {"name": "desk", "voice": "slt"},
        token=invitee.token,
        workspace=workspace_id,
    )
    assert status == 201, agent

    # Single use.
    status, data = await call(
        http, server, "POST", "/v1/invitations/accept", {"token": token}, token=invitee.token
    )
    assert status == 404, data
    house_error(data, "not_found")

    invited = await _audited(http, server, people["owner"], "member.invited")
    assert invited[0]["details"] == {"email": invitee.user.email, "role": "editor"}
    assert invited[0]["actor"]["user_id"] == people["admin"].id
    joined_log = await _audited(http, server, people["owner"], "member.joined")
    assert joined_log[0]["target"] == {"type": "user", "id": invitee.id}


async def test_an_expired_invitation_is_refused(server, http) -> None:
    _, workspace_id, people = await team(server)
    invitee = await person(server)
    status, invitation = await call(
        http,
        server,
        "POST",
        f"/v1/workspaces/{workspace_id}/invitations",
        {"email": invitee.user.email, "role": "viewer"},
        token=people["owner"].token,
    )
    assert status == 201, invitation
    token = await _invitation_token(server, invitee.user.email)
    await server.app[POOL].execute(
        "UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(invitation["id"]),
    )
    status, data = await call(
        http, server, "POST", "/v1/invitations/accept", {"token": token}, token=invitee.token
    )
    assert status == 404, data
    assert invitee.id not in await _members(http, server, workspace_id, people["owner"])


async def test_who_may_invite_and_change_members(server, http) -> None:
    _, workspace_id, people = await team(server)
    base = f"/v1/workspaces/{workspace_id}"
    target = people["viewer"].id
    for role in ("editor", "viewer"):
        token = people[role].token
        for method, path, body in (
            ("POST", f"{base}/invitations", {"email": "x@example.com", "role": "viewer"}),
            ("PATCH", f"{base}/members/{target}", {"role": "editor"}),
            ("DELETE", f"{base}/members/{target}", None),
        ):
            status, data = await call(http, server, method, path, body, token=token)
            assert status == 403, (role, method, data)
            house_error(data, "forbidden")
        # Any member may see who the members are.
        assert len(await _members(http, server, workspace_id, people[role])) == 4

    admin = people["admin"].token
    owner_id = people["owner"].id
    for method, path, body in (
        ("POST", f"{base}/invitations", {"email": "boss@example.com", "role": "owner"}),
        ("PATCH", f"{base}/members/{target}", {"role": "owner"}),
        ("PATCH", f"{base}/members/{owner_id}", {"role": "viewer"}),
        ("DELETE", f"{base}/members/{owner_id}", None),
    ):
        status, data = await call(http, server, method, path, body, token=admin)
        assert status == 403, (method, path, data)
    assert (await _members(http, server, workspace_id, people["owner"]))[owner_id] == "owner"


async def test_a_role_change_takes_effect_on_the_next_request(server, http) -> None:
    _, workspace_id, people = await team(server)
    viewer = people["viewer"]
    agent = {"name": "desk", "voice": "slt"}
    status, data = await call(http, server, "POST", "/v1/agents", agent, token=viewer.token)
    assert status == 403, data

    status, member = await call(
        http,
        server,
        "PATCH",
        f"/v1/workspaces/{workspace_id}/members/{viewer.id}",
        {"role": "editor"},
        token=people["admin"].token,
    )
    assert status == 200, member
    assert member["role"] == "editor" and member["user_id"] == viewer.id
    status, data = await call(http, server, "POST", "/v1/agents", agent, token=viewer.token)
    assert status == 201, data

    (entry, *_) = await _audited(http, server, people["owner"], "member.role_changed")
    assert entry["details"] == {"from": "viewer", "to": "editor"}
    assert entry["target"]["id"] == viewer.id


async def test_a_removed_member_loses_the_workspace_at_once(server, http) -> None:
    _, workspace_id, people = await team(server)
    editor = people["editor"]
    status, listed = await call(http, server, "GET", "/v1/agents", token=editor.token)
    assert status == 200, listed

    status, data = await call(
        http,
        server,
        "DELETE",
        f"/v1/workspaces/{workspace_id}/members/{editor.id}",
        token=people["admin"].token,
    )
    assert status == 204, data
    # The same access token, unexpired, on the very next request.
    status, data = await call(
        http, server, "GET", "/v1/agents", token=editor.token, workspace=workspace_id
    )
    assert status == 403 and "not a member" in data["error"]["message"], data
    status, data = await call(
        http, server, "GET", f"/v1/workspaces/{workspace_id}/members", token=editor.token
    )
    assert status == 404, data
    assert editor.id not in await _members(http, server, workspace_id, people["owner"])
    (entry, *_) = await _audited(http, server, people["owner"], "member.removed")
    assert entry["target"]["id"] == editor.id and entry["details"]["role"] == "editor"

    status, data = await call(
        http,
        server,
        "DELETE",
        f"/v1/workspaces/{workspace_id}/members/{editor.id}",
        token=people["admin"].token,
    )
    assert status == 404, data  # gone is gone


async def test_the_last_owner_cannot_leave_or_be_demoted(server, http) -> None:
    name, workspace_id, people = await team(server)
    owner = people["owner"]
    member = f"/v1/workspaces/{workspace_id}/members/{owner.id}"
    status, data = await call(http, server, "PATCH", member, {"role": "admin"}, token=owner.token)
    assert status == 409, data
    house_error(data, "conflict")
    status, data = await call(http, server, "DELETE", member, token=owner.token)
    assert status == 409, data

    second = await person(server, name, "owner")
    status, data = await call(http, server, "PATCH", member, {"role": "admin"}, token=owner.token)
    assert status == 200, data
    status, data = await call(
        http,
        server,
        "DELETE",
        f"/v1/workspaces/{workspace_id}/members/{second.id}",
        token=second.token,
    )
    assert status == 409, data  # now the last one


async def test_another_workspaces_ids_answer_like_missing_ones(server, http) -> None:
    _, workspace_a, people_a = await team(server)
    _, workspace_b, people_b = await team(server)
    owner_a = people_a["owner"]

    def same_404(answers: list[tuple[int, Any]]) -> None:
        assert {status for status, _ in answers} == {404}, answers
        assert len({data["error"]["message"] for _, data in answers}) == 1, answers

    answers = [
        await call(http, server, "GET", f"/v1/workspaces/{ws}/members", token=owner_a.token)
        for ws in (workspace_b, uuid.uuid4(), "not-a-uuid")
    ]
    same_404(answers)
    # With a key of workspace A, too.
    key_answers = [
        await call(http, server, "GET", f"/v1/workspaces/{ws}/members", token=server.api_key)
        for ws in (workspace_b, uuid.uuid4(), "not-a-uuid")
    ]
    same_404(key_answers)
    # A member of B named under A's id: as missing as nobody at all.
    answers = [
        await call(
            http,
            server,
            "PATCH",
            f"/v1/workspaces/{workspace_a}/members/{user}",
            {"role": "viewer"},
            token=owner_a.token,
        )
        for user in (people_b["editor"].id, uuid.uuid4(), "nobody")
    ]
    same_404(answers)
    answers = [
        await call(
            http,
            server,
            "DELETE",
            f"/v1/workspaces/{workspace_a}/members/{user}",
            token=owner_a.token,
        )
        for user in (people_b["editor"].id, uuid.uuid4())
    ]
    same_404(answers)
    assert people_b["editor"].id in await _members(http, server, workspace_b, people_b["owner"])


# --- workspaces -----------------------------------------------------------------------------


async def test_a_user_creates_and_lists_workspaces(server, http) -> None:
    viewer = await person(server, role="viewer")  # a viewer elsewhere may still found one
    name = f"studio-{uuid.uuid4().hex[:8]}"
    status, created = await call(
        http, server, "POST", "/v1/workspaces", {"name": name}, token=viewer.token
    )
    assert status == 201, created
    assert created["name"] == name and created["role"] == "owner"
    status, listed = await call(http, server, "GET", "/v1/workspaces", token=viewer.token)
    assert status == 200, listed
    assert [(w["name"], w["role"]) for w in listed["workspaces"]][1:] == [(name, "owner")]
    assert len(listed["workspaces"]) == 2

    owner = Person(viewer.user, viewer.token)
    status, page = await call(
        http,
        server,
        "GET",
        "/v1/audit-logs?action=workspace.created",
        token=owner.token,
        workspace=created["id"],
    )
    assert status == 200 and page["data"][0]["target"]["id"] == created["id"], page

    status, data = await call(
        http, server, "POST", "/v1/workspaces", {"name": name}, token=viewer.token
    )
    assert status == 409, data
    for token in (server.api_key, None):
        status, data = await call(http, server, "GET", "/v1/workspaces", token=token)
        assert status == 401, data
        house_error(data, "unauthorized")


async def test_a_user_with_no_membership_may_accept_an_invitation(server, http) -> None:
    _, workspace_id, people = await team(server)
    users = UserRepository(server.app[POOL])
    user = await users.create(f"new.{uuid.uuid4().hex[:10]}@example.com", None, verified=False)
    newcomer = Person(user, server.app[ACCOUNTS].access.issue(user.id))
    status, data = await call(
        http,
        server,
        "POST",
        f"/v1/workspaces/{workspace_id}/invitations",
        {"email": user.email.upper(), "role": "viewer"},
        token=people["owner"].token,
    )
    assert status == 201, data
    token = await _invitation_token(server, user.email)
    status, joined = await call(
        http, server, "POST", "/v1/invitations/accept", {"token": token}, token=newcomer.token
    )
    assert status == 200 and joined["role"] == "viewer", joined
    status, me = await call(http, server, "GET", "/v1/auth/me", token=newcomer.token)
    assert me["user"]["email_verified"] is True, me  # the mail reached the address


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/workspaces", {"name": "bad name!"}),
        ("POST", "/v1/workspaces", {"name": ""}),
        ("POST", "/v1/workspaces", {"name": "ok", "extra": 1}),
        ("POST", "/v1/workspaces", b"{not json"),
        ("POST", "/v1/invitations/accept", {"token": 12}),
        ("POST", "/v1/invitations/accept", {"token": "x" * 201}),
        ("POST", "/v1/invitations/accept", b"[]"),
        ("POST", "{ws}/invitations", {"email": "not-an-address", "role": "viewer"}),
        ("POST", "{ws}/invitations", {"email": "a@example.com", "role": "boss"}),
        ("POST", "{ws}/invitations", {"email": "a@example.com"}),
        ("POST", "{ws}/invitations", b"\xff\xfe"),
        ("PATCH", "{ws}/members/{me}", {"role": "king"}),
        ("PATCH", "{ws}/members/{me}", {}),
        ("PATCH", "{ws}/members/{me}", b"null"),
    ],
)
async def test_bad_input_gets_a_4xx_json_error(server, http, method, path, body) -> None:
    _, workspace_id, people = await team(server)
    owner = people["owner"]
    path = path.format(ws=f"/v1/workspaces/{workspace_id}", me=people["viewer"].id)
    raw = body if isinstance(body, bytes) else None
    status, data = await call(
        http, server, method, path, None if raw else body, token=owner.token, data=raw
    )
    assert 400 <= status < 500, (status, data)
    assert isinstance(data, dict) and data["error"]["code"] and data["error"]["message"], data
    assert (await _members(http, server, workspace_id, owner))[people["viewer"].id] == "viewer"
