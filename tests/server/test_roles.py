"""A viewer key only reads, on every route: the native API and the compatibility ones alike.

Reads (GET of what is stored, lists, the history download) work; everything that creates,
changes, deletes, synthesizes, transcribes, opens a socket or mints a ticket or a signed URL is
403 ``forbidden``, and a socket is refused before the upgrade.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import pytest
import websockets

from voicestream.rest.resources import POOL
from voicestream.store.keys import ApiKeyRepository


@pytest.fixture
async def keys(server) -> dict[str, str]:
    """An owner's and a viewer's key of one fresh workspace."""
    repo = ApiKeyRepository(server.app[POOL])
    workspace = f"roles-{uuid.uuid4().hex[:8]}"
    _, owner = await repo.create(workspace=workspace, role="owner")
    _, viewer = await repo.create(workspace=workspace, role="viewer")
    return {"owner": owner, "viewer": viewer}


async def _agent(http: aiohttp.ClientSession, server: Any, key: str) -> str:
    body = {"name": "desk", "voice": "slt", "knowledge": ["Parking is free."]}
    async with http.post(f"{server.url}/v1/agents", json=body, headers=server.headers(key)) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])


async def _history_item(http: aiohttp.ClientSession, server: Any, key: str) -> str:
    async with http.post(
        f"{server.url}/elevenlabs/v1/text-to-speech/slt",
        json={"text": "Kept for the record."},
        headers={"xi-api-key": key},
    ) as r:
        assert r.status == 200, await r.text()
        await r.read()
        return r.headers["history-item-id"]


async def test_viewers_may_not_act_on_any_route(server, http, keys) -> None:
    agent = await _agent(http, server, keys["owner"])
    item = await _history_item(http, server, keys["owner"])
    pcm = bytes(3200)
    el = "/elevenlabs/v1"
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/tts", {"json": {"text": "hi", "voice": "slt"}}),
        ("POST", "/v1/stt?format=pcm_16000", {"data": pcm}),
        ("POST", "/v1/agents", {"json": {"name": "b"}}),
        ("PATCH", f"/v1/agents/{agent}", {"json": {"name": "b"}}),
        ("DELETE", f"/v1/agents/{agent}", {}),
        ("POST", "/v1/convai/tickets", {"json": {"agent_id": agent}}),
        ("POST", "/v1/convai/webrtc/offer", {"json": {"sdp": "v=0", "type": "offer"}}),
        ("PATCH", "/v1/convai/webrtc/offer", {"json": {"pc_id": "x", "candidates": []}}),
        ("POST", "/openai/v1/audio/speech", {"json": {"model": "tts-1", "input": "hi"}}),
        ("POST", "/openai/v1/audio/transcriptions", {"data": {"model": "whisper-1"}}),
        ("POST", f"{el}/text-to-speech/slt", {"json": {"text": "hi"}}),
        ("POST", f"{el}/text-to-speech/slt/stream", {"json": {"text": "hi"}}),
        ("POST", f"{el}/text-to-speech/slt/with-timestamps", {"json": {"text": "hi"}}),
        (
            "POST",
            f"{el}/text-to-dialogue",
            {"json": {"inputs": [{"text": "hi", "voice_id": "slt"}]}},
        ),
        ("POST", f"{el}/speech-to-text", {"data": {"model_id": "scribe_v1"}}),
        ("DELETE", f"{el}/history/{item}", {}),
        ("GET", f"{el}/convai/conversation/get-signed-url?agent_id={agent}", {}),
        ("GET", f"{el}/convai/conversation/get_signed_url?agent_id={agent}", {}),
        ("POST", f"/v1/telephony/twilio/voice?agent_id={agent}", {"data": {"CallSid": "CA1"}}),
        ("POST", f"/v1/telephony/telnyx/voice?agent_id={agent}", {"data": {"CallSid": "v3"}}),
        ("GET", f"/v1/telephony/vonage/answer?agent_id={agent}", {}),
        ("POST", f"/v1/telephony/vonage/answer?agent_id={agent}", {"json": {}}),
    ]
    for header in ("Authorization", "xi-api-key"):
        value = f"Bearer {keys['viewer']}" if header == "Authorization" else keys["viewer"]
        for method, path, kw in requests:
            async with http.request(
                method, f"{server.url}{path}", headers={header: value}, **kw
            ) as r:
                assert r.status == 403, (method, path, r.status)
                assert (await r.json())["error"]["code"] == "forbidden", (method, path)

    # Nothing was changed: the agent and the history item are still there.
    owner = server.headers(keys["owner"])
    async with http.get(f"{server.url}/v1/agents/{agent}", headers=owner) as r:
        assert r.status == 200 and (await r.json())["name"] == "desk"
    async with http.get(f"{server.url}{el}/history/{item}", headers=owner) as r:
        assert r.status == 200


async def test_viewers_open_no_socket(server, http, keys) -> None:
    agent = await _agent(http, server, keys["owner"])
    el = "/elevenlabs/v1"
    sockets = [
        "/v1/tts/stream",
        "/v1/stt/stream",
        f"/v1/convai/stream?agent_id={agent}",
        "/openai/v1/realtime?model=gpt-realtime",
        f"{el}/text-to-speech/slt/stream-input",
        f"{el}/text-to-speech/slt/multi-stream-input",
        f"{el}/speech-to-text/realtime?model_id=scribe_v2_realtime",
        f"{el}/convai/conversation?agent_id={agent}",
        f"/v1/telephony/twilio?agent_id={agent}",
        f"/v1/telephony/telnyx?agent_id={agent}",
        f"/v1/telephony/vonage?agent_id={agent}",
    ]
    for path in sockets:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{server.ws_url}{path}", headers=server.headers(keys["viewer"]))
        assert refused.value.status == 403, path
    # A browser's key in a subprotocol is a key like any other.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(
            f"{server.ws_url}/openai/v1/realtime?model=gpt-realtime",
            protocols=("realtime", f"openai-insecure-api-key.{keys['viewer']}"),
        )
    assert refused.value.status == 403


async def test_viewer_keys_in_elevenlabs_socket_messages_are_refused(server, keys) -> None:
    """ElevenLabs' sockets also take the key in the query or the first message, after the
    upgrade; a viewer's is refused there, in the protocol's own error shape."""
    base = f"{server.ws_url}/elevenlabs/v1/text-to-speech/slt/stream-input?output_format=pcm_16000"
    first = {"text": " ", "xi_api_key": keys["viewer"]}
    for url, message in [
        (f"{base}&authorization=Bearer%20{keys['viewer']}", {"text": " "}),
        (base, first),
    ]:
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps(message))
            await ws.send(json.dumps({"text": "Secret text. "}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 30)
        assert reply.get("error") == "forbidden" and "audio" not in reply, reply
        assert ws.close_code == 4403
    scribe = f"{server.ws_url}/elevenlabs/v1/speech-to-text/realtime?model_id=scribe_v2_realtime"
    async with websockets.connect(f"{scribe}&authorization={keys['viewer']}") as ws:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert reply["message_type"] != "session_started" and "read-only" in reply["error"], reply


async def test_viewers_read_everything_stored(server, http, keys) -> None:
    agent = await _agent(http, server, keys["owner"])
    item = await _history_item(http, server, keys["owner"])
    viewer = {"xi-api-key": keys["viewer"]}
    el = "/elevenlabs/v1"
    for path in [
        "/v1/voices",
        "/v1/agents",
        f"/v1/agents/{agent}",
        f"/v1/agents/{agent}/documents",
        "/v1/convai/sessions",
        "/openai/v1/models",
        f"{el}/voices",
        f"{el}/models",
        f"{el}/user",
        f"{el}/history",
        f"{el}/history/{item}",
        f"{el}/history/{item}/audio",
    ]:
        async with http.get(f"{server.url}{path}", headers=viewer) as r:
            assert r.status == 200, (path, await r.text())
    async with http.post(
        f"{server.url}{el}/history/download", json={"history_item_ids": [item]}, headers=viewer
    ) as r:
        assert r.status == 200, await r.text()
