"""Per-connection bounds (issue 7 §3): a client that stops reading is closed within the send
deadline instead of holding its stream forever, an OpenAI Realtime conversation caps what a
client may add to it, and the test server runs with production's connection limits.

The first two run against a second server with small limits, the shared engines and database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import StartedServer, settings_for_test_server, start_test_server
from server.realtime_client import Recorder, raw_events
from server.waiting import eventually

SEND_TIMEOUT_S = 1.0
MAX_ITEMS = 5
MAX_CHARS = 2000
LIMITS: dict[str, Any] = {
    "ws_send_timeout_seconds": SEND_TIMEOUT_S,
    "realtime_max_items": MAX_ITEMS,
    "realtime_max_chars": MAX_CHARS,
}
# Far below the heartbeat (20 s, then 10 s for the pong) that used to be the only way out.
SOON_S = 8.0
# Spoken at 16 kHz this is minutes of audio: megabytes, far more than socket buffers hold.
LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 30)


Bounded = StartedServer


@pytest.fixture(scope="module")
async def bounded(
    embedded_services: Any, registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Bounded]:
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("queue-bounds"),
        **LIMITS,
    )
    async with start_test_server(settings, registry, key_workspace="queue-bounds") as started:
        yield started


async def _metric(url: str, sample_name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def _client_frame(text: str) -> bytes:
    """One masked text frame, as a client must send it (RFC 6455 §5.3)."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
    return bytes([0x81]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _stalled_tts_socket(bounded: Bounded) -> socket.socket:
    """A TTS stream of long text from a client whose receive buffer is tiny and that never
    reads: the server's sends soon find its TCP window shut."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.setblocking(False)
    await loop.sock_connect(sock, (bounded.host, bounded.port))
    key = base64.b64encode(os.urandom(16)).decode()
    handshake = (
        "GET /v1/tts/stream?voice=slt&format=pcm_16000 HTTP/1.1\r\n"
        f"Host: {bounded.host}:{bounded.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {bounded.api_key}\r\n\r\n"
    )
    await loop.sock_sendall(sock, handshake.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), SOON_S)
        assert chunk, f"server closed during the handshake: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    await loop.sock_sendall(sock, _client_frame(json.dumps({"type": "text", "text": LONG_TEXT})))
    await loop.sock_sendall(sock, _client_frame(json.dumps({"type": "end"})))
    return sock


async def _read_to_the_end(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    received = bytearray()
    while True:
        try:
            chunk = await loop.sock_recv(sock, 1 << 16)
        except ConnectionResetError:
            return bytes(received)  # cut once the grace for the last words was over
        if not chunk:
            return bytes(received)
        received += chunk


def _last_close_frame(data: bytes) -> tuple[int, bytes, list[dict[str, Any]]] | None:
    """The close frame and text events among the server's (unmasked) frames, if the stream
    was read to a close frame rather than cut."""
    events: list[dict[str, Any]] = []
    i = 0
    while i + 2 <= len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n, i = struct.unpack("!H", data[i : i + 2])[0], i + 2
        elif n == 127:
            n, i = struct.unpack("!Q", data[i : i + 8])[0], i + 8
        payload, i = data[i : i + n], i + n
        if len(payload) < n:
            return None  # cut mid-frame
        if opcode == 0x1:
            events.append(json.loads(payload))
        elif opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0], payload[2:], events
    return None


async def test_a_client_that_stops_reading_is_closed_within_the_send_deadline(
    bounded: Bounded,
) -> None:
    async def streams() -> float:
        return await _metric(bounded.url, "voicestream_active_streams", kind="tts_ws")

    async def too_slow() -> float:
        return await _metric(bounded.url, "voicestream_client_errors_total", code="client_too_slow")

    async def streaming() -> bool:
        return await streams() == 1

    async def freed() -> bool:
        return await streams() == 0

    before = await too_slow()
    sock = await _stalled_tts_socket(bounded)
    try:
        await eventually(streaming, within=SOON_S, what="the stream open")
        # The client reads nothing. The server gives up on it within the send deadline (plus
        # the time its buffers take to fill, and the short grace for its last words): the
        # stream and its session are gone, and the reason counted.
        await eventually(freed, within=SOON_S, what="the stream freed")
        assert await too_slow() == before + 1

        # The connection ends, instead of lingering on the unread data.
        data = await asyncio.wait_for(_read_to_the_end(sock), SOON_S)
    finally:
        sock.close()
    assert len(data) > 100_000  # it was streaming when it stopped reading
    # Read in time, the stream ends with the reason and 1013 (else it was cut after the grace).
    if (closing := _last_close_frame(data)) is not None:
        code, reason, events = closing
        assert code == 1013 and reason == b"client_too_slow", closing[:2]
        assert events[-1]["type"] == "error" and events[-1]["code"] == "client_too_slow"


async def _realtime(bounded: Bounded, s: aiohttp.ClientSession) -> tuple[Any, Recorder]:
    ws = await s.ws_connect(
        f"{bounded.ws_url}/openai/v1/realtime",
        params={"model": "gpt-realtime"},
        headers=bounded.headers(),
    )
    rec = Recorder(raw_events(ws))
    await rec.wait_event("session.created")
    return ws, rec


def _item(role: str, text: str, event_id: str) -> str:
    item = {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}
    return json.dumps({"type": "conversation.item.create", "event_id": event_id, "item": item})


async def test_realtime_items_past_the_cap_get_an_error_and_the_socket_stays(
    bounded: Bounded,
) -> None:
    async with aiohttp.ClientSession() as s:
        ws, rec = await _realtime(bounded, s)
        for n in range(MAX_ITEMS):
            await ws.send_str(_item("user" if n % 2 else "system", f"note {n}", f"evt_{n}"))
        await rec.wait_for(lambda: len(rec.of("conversation.item.added")) == MAX_ITEMS)
        await ws.send_str(_item("user", "one too many", "evt_over"))
        error = (await rec.wait_event("error"))["error"]
        assert error["type"] == "invalid_request_error"
        assert (error["code"], error["param"], error["event_id"]) == (
            "conversation_too_long",
            "item",
            "evt_over",
        )
        assert str(MAX_ITEMS) in error["message"]
        # Nothing was added, and the socket still works.
        await ws.send_str('{"type":"input_audio_buffer.clear"}')
        await rec.wait_event("input_audio_buffer.cleared")
        assert len(rec.of("conversation.item.added")) == MAX_ITEMS
        assert not ws.closed
        await ws.close()


async def test_realtime_items_past_the_character_budget_get_an_error(bounded: Bounded) -> None:
    async with aiohttp.ClientSession() as s:
        ws, rec = await _realtime(bounded, s)
        await ws.send_str(_item("system", "x" * (MAX_CHARS - 10), "evt_big"))
        await rec.wait_event("conversation.item.added")
        await ws.send_str(_item("user", "y" * 11, "evt_over"))
        error = (await rec.wait_event("error"))["error"]
        assert (error["code"], error["event_id"]) == ("conversation_too_long", "evt_over")
        await ws.send_str(_item("user", "y" * 10, "evt_fits"))  # exactly the budget
        await rec.wait_for(lambda: len(rec.of("conversation.item.added")) == 2)
        assert len(rec.of("error")) == 1
        await ws.close()


async def test_the_test_server_closes_idle_connections_as_production_does(server: Any) -> None:
    """tests/conftest.py's server runs with ``server_options`` (keep-alive timeout): a
    connection that sends no request is closed, not kept for aiohttp's default 75 s."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        within = server.settings.keepalive_timeout_seconds + 5
        assert await asyncio.wait_for(reader.read(), within) == b""
    finally:
        writer.close()
