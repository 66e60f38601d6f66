"""Each workspace lists the web pages that may use its browser endpoints (``allowed_origins``).

A page listed by a workspace may act for that workspace only (its keys, its members' sessions,
its tickets, its public agents); another workspace's list does not count. Every origin here is
fresh per test: the module's server is shared, and the widget asks whether *any* workspace
lists a page.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from server.webrtc_client import Client, client_offer
from server.workspace_people import Person, call, house_error, team
from voicestream.identity.page_origins import normalize_origin


def _site(tag: str) -> str:
    return f"https://{tag}-{uuid.uuid4().hex[:8]}.example"


class _Workspace:
    def __init__(self, workspace_id: str, people: dict[str, Person]) -> None:
        self.id = workspace_id
        self.people = people
        self.site = _site("site")

    @property
    def owner(self) -> Person:
        return self.people["owner"]


async def _workspace(http: aiohttp.ClientSession, server: Any) -> _Workspace:
    """A workspace with a member of every role that lists its own fresh site."""
    _, workspace_id, people = await team(server)
    workspace = _Workspace(workspace_id, people)
    status, data = await call(
        http,
        server,
        "PATCH",
        f"/v1/workspaces/{workspace_id}",
        {"allowed_origins": [workspace.site]},
        token=workspace.owner.token,
    )
    assert status == 200, data
    return workspace


async def _key(http: aiohttp.ClientSession, server: Any, who: Person) -> str:
    status, created = await call(
        http, server, "POST", "/v1/api-keys", {"name": "k", "role": "editor"}, token=who.token
    )
    assert status == 201, created
    return str(created["key"])


async def _agent(
    http: aiohttp.ClientSession, server: Any, who: Person, *, public: bool = False
) -> str:
    # No first message: nothing is synthesized when a conversation opens.
    body = {"name": "desk", "voice": "slt", "public": public}
    status, agent = await call(http, server, "POST", "/v1/agents", body, token=who.token)
    assert status == 201, agent
    return str(agent["id"])


async def _ticket(http: aiohttp.ClientSession, server: Any, who: Person, agent_id: str) -> str:
    status, minted = await call(
        http, server, "POST", "/v1/convai/tickets", {"agent_id": agent_id}, token=who.token
    )
    assert status == 201, minted
    return str(minted["ticket"])


def _upgrade(origin: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Origin": origin,
        **(headers or {}),
    }


async def _refused(
    http: aiohttp.ClientSession,
    url: str,
    origin: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """The upgrade is refused before it happens: 403 forbidden, in the house error shape."""
    async with http.get(url, params=params, headers=_upgrade(origin, headers)) as r:
        assert r.status == 403, await r.text()
        body = await r.json()
    house_error(body, "forbidden")
    assert "allowed_origins" in body["error"]["message"], body


async def _opens(
    http: aiohttp.ClientSession,
    url: str,
    origin: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    ws = await http.ws_connect(url, params=params, headers=headers, origin=origin)
    await ws.close()


# ---- the setting -----------------------------------------------------------------------------


async def test_owners_and_admins_read_and_change_the_list(server, http) -> None:
    _, workspace_id, people = await team(server)
    path = f"/v1/workspaces/{workspace_id}"
    status, data = await call(http, server, "GET", path, token=people["owner"].token)
    assert status == 200, data
    assert data["id"] == workspace_id and data["allowed_origins"] == []
    sent = [" https://Shop.Example:443/ ", "http://localhost:8080", "https://shop.example"]
    status, data = await call(
        http, server, "PATCH", path, {"allowed_origins": sent}, token=people["admin"].token
    )
    assert status == 200, data
    assert data["allowed_origins"] == ["https://shop.example", "http://localhost:8080"]
    status, data = await call(http, server, "GET", path, token=people["admin"].token)
    assert data["allowed_origins"] == ["https://shop.example", "http://localhost:8080"]
    # Leaving the list out changes nothing.
    status, data = await call(http, server, "PATCH", path, {}, token=people["owner"].token)
    assert status == 200 and len(data["allowed_origins"]) == 2, data
    for role in ("editor", "viewer"):
        for method, body in (("GET", None), ("PATCH", {"allowed_origins": []})):
            status, data = await call(http, server, method, path, body, token=people[role].token)
            assert status == 403, (role, method, data)
            house_error(data, "forbidden")
    # Another workspace's owner: as missing as a workspace that does not exist.
    _, _, others = await team(server)
    for target in (path, f"/v1/workspaces/{uuid.uuid4()}", "/v1/workspaces/not-an-id"):
        status, data = await call(http, server, "GET", target, token=others["owner"].token)
        assert status == 404, data
        house_error(data, "not_found")
    status, page = await call(
        http,
        server,
        "GET",
        "/v1/audit-logs?action=workspace.origins_changed",
        token=people["owner"].token,
    )
    assert status == 200, page
    assert page["data"][0]["details"]["to"] == ["https://shop.example", "http://localhost:8080"]


@pytest.mark.parametrize(
    "bad",
    [
        "*",
        "null",
        "shop.example",
        "ftp://shop.example",
        "https://shop.example/app",
        "https://shop.example?x=1",
        "https://user@shop.example",
        "https://*.shop.example",
        "https://shop.example:99999",
        "https://bücher.example",
        "",
    ],
)
async def test_a_malformed_origin_is_422_and_changes_nothing(server, http, bad: str) -> None:
    _, workspace_id, people = await team(server)
    path = f"/v1/workspaces/{workspace_id}"
    body = {"allowed_origins": ["https://fine.example", bad]}
    status, data = await call(http, server, "PATCH", path, body, token=people["owner"].token)
    assert status == 422, data
    house_error(data, "invalid_request")
    status, data = await call(http, server, "GET", path, token=people["owner"].token)
    assert data["allowed_origins"] == [], data


async def test_the_list_is_bounded(server, http) -> None:
    _, workspace_id, people = await team(server)
    many = [f"https://s{i}.example" for i in range(101)]
    status, data = await call(
        http,
        server,
        "PATCH",
        f"/v1/workspaces/{workspace_id}",
        {"allowed_origins": many},
        token=people["owner"].token,
    )
    assert status == 422, data


def test_origins_are_normalized_as_browsers_send_them() -> None:
    assert normalize_origin("HTTPS://Shop.Example:443/") == "https://shop.example"
    assert normalize_origin("http://shop.example:80") == "http://shop.example"
    assert normalize_origin("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert normalize_origin("http://[::1]:3000") == "http://[::1]:3000"
    for bad in ("*", "null", "https://a.example/x", "wss://a.example", "https://"):
        with pytest.raises(ValueError):
            normalize_origin(bad)


# ---- every browser entry point ---------------------------------------------------------------


async def test_a_key_or_a_session_opens_sockets_from_its_own_workspaces_pages_only(
    server, http
) -> None:
    a, b = await _workspace(http, server), await _workspace(http, server)
    url = f"{server.ws_url}/v1/tts/stream"
    key_a, key_b = await _key(http, server, a.owner), await _key(http, server, b.owner)
    for credential in (key_a, a.people["editor"].token):
        await _opens(http, url, a.site, headers={"Authorization": f"Bearer {credential}"})
        # B lists its own page: that is no reason to let it use A's key or A's members.
        await _refused(http, url, b.site, headers={"Authorization": f"Bearer {credential}"})
    await _refused(http, url, a.site, headers={"Authorization": f"Bearer {key_b}"})
    # The OpenAI Realtime browser client: the key in a subprotocol, checked the same way.
    realtime = f"{server.ws_url}/openai/v1/realtime"
    offered = f"realtime, openai-insecure-api-key.{key_a}"
    await _refused(
        http, realtime, b.site, params={"model": "x"}, headers={"Sec-WebSocket-Protocol": offered}
    )


async def test_tickets_and_public_agents_open_from_their_workspaces_pages_only(
    server, http
) -> None:
    a, b = await _workspace(http, server), await _workspace(http, server)
    url = f"{server.ws_url}/v1/convai/stream"
    agent = await _agent(http, server, a.owner)
    public = await _agent(http, server, a.owner, public=True)
    refused = await _ticket(http, server, a.owner, agent)
    await _refused(http, url, b.site, params={"agent_id": agent, "ticket": refused})
    # Refused before the ticket was used up: the right page may still use it.
    await _opens(http, url, a.site, params={"agent_id": agent, "ticket": refused})
    await _refused(http, url, b.site, params={"agent_id": public})
    await _opens(http, url, a.site, params={"agent_id": public})


async def test_the_elevenlabs_conversation_checks_the_page_before_the_upgrade(server, http) -> None:
    a, b = await _workspace(http, server), await _workspace(http, server)
    url = f"{server.ws_url}/elevenlabs/v1/convai/conversation"
    agent = await _agent(http, server, a.owner)
    status, data = await call(
        http,
        server,
        "GET",
        f"/elevenlabs/v1/convai/conversation/get-signed-url?agent_id={agent}",
        token=a.owner.token,
    )
    assert status == 200, data
    query = {k: v[0] for k, v in parse_qs(urlsplit(data["signed_url"]).query).items()}
    await _refused(http, url, b.site, params=query)
    await _opens(http, url, a.site, params=query)
    public = await _agent(http, server, a.owner, public=True)
    await _refused(http, url, b.site, params={"agent_id": public})
    await _opens(http, url, a.site, params={"agent_id": public})


async def test_the_elevenlabs_tts_socket_checks_a_key_sent_inside_it(server, http) -> None:
    """The key comes in the first message: a page that some workspace lists may open the
    socket, and the key's workspace must be the one listing it."""
    a, b = await _workspace(http, server), await _workspace(http, server)
    url = f"{server.ws_url}/elevenlabs/v1/text-to-speech/slt/stream-input"
    params = {"output_format": "pcm_16000"}
    key_a, key_b = await _key(http, server, a.owner), await _key(http, server, b.owner)
    async with http.ws_connect(url, params=params, origin=a.site) as ws:
        await ws.send_json({"text": " ", "xi_api_key": key_b})
        message = await ws.receive_json(timeout=10)
        assert message["error"] == "forbidden" and "allowed_origins" in message["message"]
        assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4403
    async with http.ws_connect(url, params=params, origin=a.site) as ws:
        await ws.send_json({"text": " ", "xi_api_key": key_a})
        await ws.send_json({"text": ""})  # end of input: nothing to say
        received = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
    assert ws.close_code == 1000 and received[-1].get("isFinal"), received
    # The key in the query is checked the same way.
    async with http.ws_connect(
        url, params={**params, "authorization": f"Bearer {key_b}"}, origin=a.site
    ) as ws:
        message = await ws.receive_json(timeout=10)
        assert message["error"] == "forbidden", message


