"""Clients that vanish mid-stream cost the server nothing: no error, no leaked stream."""

from __future__ import annotations

import asyncio

import aiohttp

from voicestream.rest.resources import METRICS

LONG_TEXT = "The weather is nice today. " * 20


async def _active(server, kind: str) -> float:
    gauge = server.app[METRICS].active_streams.labels(kind)
    return float(gauge._value.get())


async def _until_no_active(server, kind: str) -> None:
    for _ in range(100):
        if await _active(server, kind) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{kind} streams still open")


async def test_tts_socket_closed_after_first_audio(server) -> None:
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{server.ws_url}/v1/tts/stream", headers=server.headers())
        await ws.send_json({"type": "text", "text": LONG_TEXT})
        await ws.send_json({"type": "end"})
        msg = await ws.receive()
        while msg.type != aiohttp.WSMsgType.BINARY:
            msg = await ws.receive()
        await ws.close()
    await _until_no_active(server, "tts_ws")


async def test_tts_socket_dropped_before_end(server) -> None:
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"{server.ws_url}/v1/tts/stream", headers=server.headers())
        await ws.send_json({"type": "text", "text": "Half a sentence, "})
        await ws.close()
    await _until_no_active(server, "tts_ws")


async def test_http_tts_reader_gone_mid_stream(server) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{server.url}/v1/tts",
            json={"text": LONG_TEXT, "format": "pcm_16000"},
            headers=server.headers(),
        ) as r:
            assert r.status == 200
            assert await r.content.read(1024)
            r.close()  # drop the connection with most of the audio unread
    await _until_no_active(server, "tts_http")
    # The server carries on as before.
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{server.url}/readyz") as r:
            assert r.status == 200


async def test_stt_socket_dropped_mid_utterance(server) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{server.url}/v1/tts",
            json={"text": "Please call me back tomorrow morning.", "format": "pcm_16000"},
            headers=server.headers(),
        ) as r:
            speech = await r.read()
        ws = await s.ws_connect(f"{server.ws_url}/v1/stt/stream", headers=server.headers())
        for i in range(0, len(speech) // 2, 640):
            await ws.send_bytes(speech[i : i + 640])
        await ws.close()
    await _until_no_active(server, "stt_ws")
