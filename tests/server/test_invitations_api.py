"""Invitations listed and cancelled through the real server (issue 9 §2).

``GET /v1/workspaces/{id}/invitations`` pages the workspace's invitations (pending ones by
default, ``status=accepted|expired`` for the others) and never shows a token;
``DELETE …/invitations/{invitation_id}`` cancels one, after which its token fails exactly like
an unknown one. Owners and admins only, an owner's invitation is an owner's to cancel, and an
accepted one is 409. Each cancellation is in the audit log.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import aiohttp

from server.auth_calls import mails_to
from server.workspace_people import Person, call, house_error, person, team
from voicestream.rest.resources import POOL

_TOKEN = re.compile(r"vse_[A-Za-z0-9_-]{43}")


async def _invite(
    http: aiohttp.ClientSession, server: Any, workspace_id: str, by: Person, email: str, role: str
) -> tuple[dict[str, Any], str]:
    """The invitation and the token mailed to ``email``."""
    status, invitation = await call(
        http,
        server,
        "POST",
        f"/v1/workspaces/{workspace_id}/invitations",
        {"email": email, "role": role},
        token=by.token,
    )
    assert status == 201, invitation
    mails = await mails_to(server, email)
    assert mails, f"no mail to {email}"
    match = _TOKEN.search(mails[-1].get_content())
    assert match is not None
    return invitation, match.group(0)


async def _listing(
    http: aiohttp.ClientSession, server: Any, workspace_id: str, by: Person, query: str = ""
) -> tuple[int, Any]:
    return await call(
        http, server, "GET", f"/v1/workspaces/{workspace_id}/invitations{query}", token=by.token
    )


async def test_pending_invitations_are_listed_newest_first_in_pages(server, http) -> None:
    _, workspace_id, people = await team(server)
    admin = people["admin"]
    addresses = [f"page.{n}.{uuid.uuid4().hex[:6]}@example.com" for n in range(5)]
    tokens = []
    for address in addresses:
        _, token = await _invite(http, server, workspace_id, admin, address, "viewer")
        tokens.append(token)

    seen: list[str] = []
    cursor = ""
    for _ in range(4):
        status, page = await _listing(http, server, workspace_id, admin, f"?limit=2{cursor}")
        assert status == 200, page
        seen += [invitation["email"] for invitation in page["invitations"]]
        assert all(i["status"] == "pending" for i in page["invitations"]), page
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == addresses[::-1]
    # Only the hash is kept, and nothing of the token is shown.
    status, page = await _listing(http, server, workspace_id, people["owner"], "?limit=100")
    assert status == 200
    assert not any(token in str(page) or token[4:20] in str(page) for token in tokens)
    assert {"token", "token_hash"}.isdisjoint(page["invitations"][0])

    status, body = await _listing(http, server, workspace_id, admin, "?cursor=bm9wZQ")
    assert status == 422, body
    house_error(body, "invalid_request")
    status, body = await _listing(http, server, workspace_id, admin, "?status=cancelled")
    assert status == 422, body
    status, body = await _listing(http, server, workspace_id, people["editor"])
    assert status == 403, body
    house_error(body, "forbidden")


async def test_accepted_and_expired_invitations_are_listed_apart(server, http) -> None:
    _, workspace_id, people = await team(server)
    owner = people["owner"]
    joiner, late = await person(server), await person(server)
    _, token = await _invite(http, server, workspace_id, owner, joiner.user.email, "editor")
    expired, _ = await _invite(http, server, workspace_id, owner, late.user.email, "viewer")
    status, _ = await call(
        http, server, "POST", "/v1/invitations/accept", {"token": token}, token=joiner.token
    )
    assert status == 200
    await server.app[POOL].execute(
        "UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(expired["id"]),
    )

    status, page = await _listing(http, server, workspace_id, owner)
    assert status == 200 and page == {"invitations": [], "next_cursor": None}, page
    status, page = await _listing(http, server, workspace_id, owner, "?status=accepted")
    (accepted,) = page["invitations"]
    assert accepted["email"] == joiner.user.email and accepted["status"] == "accepted"
    assert accepted["accepted_at"] is not None
    status, page = await _listing(http, server, workspace_id, owner, "?status=expired")
    assert [i["id"] for i in page["invitations"]] == [expired["id"]]
    assert page["invitations"][0]["status"] == "expired"


async def test_a_cancelled_invitation_cannot_be_accepted(server, http) -> None:
    _, workspace_id, people = await team(server)
    admin, owner = people["admin"], people["owner"]
    invitee = await person(server)
    invitation, token = await _invite(
        http, server, workspace_id, admin, invitee.user.email, "editor"
    )
    path = f"/v1/workspaces/{workspace_id}/invitations/{invitation['id']}"

    status, body = await call(http, server, "DELETE", path, token=people["editor"].token)
    assert status == 403, body
    status, body = await call(http, server, "DELETE", path, token=admin.token)
    assert status == 204, body
    status, page = await _listing(http, server, workspace_id, admin)
    assert invitation["id"] not in str(page)

    # The same answer as a token that never existed: nothing tells the two apart.
    status, cancelled = await call(
        http, server, "POST", "/v1/invitations/accept", {"token": token}, token=invitee.token
    )
    never = "vse_" + "A" * 43
    unknown_status, unknown = await call(
        http, server, "POST", "/v1/invitations/accept", {"token": never}, token=invitee.token
    )
    assert status == unknown_status == 404 and cancelled == unknown, (cancelled, unknown)
    status, members = await call(
        http, server, "GET", f"/v1/workspaces/{workspace_id}/members", token=owner.token
    )
    assert invitee.id not in {m["user_id"] for m in members["members"]}

    status, body = await call(http, server, "DELETE", path, token=admin.token)
    assert status == 404, body
    house_error(body, "not_found")

    status, log = await call(
        http, server, "GET", "/v1/audit-logs?action=member.invitation_cancelled", token=owner.token
    )
    (entry,) = log["data"]
    assert entry["target"] == {"type": "invitation", "id": invitation["id"]}
    assert entry["actor"]["user_id"] == admin.id
    assert entry["details"] == {"email": invitee.user.email, "role": "editor"}


async def test_who_may_cancel_which_invitation(server, http) -> None:
    _, workspace_id, people = await team(server)
    admin, owner = people["admin"], people["owner"]
    newcomer, joiner = await person(server), await person(server)
    owners, _ = await _invite(http, server, workspace_id, owner, newcomer.user.email, "owner")
    joined, token = await _invite(http, server, workspace_id, admin, joiner.user.email, "viewer")
    status, _ = await call(
        http, server, "POST", "/v1/invitations/accept", {"token": token}, token=joiner.token
    )
    assert status == 200
    base = f"/v1/workspaces/{workspace_id}/invitations/"

    # Only an owner may invite an owner, so only an owner may take that back.
    status, body = await call(http, server, "DELETE", base + owners["id"], token=admin.token)
    assert status == 403, body
    house_error(body, "forbidden")
    status, _ = await call(http, server, "DELETE", base + owners["id"], token=owner.token)
    assert status == 204
    # An accepted invitation is a membership now: removing the member is the way.
    status, body = await call(http, server, "DELETE", base + joined["id"], token=owner.token)
    assert status == 409, body
    house_error(body, "conflict")
    # Another workspace's invitation, and an id that is not one, are simply not found.
    _, other_id, others = await team(server)
    theirs, _ = await _invite(
        http, server, other_id, others["owner"], f"x.{uuid.uuid4().hex[:6]}@example.com", "viewer"
    )
    for path in (base + theirs["id"], base + "not-an-id", f"{base}{uuid.uuid4()}"):
        status, body = await call(http, server, "DELETE", path, token=owner.token)
        assert status == 404, (path, body)
        house_error(body, "not_found")
    status, page = await _listing(http, server, other_id, others["owner"])
    assert [i["id"] for i in page["invitations"]] == [theirs["id"]]