async def test_a_webrtc_offer_is_answered_for_its_workspaces_pages_only(server, http) -> None:
    a, b = await _workspace(http, server), await _workspace(http, server)
    url = f"{server.url}/v1/convai/webrtc/offer"
    agent = await _agent(http, server, a.owner)
    ticket = await _ticket(http, server, a.owner, agent)
    client = Client()
    try:
        offer = {"sdp": await client_offer(client), "type": "offer", "agent_id": agent}
        async with http.post(
            url, json={**offer, "ticket": ticket}, headers={"Origin": b.site}
        ) as r:
            assert r.status == 403, await r.text()
            house_error(await r.json(), "forbidden")
        async with http.post(
            url, json={**offer, "ticket": ticket}, headers={"Origin": a.site}
        ) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
        await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await client.wait_for(lambda e: e["type"] == "session")
        # Trickled candidates: the call's workspace decides too.
        more = {
            "pc_id": answer["pc_id"],
            "pc_secret": answer["pc_secret"],
            "ticket": ticket,
            "candidates": [],
        }
        async with http.patch(url, json=more, headers={"Origin": b.site}) as r:
            assert r.status == 403, await r.text()
        async with http.patch(url, json=more, headers={"Origin": a.site}) as r:
            assert r.status == 200, await r.text()
    finally:
        await client.close()


