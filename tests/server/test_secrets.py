"""Secrets stay secret: keys never reach the log, revoked keys lose their open sockets, agents'
LLM keys are encrypted at rest and never shown."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from fakes.openai_server import FakeOpenAI
from server.convai_client import ConvaiClient
from server.waiting import eventually, wait_for_change
from server.webrtc_client import WAIT_S, Client, client_offer
from voicestream.rest.resources import POOL
from voicestream.store.keys import ApiKeyRepository

RunningServer = Any  # tests/conftest.py's RunningServer, reached through the fixture


class _EveryRecord(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []
        self._format = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self._format.format(record))


@pytest.fixture
def every_log_record() -> Iterator[_EveryRecord]:
    """Every record of every logger (aiohttp's included), down to DEBUG, while the test runs."""
    handler = _EveryRecord()
    root = logging.getLogger()
    quiet = {
        name: lg.level
        for name, lg in logging.Logger.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and lg.level > logging.DEBUG
    }
    before = root.level
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)


async def _new_key(server: RunningServer, workspace: str = "secrets") -> tuple[str, str]:
    record, key = await ApiKeyRepository(server.app[POOL]).create(workspace=workspace)
    return str(record.id), key


# ---- keys offered as WebSocket subprotocols ------------------------------------------------


async def test_a_key_offered_only_as_a_subprotocol_is_accepted_and_never_logged(
    server: RunningServer, every_log_record: _EveryRecord
) -> None:
    _, key = await _new_key(server)
    async with aiohttp.ClientSession() as s:
        # ElevenLabs' browser clients: "bearer.<key>", here on the native TTS socket.
        offered = f"bearer.{key}"
        async with s.ws_connect(
            f"{server.ws_url}/v1/tts/stream", params={"voice": "slt"}, protocols=(offered,)
        ) as ws:
            # Selected (browsers fail a handshake that selects none of what they offered).
            assert ws.protocol == offered
            await ws.send_json({"type": "text", "text": "Hello there."})
            await ws.send_json({"type": "end"})
            frames = [m async for m in ws if m.type == aiohttp.WSMsgType.BINARY]
        assert frames and ws.close_code == 1000
        # OpenAI's browser client: "openai-insecure-api-key.<key>", without "realtime".
        offered = f"openai-insecure-api-key.{key}"
        async with s.ws_connect(
            f"{server.ws_url}/openai/v1/realtime",
            params={"model": "gpt-realtime"},
            protocols=(offered,),
        ) as ws:
            assert ws.protocol == offered
            first = await ws.receive_json(timeout=30)
            assert first["type"] == "session.created"
        # Beside a plain subprotocol, the plain one is chosen, as before.
        async with s.ws_connect(
            f"{server.ws_url}/openai/v1/realtime",
            params={"model": "gpt-realtime"},
            protocols=(offered, "realtime"),
        ) as ws:
            assert ws.protocol == "realtime"
    leaked = [t for t in every_log_record.texts if key in t or key[12:] in t]
    assert every_log_record.texts, "the capture saw nothing: it is not capturing"
    assert not leaked, leaked


async def test_whatever_logs_in_the_server_process_is_redacted(
    server: RunningServer, every_log_record: _EveryRecord
) -> None:
    _, key = await _new_key(server)
    # As aiohttp's own warning about unmatched subprotocols words it, from its own logger.
    logging.getLogger("aiohttp.websocket").warning(
        "%s: Client protocols %r don't overlap server-known ones %r",
        "127.0.0.1",
        ["x-custom", f"bearer.{key}"],
        (),
    )
    assert every_log_record.texts
    assert not [t for t in every_log_record.texts if key[12:] in t]


# ---- agents' LLM keys at rest --------------------------------------------------------------

LLM_KEY = "sk-proj-SecretLLMKey0123456789abcdefWXYZ"


