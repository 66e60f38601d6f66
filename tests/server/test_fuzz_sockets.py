"""Property-based fuzzing of every WebSocket protocol with malformed messages.

For each socket route, hypothesis draws a few frames (almost-right JSON, bad literals such as
huge integers and lone surrogates, unknown message types, random and oversized binary) and
sends them, after the protocol's valid opening when it has one, so the fuzz reaches past the
first message. Per connection the test asserts:

- a refused handshake is a 4xx, never a 5xx;
- every text frame the server sends is JSON, and the close code is not 1011 (a crashed
  handler) and says why;
- the close handshake completes within a deadline: nothing hangs;
- nothing in the server log at ERROR or with a traceback, and ``/healthz`` still answers.

``test_every_socket_route_is_fuzzed`` opens every GET route of the live router as a socket:
one that upgrades must be listed in ``SOCKETS``, so a new protocol cannot be left out.
The Wyoming TCP endpoint is off in the shared test server and is not fuzzed here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from fuzz_inputs import FuzzIdentity, bad_audio, fuzz_identity, fuzz_settings, json_texts
from hypothesis import event, given
from hypothesis import strategies as st

EXAMPLES_PER_SOCKET = 30
DEADLINE_S = 15.0
FUZZ = fuzz_settings(EXAMPLES_PER_SOCKET)
SID = "MZ" + "0" * 32


@dataclass(frozen=True)
class Socket:
    path: str
    query: Callable[[str], dict[str, str]]  # from the fuzz agent's id
    opening: tuple[dict[str, Any], ...] = ()  # valid first messages, when the protocol has them


def _twilio_start() -> dict[str, Any]:
    media_format = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    start = {"streamSid": SID, "callSid": "CA" + "0" * 32, "tracks": ["inbound"]}
    return {"event": "start", "streamSid": SID, "start": {**start, "mediaFormat": media_format}}


def _telnyx_start() -> dict[str, Any]:
    media_format = {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}
    start = {"call_control_id": "v3:x", "media_format": media_format}
    return {"event": "start", "sequence_number": "1", "stream_id": "s", "start": start}


SOCKETS = [
    Socket("/v1/tts/stream", lambda _: {"voice": "slt"}),
    Socket("/v1/stt/stream", lambda _: {}),
    Socket("/v1/convai/stream", lambda agent: {"agent_id": agent}),
    Socket("/openai/v1/realtime", lambda _: {"model": "gpt-realtime"}),
    Socket(
        "/elevenlabs/v1/text-to-speech/slt/stream-input",
        lambda _: {"output_format": "pcm_16000"},
        ({"text": " "},),
    ),
    Socket(
        "/elevenlabs/v1/text-to-speech/slt/multi-stream-input",
        lambda _: {"output_format": "pcm_16000"},
        ({"text": " ", "context_id": "c1"},),
    ),
    Socket("/elevenlabs/v1/speech-to-text/realtime", lambda _: {"model_id": "scribe_v2_realtime"}),
    Socket(
        "/elevenlabs/v1/convai/conversation",
        lambda agent: {"agent_id": agent},
        ({"type": "conversation_initiation_client_data"},),
    ),
    Socket(
        "/v1/telephony/twilio",
        lambda agent: {"agent_id": agent},
        ({"event": "connected", "protocol": "Call", "version": "1.0.0"}, _twilio_start()),
    ),
    Socket(
        "/v1/telephony/telnyx",
        lambda agent: {"agent_id": agent},
        ({"event": "connected", "version": "1.0.0"}, _telnyx_start()),
    ),
    Socket(
        "/v1/telephony/vonage",
        lambda agent: {"agent_id": agent},
        ({"event": "websocket:connected", "content-type": "audio/l16;rate=16000"},),
    ),
]


# One frame: almost-right JSON as text, random or audio-looking binary, or one past the size limit.
FRAMES = st.one_of(
    json_texts().map(lambda text: ("text", text.encode("utf-8", "surrogatepass"))),
    st.one_of(st.binary(max_size=400), bad_audio()).map(lambda b: ("binary", b)),
    st.sampled_from([("text", b'{"text": "' + b"x" * 70_000 + b'"}'), ("binary", bytes(70_001))]),
    st.binary(max_size=40).map(lambda b: ("text", b)),  # text frames that are not UTF-8
)
# Valid close codes a server may send: the standard ones in use, and the application range.
_ALLOWED_CLOSES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1013} | set(range(4000, 5000))


def _server_errors(error_log: Any) -> list[str]:
    records: list[logging.LogRecord] = error_log.records
    return [f"{r.name}: {r.getMessage()}" for r in records]


async def _send(ws: aiohttp.ClientWebSocketResponse, kind: str, data: bytes) -> None:
    if kind == "binary":
        await ws.send_bytes(data)
    else:
        # The drawn bytes as they are, through the client's frame writer (send_str would have to
        # encode them): a broken client's text frame is not always UTF-8.
        await ws._writer.send_frame(data, aiohttp.WSMsgType.TEXT)


async def _exchange(
    server: Any, socket: Socket, fuzz: FuzzIdentity, frames: list[tuple[str, bytes]]
) -> tuple[list[str], int | None, str]:
    """Send the opening and ``frames``, close, and return (text frames received, close code,
    what was sent)."""
    what = f"{socket.path} frames={[(k, d[:100]) for k, d in frames]}"
    received: list[str] = []
    async with aiohttp.ClientSession() as s:
        try:
            ws = await s.ws_connect(
                f"{server.ws_url}{socket.path}",
                params=socket.query(fuzz.agent_id),
                headers={"Authorization": f"Bearer {fuzz.key}"},
                max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status < 500, f"{what}: handshake {exc.status}"
            event(f"handshake refused: {exc.status}")
            return received, None, what

        async def read() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    received.append(msg.data)

        reader = asyncio.ensure_future(read())
        try:
            for message in socket.opening:
                await ws.send_str(json.dumps(message))
            for kind, data in frames:
                if ws.closed:
                    break
                await _send(ws, kind, data)
            # The server reads in order: by the time it answers the close, it has handled
            # every frame before it.
            await ws.close()
            await reader
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            await reader  # the server closed first, which is a fine answer to bad input
        event(f"close {ws.close_code}")
        return received, ws.close_code, what


@pytest.mark.parametrize("socket", SOCKETS, ids=[s.path for s in SOCKETS])
@FUZZ
@given(frames=st.lists(FRAMES, min_size=1, max_size=3))
async def test_socket_survives_malformed_messages(
    server: Any, error_log: Any, socket: Socket, frames: list[tuple[str, bytes]]
) -> None:
    fuzz = await fuzz_identity(server, "fuzz-sockets")
    async with asyncio.timeout(DEADLINE_S):
        received, close_code, what = await _exchange(server, socket, fuzz, frames)
    for text in received:
        json.loads(text)  # every text frame is a JSON event
    assert close_code is None or close_code in _ALLOWED_CLOSES, f"{what}: close {close_code}"
    assert not _server_errors(error_log), f"{what}: " + "\n".join(_server_errors(error_log))
    async with (
        aiohttp.ClientSession() as s,
        asyncio.timeout(DEADLINE_S),
        s.get(f"{server.url}/healthz") as r,
    ):
        assert r.status == 200, f"after {what}: /healthz {r.status}"


async def test_every_socket_route_is_fuzzed(server: Any) -> None:
    fuzz = await fuzz_identity(server, "fuzz-sockets")
    listed = {s.path for s in SOCKETS}
    upgraded: set[str] = set()
    async with aiohttp.ClientSession() as s:
        for route in server.app.router.routes():
            if route.method != "GET" or route.resource is None:
                continue
            path = route.resource.canonical
            for name in ("voice_id", "agent_id", "model", "history_item_id", "conversation_id"):
                path = path.replace("{" + name + "}", "slt")
            query = {"agent_id": fuzz.agent_id, "model_id": "scribe_v2_realtime"}
            try:
                ws = await s.ws_connect(
                    f"{server.ws_url}{path}",
                    params=query,
                    headers={"Authorization": f"Bearer {fuzz.key}"},
                )
            except aiohttp.WSServerHandshakeError:
                continue
            upgraded.add(path)
            await ws.close()
    assert upgraded <= listed, f"sockets not fuzzed: {upgraded - listed}"
    assert upgraded, "no route upgraded: the probe itself is broken"
