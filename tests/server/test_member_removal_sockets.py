"""Removing a member, or making them a viewer, ends what they opened, at once.

Their access token stops working on the next request (the auth middleware reads the
membership each time), and the sockets they opened with it or with a ticket they minted close
with the protocol's error and close code 4401, as a revoked key's do. A ticket they minted and
did not use is refused like a forged one. No audio: the agents have no greeting and the TTS
socket is never sent text.
"""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

import aiohttp

from server.waiting import JsonTextRecorder, eventually
from server.workspace_people import Person, call, house_error, team
from voicestream.rest.resources import POOL
from voicestream.store.members import MemberRepository
from voicestream.transports.socket_registry import OPEN_SOCKETS

CLOSED_WITHIN_S = 5.0  # at once in this process; the poll elsewhere is about a second


async def _agent(http: aiohttp.ClientSession, server: Any, who: Person) -> str:
    body = {"name": "desk", "voice": "slt"}  # no first message: nothing is synthesized
    status, agent = await call(http, server, "POST", "/v1/agents", body, token=who.token)
    assert status == 201, agent
    return str(agent["id"])


async def _ticket(http: aiohttp.ClientSession, server: Any, who: Person, agent_id: str) -> str:
    status, minted = await call(
        http, server, "POST", "/v1/convai/tickets", {"agent_id": agent_id}, token=who.token
    )
    assert status == 201, minted
    return str(minted["ticket"])


async def _conversation(
    http: aiohttp.ClientSession,
    server: Any,
    agent_id: str,
    *,
    token: str | None = None,
    ticket: str | None = None,
) -> JsonTextRecorder:
    params = {"agent_id": agent_id, **({"ticket": ticket} if ticket else {})}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws = await http.ws_connect(f"{server.ws_url}/v1/convai/stream", params=params, headers=headers)
    socket = JsonTextRecorder(ws)
    await socket.wait_for(lambda: any(t["type"] == "session" for t in socket.texts))
    return socket


async def _tts_stream_input(
    http: aiohttp.ClientSession, server: Any, token: str
) -> JsonTextRecorder:
    ws = await http.ws_connect(
        f"{server.ws_url}/elevenlabs/v1/text-to-speech/slt/stream-input",
        params={"output_format": "pcm_16000"},
        headers={"Authorization": f"Bearer {token}"},
    )
    return JsonTextRecorder(ws)


async def _closed_for_lost_access(socket: JsonTextRecorder) -> dict[str, Any]:
    """The server closes the socket with 4401 after its protocol's error; that error."""
    await eventually(
        lambda: socket.ws.closed, within=CLOSED_WITHIN_S, what="the server to close the socket"
    )
    assert socket.ws.close_code == 4401, socket.describe()
    return socket.texts[-1]


async def _open_refusal(
    http: aiohttp.ClientSession, server: Any, agent_id: str, ticket: str
) -> tuple[int, Any]:
    """Try to open a conversation with ``ticket``: the status and error before the upgrade."""
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    async with http.get(
        f"{server.url}/v1/convai/stream",
        params={"agent_id": agent_id, "ticket": ticket},
        headers=headers,
    ) as r:
        return r.status, await r.json()


async def _remove(
    http: aiohttp.ClientSession, server: Any, workspace_id: str, who: Person, by: Person
) -> None:
    status, data = await call(
        http, server, "DELETE", f"/v1/workspaces/{workspace_id}/members/{who.id}", token=by.token
    )
    assert status == 204, data