async def test_an_agents_llm_key_is_encrypted_at_rest_and_never_shown(
    server: RunningServer,
) -> None:
    pool = server.app[POOL]
    async with FakeOpenAI() as fake, aiohttp.ClientSession() as s:
        fake.reply_text("The garage is open all night.")
        body = {
            "name": "sealed llm",
            "voice": "slt",
            "llm": {"base_url": fake.base_url, "model": "fake-model", "api_key": LLM_KEY},
        }
        async with s.post(f"{server.url}/v1/agents", json=body, headers=server.headers()) as r:
            assert r.status == 201, await r.text()
            created = await r.json()
        raw = await pool.fetchval("SELECT llm::text FROM agents WHERE id = $1", created["id"])
        assert LLM_KEY not in raw and LLM_KEY[-8:] not in raw
        # Nothing the API answers holds the key; a hint tells keys apart.
        assert created["llm"]["api_key_hint"] == "sk-…WXYZ"
        for path in (f"/v1/agents/{created['id']}", "/v1/agents"):
            async with s.get(f"{server.url}{path}", headers=server.headers()) as r:
                assert r.status == 200 and LLM_KEY not in await r.text()
        # The agent still reaches its endpoint with the key, decrypted.
        client = ConvaiClient(
            await s.ws_connect(
                f"{server.ws_url}/v1/convai/stream",
                params={"agent_id": created["id"]},
                headers=server.headers(),
            )
        )
        await client.wait_event("session")
        await client.ws.send_json({"type": "text", "text": "When is the garage open?"})
        reply = await client.wait_event("agent_response")
        assert reply["text"] == "The garage is open all night."
        await client.close()
    assert fake.requests[0].headers["Authorization"] == f"Bearer {LLM_KEY}"


# ---- revoking a key closes its open sockets ------------------------------------------------

REVOKED_WITHIN_S = 5.0  # the server checks about once a second


class _Frames:
    """Everything a socket receives, in order, until it closes."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.items: list[str | bytes] = []
        self._changed = asyncio.Event()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                self.items.append(msg.data)
                self._changed.set()

    async def first_audio(self) -> None:
        await wait_for_change(
            self.audio_frames, self._changed, self.reader, within=30, describe=lambda: "no audio"
        )

    async def first_message(self) -> None:
        await wait_for_change(
            lambda: self.items, self._changed, self.reader, within=30, describe=lambda: "nothing"
        )

    def audio_frames(self) -> int:
        return sum(
            isinstance(m, bytes) or (isinstance(m, str) and '"audio"' in m) for m in self.items
        )


async def _revoke_and_expect_close(server: RunningServer, key_id: str, frames: _Frames) -> Any:
    await ApiKeyRepository(server.app[POOL]).revoke(key_id)
    await asyncio.wait_for(frames.reader, REVOKED_WITHIN_S)
    assert frames.ws.close_code == 4401
    assert isinstance(frames.items[-1], str), "audio arrived after the error event"
    return json.loads(frames.items[-1])


async def test_revoking_a_key_closes_its_open_tts_socket(server: RunningServer) -> None:
    key_id, key = await _new_key(server, "revoked-socket")
    _, other_key = await _new_key(server, "revoked-socket")
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(
            f"{server.ws_url}/v1/tts/stream",
            params={"voice": "slt"},
            headers={"Authorization": f"Bearer {key}"},
        )
        bystander = await s.ws_connect(
            f"{server.ws_url}/v1/tts/stream",
            params={"voice": "slt"},
            headers={"Authorization": f"Bearer {other_key}"},
        )
        frames, kept = _Frames(ws), _Frames(bystander)
        await ws.send_json({"type": "text", "text": "The first sentence is spoken. "})
        await frames.first_audio()
        # The socket is still open and would speak whatever comes next.
        error = await _revoke_and_expect_close(server, key_id, frames)
        assert error["type"] == "error" and error["code"] == "unauthorized"
        assert "revoked" in error["message"]
        # Another key's socket goes on.
        await bystander.send_json({"type": "text", "text": "Still here."})
        await bystander.send_json({"type": "end"})
        await asyncio.wait_for(kept.reader, 30)
        assert bystander.close_code == 1000 and kept.audio_frames()


@pytest.mark.parametrize(
    ("path", "params", "error_of"),
    [
        ("/v1/stt/stream", {}, lambda e: e["code"]),
        ("/openai/v1/realtime", {"model": "gpt-realtime"}, lambda e: e["error"]["code"]),
    ],
)
async def test_revoking_a_key_closes_its_other_sockets(
    server: RunningServer, path: str, params: dict[str, str], error_of: Any
) -> None:
    key_id, key = await _new_key(server, "revoked-socket")
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(
            f"{server.ws_url}{path}", params=params, headers={"Authorization": f"Bearer {key}"}
        )
        frames = _Frames(ws)
        await ws.send_bytes(bytes(3200))  # 100 ms of silence: the stream is in use
        error = await _revoke_and_expect_close(server, key_id, frames)
        assert error_of(error) == "unauthorized"


async def test_revoking_a_key_sent_inside_the_socket_closes_it(server: RunningServer) -> None:
    """ElevenLabs' stream-input: the key arrives in the first message, not the handshake."""
    key_id, key = await _new_key(server, "revoked-socket")
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(
            f"{server.ws_url}/elevenlabs/v1/text-to-speech/slt/stream-input",
            params={"output_format": "pcm_16000"},
        )
        frames = _Frames(ws)
        await ws.send_json({"text": " ", "xi_api_key": key})
        await ws.send_json({"text": "Hello there. ", "flush": True})
        await frames.first_audio()
        error = await _revoke_and_expect_close(server, key_id, frames)
        # ElevenLabs' error shape, which its SDKs read: not the native {"type": "error"} event.
        assert error["error"] == "unauthorized" and "revoked" in error["message"], error