async def test_the_widget_and_the_preflight_answer_pages_some_workspace_lists(server, http) -> None:
    a = await _workspace(http, server)
    preflight = {"Access-Control-Request-Method": "POST"}
    for origin, status in ((a.site, 200), (_site("nobody"), 403)):
        async with http.get(f"{server.url}/widget.js", headers={"Origin": origin}) as r:
            assert r.status == status, origin
        async with http.options(
            f"{server.url}/v1/convai/webrtc/offer", headers={"Origin": origin, **preflight}
        ) as r:
            assert r.status == (204 if status == 200 else 403), origin


async def test_a_changed_list_applies_at_once(server, http) -> None:
    a = await _workspace(http, server)
    url = f"{server.ws_url}/v1/tts/stream"
    auth = {"Authorization": f"Bearer {await _key(http, server, a.owner)}"}
    await _opens(http, url, a.site, headers=auth)  # and the list is cached now
    status, data = await call(
        http,
        server,
        "PATCH",
        f"/v1/workspaces/{a.id}",
        {"allowed_origins": []},
        token=a.owner.token,
    )
    assert status == 200, data
    await _refused(http, url, a.site, headers=auth)
    # Pages that send no Origin (servers, SDKs) were never concerned.
    ws = await http.ws_connect(url, headers=auth)
    await ws.close()
