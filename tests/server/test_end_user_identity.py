"""Who a conversation speaks for, and what opens one.

An ``end_user_id`` selects whose long-term memory the agent reads back, so it is believed only
from a key-authenticated call or inside a ticket: anyone else's claim leaves the conversation
anonymous. Tickets and signed URLs open one conversation, of one transport family, with one
agent. A WebRTC peer answers only to whoever created it.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import websockets
from aiortc import RTCSessionDescription

from server.convai_client import ConvaiClient
from server.waiting import eventually
from server.webrtc_client import Client, client_offer
from voicestream.rest.resources import KNOWLEDGE, POOL, REDIS, SECRET_KEY
from voicestream.store.keys import ApiKeyRepository

PARKING = "Parking is free in the garage behind the building for all visitors."
SECRET = "My favourite colour is green."
QUESTION = "What is my favourite colour?"


# ---- helpers -------------------------------------------------------------------------------


async def _agent(http: aiohttp.ClientSession, server: Any, *, public: bool) -> dict[str, Any]:
    # No greeting: the first agent_response of a conversation is the answer to the question.
    body = {"name": "desk", "voice": "slt", "knowledge": [PARKING], "public": public}
    async with http.post(f"{server.url}/v1/agents", json=body, headers=server.headers()) as r:
        assert r.status == 201, await r.text()
        agent: dict[str, Any] = await r.json()
        return agent


async def _ticket(
    http: aiohttp.ClientSession,
    server: Any,
    agent_id: str,
    end_user_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    body: dict[str, Any] = {"agent_id": agent_id}
    if end_user_id is not None:
        body["end_user_id"] = end_user_id
    async with http.post(
        f"{server.url}/v1/convai/tickets", json=body, headers=headers or server.headers()
    ) as r:
        assert r.status == 201, await r.text()
        minted = await r.json()
    return str(minted["ticket"])


async def _convai(
    http: aiohttp.ClientSession, server: Any, headers: dict[str, str] | None = None, **params: str
) -> ConvaiClient:
    ws = await http.ws_connect(
        f"{server.ws_url}/v1/convai/stream", params=params, headers=headers or {}
    )
    return ConvaiClient(ws)


async def _ask(client: ConvaiClient, config: dict[str, Any] | None = None) -> tuple[bool, str]:
    """(long_term_memory from the session event, the agent's answer to QUESTION)."""
    info = await client.wait_event("session")
    if config is not None:
        await client.ws.send_json({"type": "config", **config})
    await client.ws.send_json({"type": "text", "text": QUESTION})
    reply = await client.wait_event("agent_response")
    await client.ws.send_json({"type": "end"})
    await client.close()
    return bool(info.get("long_term_memory")), str(reply["text"])


async def _remember(
    http: aiohttp.ClientSession, server: Any, agent: dict[str, Any], user: str
) -> None:
    """``user`` tells the agent SECRET over a key-authenticated socket, which is believed."""
    client = await _convai(http, server, server.headers(), agent_id=agent["id"], end_user_id=user)
    await client.wait_event("session")
    await client.ws.send_json({"type": "text", "text": SECRET})
    await client.wait_event("agent_response")
    await client.ws.send_json({"type": "end"})
    await client.close()
    knowledge = server.app[KNOWLEDGE]

    async def stored() -> bool:
        return bool(await knowledge.recall(agent["workspace_id"], user, QUESTION))

    await eventually(stored, within=30, what=f"{user}'s memory to be stored")


def _user() -> str:
    return f"visitor-{uuid.uuid4().hex[:8]}"


# ---- end users -----------------------------------------------------------------------------


async def test_anonymous_claims_of_an_end_user_get_no_memory(server, http) -> None:
    agent = await _agent(http, server, public=True)
    victim = _user()
    await _remember(http, server, agent, victim)

    # A public agent's visitor claims the victim in the query, then in the config message.
    memory, answer = await _ask(
        await _convai(http, server, agent_id=agent["id"], end_user_id=victim)
    )
    assert "green" not in answer.lower(), answer
    assert not memory
    memory, answer = await _ask(
        await _convai(http, server, agent_id=agent["id"]), {"end_user_id": victim}
    )
    assert "green" not in answer.lower(), answer
    assert not memory
    # The same claim with a key is believed.
    memory, answer = await _ask(
        await _convai(http, server, server.headers(), agent_id=agent["id"], end_user_id=victim)
    )
    assert "green" in answer.lower(), answer
    assert memory

    # The anonymous conversations are stored without an end user.
    async with http.get(
        f"{server.url}/v1/convai/sessions",
        params={"agent_id": agent["id"], "end_user_id": victim},
        headers=server.headers(),
    ) as r:
        listed = (await r.json())["sessions"]
    assert len(listed) == 2, listed  # the two keyed conversations only


async def test_a_tickets_end_user_cannot_be_overridden(server, http) -> None:
    agent = await _agent(http, server, public=False)
    victim, holder = _user(), _user()
    await _remember(http, server, agent, victim)

    ticket = await _ticket(http, server, agent["id"], end_user_id=holder)
    client = await _convai(http, server, agent_id=agent["id"], ticket=ticket, end_user_id=victim)
    memory, answer = await _ask(client)
    assert "green" not in answer.lower(), answer  # the holder's own memory: empty
    assert memory
    ticket = await _ticket(http, server, agent["id"], end_user_id=holder)
    client = await _convai(http, server, agent_id=agent["id"], ticket=ticket)
    memory, answer = await _ask(client, {"end_user_id": victim})
    assert "green" not in answer.lower(), answer
    assert memory
    # A ticket without an end user vouches for none.
    ticket = await _ticket(http, server, agent["id"])
    client = await _convai(http, server, agent_id=agent["id"], ticket=ticket, end_user_id=victim)
    memory, answer = await _ask(client)
    assert "green" not in answer.lower(), answer
    assert not memory
    # The victim's own ticket reads the victim's memory.
    ticket = await _ticket(http, server, agent["id"], end_user_id=victim)
    memory, answer = await _ask(await _convai(http, server, agent_id=agent["id"], ticket=ticket))
    assert "green" in answer.lower(), answer
    assert memory


async def test_elevenlabs_user_id_is_believed_only_with_a_key(server, http) -> None:
    agent = await _agent(http, server, public=True)
    victim = _user()
    await _remember(http, server, agent, victim)
    url = f"{server.ws_url}/elevenlabs/v1/convai/conversation"

    async def answer(headers: dict[str, str]) -> str:
        init = {"type": "conversation_initiation_client_data", "user_id": victim}
        async with http.ws_connect(url, params={"agent_id": agent["id"]}, headers=headers) as ws:
            await ws.send_json(init)
            await ws.send_json({"type": "user_message", "text": QUESTION})
            async for msg in ws:
                event = json.loads(msg.data)
                if event["type"] == "agent_response":
                    return str(event["agent_response_event"]["agent_response"])
        raise AssertionError("the socket closed without an answer")

    assert "green" not in (await answer({})).lower()
    assert "green" in (await answer({"xi-api-key": server.api_key})).lower()


async def test_webrtc_end_user_claims_without_a_key_are_ignored(server, http) -> None:
    agent = await _agent(http, server, public=True)
    victim = _user()
    await _remember(http, server, agent, victim)
    client = Client()
    try:
        offer = {
            "sdp": await client_offer(client),
            "type": "offer",
            "agent_id": agent["id"],
            "end_user_id": victim,
        }
        async with http.post(f"{server.url}/v1/convai/webrtc/offer", json=offer) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
        await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        session = await client.wait_for(lambda e: e["type"] == "session")
        client.send({"type": "config", "end_user_id": victim})
        client.send({"type": "text", "text": QUESTION})
        reply = await client.wait_for(lambda e: e["type"] == "agent_response")
        assert "green" not in reply["text"].lower(), reply
        assert session["long_term_memory"] is False
        client.send({"type": "end"})
    finally:
        await client.close()


# ---- tickets and signed URLs ---------------------------------------------------------------


async def _refusal(
    url: str, headers: dict[str, str] | None = None, **params: str
) -> tuple[int, str]:
    """A conversation socket refused before the upgrade: (status, error message)."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{url}?{urlencode(params)}", additional_headers=headers):
            pass
    response = refused.value.response
    return response.status_code, str(json.loads(response.body)["error"]["message"])


async def test_a_ticket_opens_one_conversation(server, http) -> None:
    agent = await _agent(http, server, public=False)
    ticket = await _ticket(http, server, agent["id"])
    url = f"{server.ws_url}/v1/convai/stream"
    # A plain GET (a link preview) does not use the ticket up.
    async with http.get(url, params={"agent_id": agent["id"], "ticket": ticket}) as r:
        assert r.status == 400, await r.text()
    first = await _convai(http, server, agent_id=agent["id"], ticket=ticket)
    info = await first.wait_event("session")
    await first.close()  # dropped, not ended: resumable

    status, message = await _refusal(url, agent_id=agent["id"], ticket=ticket)
    assert status == 401 and "single use" in message, message
    # Over WebRTC too: the same family.
    offer = {"sdp": "v=0", "type": "offer", "agent_id": agent["id"], "ticket": ticket}
    client = Client()
    try:
        offer["sdp"] = await client_offer(client)
        async with http.post(f"{server.url}/v1/convai/webrtc/offer", json=offer) as r:
            assert r.status == 401 and "single use" in (await r.json())["error"]["message"]
    finally:
        await client.close()
    # Resuming the conversation the ticket opened is not a second use.
    again = await _convai(
        http, server, agent_id=agent["id"], ticket=ticket, session_id=info["session_id"]
    )
    resumed = await again.wait_event("session")
    assert resumed["resumed"] and resumed["conversation_id"] == info["conversation_id"]
    await again.ws.send_json({"type": "end"})
    await again.close()


async def test_an_expired_ticket_is_refused(server, http) -> None:
    from voicestream.identity.tickets import mint_ticket

    agent = await _agent(http, server, public=False)
    expired = mint_ticket(
        server.app[SECRET_KEY],
        workspace_id=agent["workspace_id"],
        agent_id=agent["id"],
        end_user_id=None,
        ttl_s=-1,
        family="webchat",
        key_id=None,
    )
    url = f"{server.ws_url}/v1/convai/stream"
    status, message = await _refusal(url, agent_id=agent["id"], ticket=expired)
    assert status == 401 and "expired" in message


async def _vonage_close(http: aiohttp.ClientSession, url: str) -> tuple[int | None, str]:
    """Call as Vonage does and press a key; (close code, reason), or "accepted" when the agent
    answers with audio."""
    closing = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
    async with http.ws_connect(url) as ws:
        await ws.send_json({"event": "websocket:connected", "content-type": "audio/l16;rate=16000"})
        await ws.send_json({"event": "websocket:dtmf", "digit": "9"})
        while True:
            msg = await ws.receive(timeout=30)
            if msg.type == aiohttp.WSMsgType.BINARY:
                await ws.close()
                return ws.close_code, "accepted"
            if msg.type in closing:
                return ws.close_code, str(msg.extra or "")


async def _vonage_uri(http: aiohttp.ClientSession, server: Any, agent_id: str) -> str:
    async with http.get(
        f"{server.url}/v1/telephony/vonage/answer",
        params={"agent_id": agent_id, "uuid": "63f61863"},
        headers=server.headers(),
    ) as r:
        assert r.status == 200, await r.text()
        (action,) = await r.json()
    return str(action["endpoint"][0]["uri"])


async def _signed_url(
    http: aiohttp.ClientSession, server: Any, agent_id: str, api_key: str | None = None
) -> str:
    async with http.get(
        f"{server.url}/elevenlabs/v1/convai/conversation/get-signed-url",
        params={"agent_id": agent_id},
        headers={"xi-api-key": api_key or server.api_key},
    ) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["signed_url"])


async def _elevenlabs_close(http: aiohttp.ClientSession, url: str) -> tuple[int | None, Any]:
    """Open an ElevenLabs conversation; (close code, the error event, or None if it opened)."""
    async with http.ws_connect(url, protocols=("convai",)) as ws:
        await ws.send_json({"type": "conversation_initiation_client_data"})
        async for msg in ws:
            event = json.loads(msg.data)
            if event["type"] == "conversation_initiation_metadata":
                await ws.close()
                return ws.close_code, None
            if event["type"] == "error":
                error = event["error_event"]
                await ws.receive()
                return ws.close_code, error
    return ws.close_code, None


def _with_ticket(url: str, ticket: str) -> str:
    base, _, query = url.partition("?")
    kept = "&".join(p for p in query.split("&") if not p.startswith("ticket="))
    return f"{base}?{kept}&ticket={ticket}"


async def test_tickets_open_their_own_transport_family_only(server, http) -> None:
    agent = await _agent(http, server, public=False)
    webchat = await _ticket(http, server, agent["id"])
    vonage = await _vonage_uri(http, server, agent["id"])
    convai = f"{server.ws_url}/v1/convai/stream"
    conversation = f"{server.ws_url}/elevenlabs/v1/convai/conversation?agent_id={agent['id']}"

    # A webchat ticket opens neither a phone call nor an ElevenLabs conversation.
    code, reason = await _vonage_close(http, _with_ticket(vonage, webchat))
    assert code == 1008 and "unauthorized" in reason, reason
    code, error = await _elevenlabs_close(http, f"{conversation}&conversation_signature={webchat}")
    assert code == 1008 and error["reason"] == "unauthorized", error
    assert "widget" in error["message"]
    # A phone call's ticket and a signed URL's signature open no webchat.
    call_ticket = vonage.split("ticket=")[1].split("&")[0]
    signature = (await _signed_url(http, server, agent["id"])).split("conversation_signature=")[1]
    for token in (call_ticket, signature):
        status, message = await _refusal(convai, agent_id=agent["id"], ticket=token)
        assert status == 401 and "only" in message, message
    # None of these refusals used a ticket up: each still opens its own kind, once.
    first = await _convai(http, server, agent_id=agent["id"], ticket=webchat)
    await first.wait_event("session")
    await first.ws.send_json({"type": "end"})
    await first.close()
    assert (await _vonage_close(http, vonage))[1] == "accepted"
    code, reason = await _vonage_close(http, vonage)
    assert code == 1008 and "single use" in reason, reason
    signed = f"{conversation}&conversation_signature={signature}"
    assert (await _elevenlabs_close(http, signed))[1] is None
    code, error = await _elevenlabs_close(http, signed)
    assert code == 1008 and "single use" in error["message"], error


# ---- resuming a session -------------------------------------------------------------------


async def _dropped_session(
    http: aiohttp.ClientSession, server: Any, headers: dict[str, str] | None = None, **params: str
) -> str:
    """Open a conversation and drop the socket without ending it (resumable); its session id,
    once the server has let go of it."""
    client = await _convai(http, server, headers, **params)
    session_id = str((await client.wait_event("session"))["session_id"])
    await client.close()
    redis = server.app[REDIS]

    async def released() -> bool:
        return not await redis.exists(f"vs:convai:live:{session_id}")

    await eventually(released, what="the dropped connection to release its session")
    return session_id


async def test_a_session_resumes_only_for_whoever_opened_it(server, http) -> None:
    agent = await _agent(http, server, public=True)
    victim, other = _user(), _user()
    await _remember(http, server, agent, victim)
    url = f"{server.ws_url}/v1/convai/stream"
    ticket = await _ticket(http, server, agent["id"], end_user_id=victim)
    session_id = await _dropped_session(http, server, agent_id=agent["id"], ticket=ticket)

    # An anonymous visitor who learnt the session id does not become the ticket's end user.
    status, message = await _refusal(url, agent_id=agent["id"], session_id=session_id)
    assert status == 404 and "unknown or expired session" in message, message
    # Nor does another end user's fresh ticket, nor another key of the workspace.
    other_ticket = await _ticket(http, server, agent["id"], end_user_id=other)
    status, _ = await _refusal(
        url, agent_id=agent["id"], session_id=session_id, ticket=other_ticket
    )
    assert status == 404
    keys = ApiKeyRepository(server.app[POOL])
    _, colleague = await keys.create(workspace="tests", role="owner")
    status, _ = await _refusal(
        url, server.headers(colleague), agent_id=agent["id"], session_id=session_id
    )
    assert status == 404
    # A fresh ticket for the same end user (a page reload) resumes it, with that user's memory.
    again = await _ticket(http, server, agent["id"], end_user_id=victim)
    client = await _convai(http, server, agent_id=agent["id"], ticket=again, session_id=session_id)
    info = await client.wait_event("session")
    assert info["resumed"] and info["long_term_memory"]
    await client.ws.send_json({"type": "end"})
    await client.close()

    # An anonymous session is the anonymous visitor's; a keyed caller cannot take it over.
    anonymous = await _dropped_session(http, server, agent_id=agent["id"])
    status, _ = await _refusal(
        url, server.headers(colleague), agent_id=agent["id"], session_id=anonymous
    )
    assert status == 404


async def test_a_session_is_live_on_one_connection_at_a_time(server, http) -> None:
    agent = await _agent(http, server, public=True)
    url = f"{server.ws_url}/v1/convai/stream"
    session_id = await _dropped_session(http, server, server.headers(), agent_id=agent["id"])
    first = await _convai(
        http, server, server.headers(), agent_id=agent["id"], session_id=session_id
    )
    assert (await first.wait_event("session"))["resumed"]

    # A second resume while the first is connected would write one conversation twice.
    status, message = await _refusal(
        url, server.headers(), agent_id=agent["id"], session_id=session_id
    )
    assert status == 409 and "already connected" in message, message
    await first.close()

    async def resumed() -> bool:
        try:
            client = await _convai(
                http, server, server.headers(), agent_id=agent["id"], session_id=session_id
            )
        except aiohttp.WSServerHandshakeError as refused:
            assert refused.status == 409, refused
            return False
        info = await client.wait_event("session")
        await client.ws.send_json({"type": "end"})
        await client.close()
        return bool(info["resumed"])

    await eventually(resumed, what="the session to be free once the first socket closed")


def test_a_session_id_in_a_url_is_redacted_from_the_log() -> None:
    from voicestream.observability.log_redaction import redact

    sid = uuid.uuid4().hex
    line = f'"GET /v1/convai/stream?agent_id=a&session_id={sid}&x=1 HTTP/1.1" 101'
    assert sid not in redact(line) and "agent_id=a" in redact(line), redact(line)
    assert "x=1" in redact(line)


# ---- WebRTC peers --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _peer_answer(
    http: aiohttp.ClientSession, server: Any, body: dict[str, Any], headers: dict[str, str]
) -> AsyncIterator[dict[str, Any]]:
    """A connected WebRTC conversation; yields the offer's answer (pc_id, pc_secret, …)."""
    client = Client()
    try:
        offer = {"sdp": await client_offer(client), "type": "offer", **body}
        async with http.post(
            f"{server.url}/v1/convai/webrtc/offer", json=offer, headers=headers
        ) as r:
            assert r.status == 200, await r.text()
            answer: dict[str, Any] = await r.json()
        await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await client.wait_for(lambda e: e["type"] == "session")
        yield answer
        client.send({"type": "end"})
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def _peer(
    http: aiohttp.ClientSession, server: Any, body: dict[str, Any], headers: dict[str, str]
) -> AsyncIterator[str]:
    """A connected WebRTC conversation; yields its pc_id."""
    async with _peer_answer(http, server, body, headers) as answer:
        yield str(answer["pc_id"])


async def _patch(
    http: aiohttp.ClientSession, server: Any, body: dict[str, Any], headers: dict[str, str]
) -> int:
    end = {"candidates": [{"candidate": "", "sdp_mid": "0"}]}
    async with http.patch(
        f"{server.url}/v1/convai/webrtc/offer", json={**end, **body}, headers=headers
    ) as r:
        return r.status


async def test_a_webrtc_peer_answers_only_to_its_creator(server, http) -> None:
    agent = await _agent(http, server, public=True)
    keys = ApiKeyRepository(server.app[POOL])
    _, colleague = await keys.create(workspace="tests", role="owner")  # same workspace
    _, stranger = await keys.create(workspace=f"other-{uuid.uuid4().hex[:6]}", role="owner")
    owner = server.headers()

    async with _peer(http, server, {"agent_id": agent["id"]}, owner) as pc_id:
        assert await _patch(http, server, {"pc_id": pc_id}, {}) == 404
        assert await _patch(http, server, {"pc_id": pc_id}, server.headers(colleague)) == 404
        assert await _patch(http, server, {"pc_id": pc_id}, server.headers(stranger)) == 404
        assert await _patch(http, server, {"pc_id": pc_id}, owner) == 200
        # Renegotiating someone else's peer opens a connection of the caller's own instead.
        async with _peer(http, server, {"agent_id": agent["id"], "pc_id": pc_id}, {}) as mine:
            assert mine != pc_id

    private = await _agent(http, server, public=False)
    ticket = await _ticket(http, server, private["id"])
    other_ticket = await _ticket(http, server, private["id"])
    async with _peer(http, server, {"agent_id": private["id"], "ticket": ticket}, {}) as pc_id:
        assert await _patch(http, server, {"pc_id": pc_id}, {}) == 404
        assert await _patch(http, server, {"pc_id": pc_id, "ticket": other_ticket}, {}) == 404
        assert await _patch(http, server, {"pc_id": pc_id}, owner) == 404
        # The used-up ticket still proves who created the peer.
        assert await _patch(http, server, {"pc_id": pc_id, "ticket": ticket}, {}) == 200


async def test_an_anonymous_webrtc_peer_answers_only_to_its_secret(server, http) -> None:
    """Every caller without a key or ticket looks alike, so only the pc_secret told to the
    peer's creator lets a caller trickle candidates to it or renegotiate it."""
    agent = await _agent(http, server, public=True)
    async with _peer_answer(http, server, {"agent_id": agent["id"]}, {}) as answer:
        pc_id = answer["pc_id"]
        # A stranger who learnt the pc_id (a log, a shared screen) but not the secret.
        assert await _patch(http, server, {"pc_id": pc_id}, {}) == 404
        secret = answer["pc_secret"]
        assert await _patch(http, server, {"pc_id": pc_id, "pc_secret": "x" * 43}, {}) == 404
        stranger = {"agent_id": agent["id"], "pc_id": pc_id}
        async with _peer_answer(http, server, stranger, {}) as theirs:
            assert theirs["pc_id"] != pc_id and theirs["session_id"] != answer["session_id"]
            assert theirs["pc_secret"] != secret
        # The creator, who holds the secret.
        assert await _patch(http, server, {"pc_id": pc_id, "pc_secret": secret}, {}) == 200


def _unanswerable(sdp: str) -> str:
    """An offer that passes every check on its text but whose audio has no codec in common
    with the server, so aiortc refuses it only when negotiating."""
    sdp = re.sub(r"(m=audio \d+ \S+)[\d ]+", r"\1 96", sdp)
    sdp = re.sub(r"a=(rtpmap|fmtp|rtcp-fb):\d+[^\r]*\r\n", "", sdp)
    return re.sub(r"(m=audio[^\r]*\r\n)", r"\1a=rtpmap:96 nonsense/8000\r\n", sdp)


async def test_a_failed_offer_does_not_use_up_its_ticket(server, http) -> None:
    agent = await _agent(http, server, public=False)
    ticket = await _ticket(http, server, agent["id"])
    client = Client()
    try:
        sdp = await client_offer(client)
        bad = {"sdp": _unanswerable(sdp), "type": "offer", "agent_id": agent["id"]}
        async with http.post(
            f"{server.url}/v1/convai/webrtc/offer", json={**bad, "ticket": ticket}
        ) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_sdp"
    finally:
        await client.close()
    # No call started, so the ticket still opens its one conversation.
    async with _peer_answer(http, server, {"agent_id": agent["id"], "ticket": ticket}, {}) as ok:
        assert ok["session_id"]


async def test_tickets_die_with_the_key_that_minted_them(server, http) -> None:
    agent = await _agent(http, server, public=False)
    keys = ApiKeyRepository(server.app[POOL])
    minter, plaintext = await keys.create(workspace="tests", role="owner")
    url = f"{server.ws_url}/v1/convai/stream"
    ticket = await _ticket(http, server, agent["id"], headers=server.headers(plaintext))
    signed = await _signed_url(http, server, agent["id"], api_key=plaintext)
    await keys.revoke(str(minter.id))

    status, message = await _refusal(url, agent_id=agent["id"], ticket=ticket)
    assert status == 401 and "revoked" in message, message
    code, error = await _elevenlabs_close(http, signed)
    assert code == 1008 and "revoked" in error["message"], error
    # A ticket minted by a key still in force opens as before.
    fresh = await _convai(
        http, server, agent_id=agent["id"], ticket=await _ticket(http, server, agent["id"])
    )
    await fresh.wait_event("session")
    await fresh.ws.send_json({"type": "end"})
    await fresh.close()