async def test_removing_a_member_closes_the_sockets_of_their_session(server, http) -> None:
    _, workspace_id, people = await team(server)
    editor, admin = people["editor"], people["admin"]
    agent = await _agent(http, server, people["owner"])
    conversation = await _conversation(http, server, agent, token=editor.token)
    tts = await _tts_stream_input(http, server, editor.token)
    bystander = await _conversation(http, server, agent, token=admin.token)
    await _remove(http, server, workspace_id, editor, people["owner"])
    error = await _closed_for_lost_access(conversation)
    assert error["type"] == "error" and error["code"] == "unauthorized", error
    assert "removed" in error["message"], error
    error = await _closed_for_lost_access(tts)
    # ElevenLabs' own error shape, which its SDKs read.
    assert error["error"] == "unauthorized" and "removed" in error["message"], error
    # Their access token stopped working too, on any route and in any workspace it names.
    status, data = await call(http, server, "GET", f"/v1/agents/{agent}", token=editor.token)
    assert status == 403, data
    house_error(data, "forbidden")
    status, data = await call(
        http, server, "GET", f"/v1/workspaces/{workspace_id}/members", token=editor.token
    )
    assert status == 404, data
    # Another member's conversation goes on.
    assert not bystander.ws.closed
    await bystander.ws.send_json({"type": "end"})
    assert await bystander.closed() == 1000


async def test_a_ticket_a_removed_member_minted_closes_and_opens_nothing(server, http) -> None:
    _, workspace_id, people = await team(server)
    editor = people["editor"]
    agent = await _agent(http, server, people["owner"])
    used, unused = (
        await _ticket(http, server, editor, agent),
        await _ticket(http, server, editor, agent),
    )
    owners = await _ticket(http, server, people["owner"], agent)
    socket = await _conversation(http, server, agent, ticket=used)
    kept = await _conversation(http, server, agent, ticket=owners)
    await _remove(http, server, workspace_id, editor, people["owner"])
    error = await _closed_for_lost_access(socket)
    assert error["code"] == "unauthorized", error
    # The unused ticket is refused exactly like a forged one: nothing says who was removed.
    refused = await _open_refusal(http, server, agent, unused)
    forged = await _open_refusal(http, server, agent, unused[:-4] + "AAAA")
    assert refused == forged, (refused, forged)
    assert refused[0] == 401 and refused[1]["error"]["message"] == "invalid conversation ticket"
    assert not kept.ws.closed
    await kept.ws.close()


async def test_making_a_member_a_viewer_closes_what_they_opened(server, http) -> None:
    _, workspace_id, people = await team(server)
    editor = people["editor"]
    agent = await _agent(http, server, people["owner"])
    unused = await _ticket(http, server, editor, agent)
    by_session = await _conversation(http, server, agent, token=editor.token)
    by_ticket = await _conversation(
        http, server, agent, ticket=await _ticket(http, server, editor, agent)
    )
    status, data = await call(
        http,
        server,
        "PATCH",
        f"/v1/workspaces/{workspace_id}/members/{editor.id}",
        {"role": "viewer"},
        token=people["admin"].token,
    )
    assert status == 200 and data["role"] == "viewer", data
    for socket in (by_session, by_ticket):
        assert (await _closed_for_lost_access(socket))["code"] == "unauthorized"
    status, data = await _open_refusal(http, server, agent, unused)
    assert status == 401 and data["error"]["message"] == "invalid conversation ticket", data
    # A viewer still reads.
    status, data = await call(http, server, "GET", f"/v1/agents/{agent}", token=editor.token)
    assert status == 200, data


async def test_a_removal_made_by_another_process_closes_within_the_poll(server, http) -> None:
    """``voicestream`` on another server of the same database removes the member: no hook
    here hears of it, the registry's poll does."""
    _, workspace_id, people = await team(server)
    editor = people["editor"]
    agent = await _agent(http, server, people["owner"])
    socket = await _conversation(
        http, server, agent, ticket=await _ticket(http, server, editor, agent)
    )
    assert (uuid.UUID(workspace_id), editor.user.id) in server.app[OPEN_SOCKETS].members()
    await MemberRepository(server.app[POOL]).remove(uuid.UUID(workspace_id), editor.user.id)
    assert (await _closed_for_lost_access(socket))["code"] == "unauthorized"
