"""Signing out everywhere (``POST /v1/auth/logout-everywhere``) ends every session at once.

Every refresh token of the user is revoked, access tokens issued before it are refused on the
next request although unexpired, and what their sessions opened closes with the protocol's
error and close code 4401: sockets opened with an access token, and sockets opened with a
ticket a session minted; a ticket minted before and not used yet opens nothing. Another
member's socket, and a sign-in made afterwards, are untouched. No audio: the agents have no
greeting.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import aiohttp

from server.auth_calls import audit_trail
from server.waiting import JsonTextRecorder, eventually
from server.workspace_people import Person, call, house_error, team
from voicestream.identity.accounts import TokenPair
from voicestream.rest.auth import ACCOUNTS
from voicestream.rest.resources import POOL
from voicestream.store.keys import ApiKeyRepository
from voicestream.store.users import UserRepository

CLOSED_WITHIN_S = 5.0  # at once in this process
POLLED_WITHIN_S = 5.0  # the registry polls about once a second


async def _sign_in(server: Any, who: Person) -> TokenPair:
    """A fresh sign-in of ``who`` (a device of theirs), without the password's argon2 work."""
    return await server.app[ACCOUNTS].sign_in_with_second_factor(who.user.id)


async def _conversation(
    http: aiohttp.ClientSession, server: Any, agent_id: str, *, token: str = "", ticket: str = ""
) -> JsonTextRecorder:
    params = {"agent_id": agent_id, **({"ticket": ticket} if ticket else {})}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws = await http.ws_connect(f"{server.ws_url}/v1/convai/stream", params=params, headers=headers)
    socket = JsonTextRecorder(ws)
    await socket.wait_for(lambda: any(t["type"] == "session" for t in socket.texts))
    return socket


async def _ticket(http: aiohttp.ClientSession, server: Any, token: str, agent_id: str) -> str:
    status, minted = await call(
        http, server, "POST", "/v1/convai/tickets", {"agent_id": agent_id}, token=token
    )
    assert status == 201, minted
    return str(minted["ticket"])


async def _ticket_refusal(
    http: aiohttp.ClientSession, server: Any, agent_id: str, ticket: str
) -> tuple[int, Any]:
    params = {"agent_id": agent_id, "ticket": ticket}
    try:
        ws = await http.ws_connect(f"{server.ws_url}/v1/convai/stream", params=params)
    except aiohttp.WSServerHandshakeError as refused:
        return refused.status, refused.message
    await ws.close()
    return 101, "opened"


async def _refresh(http: aiohttp.ClientSession, server: Any, refresh_token: str) -> int:
    status, _ = await call(
        http, server, "POST", "/v1/auth/refresh", {"refresh_token": refresh_token}
    )
    return status


async def test_signing_out_everywhere_ends_every_session_and_what_it_opened(server, http) -> None:
    _, _, people = await team(server)
    editor, owner = people["editor"], people["owner"]
    status, agent = await call(
        http, server, "POST", "/v1/agents", {"name": "desk", "voice": "slt"}, token=owner.token
    )
    assert status == 201, agent
    laptop, phone = await _sign_in(server, editor), await _sign_in(server, editor)
    by_session = await _conversation(http, server, agent["id"], token=laptop.access_token)
    minted = await _ticket(http, server, phone.access_token, agent["id"])
    by_ticket = await _conversation(http, server, agent["id"], ticket=minted)
    unused = await _ticket(http, server, phone.access_token, agent["id"])
    bystander = await _conversation(http, server, agent["id"], token=owner.token)

    status, body = await call(
        http, server, "POST", "/v1/auth/logout-everywhere", token=laptop.access_token
    )
    assert status == 204, body

    for socket in (by_session, by_ticket):
        await eventually(
            lambda s=socket: s.ws.closed, within=CLOSED_WITHIN_S, what="the socket to close"
        )
        assert socket.ws.close_code == 4401, socket.describe()
        assert socket.texts[-1]["code"] == "unauthorized", socket.describe()
    # Every access token issued before, on every kind of route, and every refresh token.
    for token in (laptop.access_token, phone.access_token, editor.token):
        for path in ("/v1/auth/me", f"/v1/agents/{agent['id']}", "/v1/workspaces"):
            status, body = await call(http, server, "GET", path, token=token)
            assert status == 401, (path, body)
            house_error(body, "unauthorized")
    assert await _refresh(http, server, laptop.refresh_token) == 401
    assert await _refresh(http, server, phone.refresh_token) == 401
    # The ticket minted before is refused like a forged one.
    assert await _ticket_refusal(http, server, agent["id"], unused) == (
        await _ticket_refusal(http, server, agent["id"], unused[:-4] + "AAAA")
    )
    assert (await _ticket_refusal(http, server, agent["id"], unused))[0] == 401

    # Another member's conversation goes on.
    assert not bystander.ws.closed
    await bystander.ws.send_json({"type": "end"})
    assert await bystander.closed() == 1000
    # Signing in again works at once, and so does what the new session mints.
    again = await _sign_in(server, editor)
    status, me = await call(http, server, "GET", "/v1/auth/me", token=again.access_token)
    assert status == 200 and me["user"]["id"] == editor.id, me
    fresh = await _ticket(http, server, again.access_token, agent["id"])
    opened = await _conversation(http, server, agent["id"], ticket=fresh)
    await opened.ws.close()
    assert ("auth.signed_out_everywhere", None) in await audit_trail(server, editor.user.id)


async def test_signing_out_everywhere_needs_a_session(server, http) -> None:
    _, workspace_id, people = await team(server)
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace_id=uuid.UUID(workspace_id), role="owner"
    )
    for token in (None, key, "not-a-token"):
        status, body = await call(http, server, "POST", "/v1/auth/logout-everywhere", token=token)
        assert status == 401, (token, body)
        house_error(body, "unauthorized")
    # Nobody was signed out by those: the owner's session still works.
    status, _ = await call(http, server, "GET", "/v1/auth/me", token=people["owner"].token)
    assert status == 200


async def test_a_sign_out_made_by_another_process_closes_within_the_poll(server, http) -> None:
    """Another server of the same database signs the user out everywhere: no hook here hears
    of it, the registry's poll reads ``users.sessions_revoked_at``. What the next sign-in
    opens stays open."""
    _, _, people = await team(server)
    editor, owner = people["editor"], people["owner"]
    status, agent = await call(
        http, server, "POST", "/v1/agents", {"name": "desk", "voice": "slt"}, token=owner.token
    )
    assert status == 201, agent
    laptop, phone = await _sign_in(server, editor), await _sign_in(server, editor)
    by_session = await _conversation(http, server, agent["id"], token=laptop.access_token)
    minted = await _ticket(http, server, phone.access_token, agent["id"])
    by_ticket = await _conversation(http, server, agent["id"], ticket=minted)

    # What POST /v1/auth/logout-everywhere writes, without this process's hook.
    await UserRepository(server.app[POOL]).end_sessions(editor.user.id, time.time())
    again = await _sign_in(server, editor)
    after = await _conversation(http, server, agent["id"], token=again.access_token)

    for socket in (by_session, by_ticket):
        await eventually(
            lambda s=socket: s.ws.closed, within=POLLED_WITHIN_S, what="the socket to close"
        )
        assert socket.ws.close_code == 4401, socket.describe()
        assert socket.texts[-1]["code"] == "unauthorized", socket.describe()
    # Opened after the sign-out: it ends as its user asks, not with 4401.
    assert not after.ws.closed
    await after.ws.send_json({"type": "end"})
    assert await after.closed() == 1000