_EL = "/elevenlabs/v1"


async def test_a_revoked_keys_multi_stream_socket_hears_elevenlabs_error_shape(
    server: RunningServer,
) -> None:
    key_id, key = await _new_key(server, "revoked-socket")
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(
            f"{server.ws_url}{_EL}/text-to-speech/slt/multi-stream-input",
            params={"output_format": "pcm_16000"},
            headers={"xi-api-key": key},
        )
        frames = _Frames(ws)
        await ws.send_json({"text": "Hello there. ", "context_id": "a", "flush": True})
        await frames.first_audio()
        error = await _revoke_and_expect_close(server, key_id, frames)
        assert error["error"] == "unauthorized" and "revoked" in error["message"], error


async def test_a_revoked_keys_scribe_socket_hears_scribes_error_shape(
    server: RunningServer,
) -> None:
    key_id, key = await _new_key(server, "revoked-socket")
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(
            f"{server.ws_url}{_EL}/speech-to-text/realtime",
            params={"model_id": "scribe_v2_realtime"},
            headers={"xi-api-key": key},
        )
        frames = _Frames(ws)
        await frames.first_message()  # session_started: the session is running
        error = await _revoke_and_expect_close(server, key_id, frames)
        assert error["message_type"] == "auth_error" and "revoked" in error["error"], error


async def test_a_revoked_keys_phone_call_is_closed_the_carriers_way(server: RunningServer) -> None:
    """Twilio's protocol has no error message from the server: a close code and reason only."""
    key_id, key = await _new_key(server, "revoked-call")
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as s:
        body = {"name": "phone desk", "voice": "slt", "first_message": "Hello, how can I help?"}
        async with s.post(f"{server.url}/v1/agents", json=body, headers=headers) as r:
            assert r.status == 201, await r.text()
            agent_id = (await r.json())["id"]
        ws = await s.ws_connect(
            f"{server.ws_url}/v1/telephony/twilio", params={"agent_id": agent_id}, headers=headers
        )
        frames = _Frames(ws)
        sid = "MZ" + "0" * 32
        await ws.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await ws.send_json(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": sid,
                "start": {
                    "streamSid": sid,
                    "accountSid": "AC" + "0" * 32,
                    "callSid": "CA" + "0" * 32,
                    "tracks": ["inbound"],
                    "customParameters": {},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
        await frames.first_message()  # the greeting's media: the call is up
        await ApiKeyRepository(server.app[POOL]).revoke(key_id)
        await asyncio.wait_for(frames.reader, REVOKED_WITHIN_S)
        assert ws.close_code == 4401
        sent = [json.loads(m) for m in frames.items if isinstance(m, str)]
        assert all("event" in m for m in sent), [m for m in sent if "event" not in m]


async def test_revoking_a_key_hangs_up_its_webrtc_calls(server: RunningServer) -> None:
    from voicestream.transports.webrtc import WEBRTC_PEERS

    key_id, key = await _new_key(server, "revoked-call")
    headers = {"Authorization": f"Bearer {key}"}
    client = Client()
    async with aiohttp.ClientSession() as s:
        body = {"name": "private desk", "voice": "slt", "first_message": "Hello."}
        async with s.post(f"{server.url}/v1/agents", json=body, headers=headers) as r:
            assert r.status == 201, await r.text()
            agent_id = (await r.json())["id"]
        try:
            offer = {"sdp": await client_offer(client), "type": "offer", "agent_id": agent_id}
            async with s.post(
                f"{server.url}/v1/convai/webrtc/offer", json=offer, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
                answer = await r.json()
            await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            await client.wait_for(lambda e: e["type"] == "session")
            peers = server.app[WEBRTC_PEERS]
            assert answer["pc_id"] in peers
            await ApiKeyRepository(server.app[POOL]).revoke(key_id)
            await eventually(
                lambda: answer["pc_id"] not in peers,
                within=REVOKED_WITHIN_S,
                what="the call to end",
            )
            await eventually(
                lambda: client.pc.connectionState == "closed",
                within=WAIT_S,
                what="the client to see it",
            )
        finally:
            await client.close()
