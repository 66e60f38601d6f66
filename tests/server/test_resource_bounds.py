"""Resource bounds: a cap on STT streams (refused as "busy" past it) with idle decoders freed
after a burst, and time limits on request bodies and on connections that send no request.

The memory an STT stream holds is a pocketsphinx decoder (~95 MB): with Whisper the default,
that is the decoder lending the stream its live partials (a Whisper decoder is only the
utterance's audio; the model is shared), so the freeing is checked on that engine's pool.

These run against a second server with small limits, its own engines (the STT cap and the idle
release belong to the engine) and the shared database.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from waiting import eventually

from helpers import StartedServer, settings_for_test_server, start_test_server
from voicestream.config import load_settings
from voicestream.engines.base import DecoderPoolStats
from voicestream.engines.catalog import EngineRegistry, build_default_registry
from voicestream.engines.pocketsphinx_stt import PocketsphinxSTT
from voicestream.engines.whisper_stt import WhisperSTT

MAX_STREAMS = 3
IDLE_RELEASE_S = 0.5
BODY_TIMEOUT_S = 3.0
BODY_IDLE_S = 1.0
KEEPALIVE_S = 1.0
# Generous bounds on "soon": far below the minutes a stalled peer used to hold a handler.
SOON_S = 10.0

LIMITS = {
    "max_stt_streams": MAX_STREAMS,
    "stt_threads": 1,  # one warm spare decoder
    "stt_idle_release_seconds": IDLE_RELEASE_S,
    "body_timeout_seconds": BODY_TIMEOUT_S,
    "body_idle_timeout_seconds": BODY_IDLE_S,
    "keepalive_timeout_seconds": KEEPALIVE_S,
}


Bounded = StartedServer


@pytest.fixture(scope="module")
def bounded_registry() -> Iterator[EngineRegistry]:
    registry = build_default_registry(load_settings({}, **LIMITS))
    yield registry
    for engine in registry.stt_engines():
        if isinstance(engine, (PocketsphinxSTT, WhisperSTT)):
            engine.close()


def _memory_pool(registry: EngineRegistry) -> PocketsphinxSTT:
    """The pool of decoders that hold the memory (see the module doc)."""
    engine = registry.stt_for("pocketsphinx")
    assert isinstance(engine, PocketsphinxSTT), engine
    return engine


@pytest.fixture(scope="module")
async def bounded(
    embedded_services, bounded_registry, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Bounded]:
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("bounded"),
        **LIMITS,
    )
    async with start_test_server(settings, bounded_registry, key_workspace="bounded") as started:
        yield started


async def _decoders(
    s: aiohttp.ClientSession, url: str, engine: str = "pocketsphinx"
) -> dict[str, float]:
    """/metrics' decoders of one engine's pool, by state."""
    async with s.get(f"{url}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return {
        sample.labels["state"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "voicestream_stt_decoders"
        for sample in family.samples
        if sample.labels["engine"] == engine
    }


async def _speech(s: aiohttp.ClientSession, bounded: Bounded, text: str) -> bytes:
    async with s.post(
        f"{bounded.url}/v1/tts",
        json={"text": text, "format": "pcm_16000"},
        headers=bounded.headers(),
    ) as r:
        assert r.status == 200, await r.text()
        return await r.read()


def _transcribe(s: aiohttp.ClientSession, bounded: Bounded, pcm: bytes) -> Any:
    """``POST /v1/stt`` of 16 kHz PCM, to use as ``async with``."""
    return s.post(
        f"{bounded.url}/v1/stt",
        params={"format": "pcm_16000"},
        data=pcm,
        headers=bounded.headers(),
    )


async def test_stt_streams_past_the_cap_are_told_busy_and_idle_decoders_are_freed(
    bounded: Bounded, bounded_registry: EngineRegistry
) -> None:
    pool = _memory_pool(bounded_registry)
    async with aiohttp.ClientSession() as s:
        speech = await _speech(s, bounded, "Good morning, I would like to book a table.")
        stream_url = f"{bounded.ws_url}/v1/stt/stream"
        sockets = []
        try:
            for _ in range(MAX_STREAMS):
                ws = await s.ws_connect(stream_url, headers=bounded.headers())
                await ws.send_bytes(speech)  # speech: each stream takes a decoder
                sockets.append(ws)

            async def all_busy() -> bool:
                # The memory pool's decoders, seen from /metrics (by engine) and directly.
                lent = (await _decoders(s, bounded.url, pool.name)).get("busy")
                return lent == MAX_STREAMS and pool.pool_stats().busy == MAX_STREAMS

            await eventually(all_busy, within=SOON_S, what=f"{MAX_STREAMS} busy decoders")

            # One more socket: the protocol's error event, then 1013 (try again later).
            async with s.ws_connect(stream_url, headers=bounded.headers()) as extra:
                msg = await extra.receive(timeout=SOON_S)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                event = json.loads(msg.data)
                assert event["type"] == "error" and event["code"] == "rate_limited", event
                assert (await extra.receive(timeout=SOON_S)).type == aiohttp.WSMsgType.CLOSE
                assert extra.close_code == 1013

            # One more upload: 429 with Retry-After, in the JSON error shape.
            async with _transcribe(s, bounded, speech) as r:
                assert r.status == 429, await r.text()
                assert r.headers["Retry-After"] == "1"
                assert (await r.json())["error"]["code"] == "rate_limited"

            for ws in sockets:
                await ws.send_json({"type": "end"})
                async for _ in ws:
                    pass
                assert ws.close_code == 1000
        finally:
            for ws in sockets:
                await ws.close()

        # The burst is over: decoders go back, then all but the one warm spare are freed.
        async def back_to_spare() -> DecoderPoolStats | None:
            lent = (await _decoders(s, bounded.url, pool.name)).get("busy")
            stats = pool.pool_stats()
            return stats if lent == 0 and (stats.busy, stats.idle) == (0, 1) else None

        await eventually(back_to_spare, within=SOON_S, what="one idle decoder left")

        # And the places are free again.
        async with _transcribe(s, bounded, speech) as r:
            assert r.status == 200, await r.text()
            assert "table" in (await r.json())["text"]


async def _request_head(bounded: Bounded, length: int) -> bytes:
    return (
        f"POST /v1/tts HTTP/1.1\r\nHost: {bounded.host}:{bounded.port}\r\n"
        f"Authorization: Bearer {bounded.api_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _status_and_body(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


async def test_a_request_body_that_stops_arriving_gets_408(bounded: Bounded) -> None:
    body = json.dumps({"text": "Hello there.", "format": "pcm_16000"}).encode()
    reader, writer = await asyncio.open_connection(bounded.host, bounded.port)
    try:
        writer.write(await _request_head(bounded, len(body)) + body[: len(body) // 2])
        await writer.drain()
        started = time.monotonic()
        response = await asyncio.wait_for(reader.read(), SOON_S)  # then the server closes
    finally:
        writer.close()
    status, error = _status_and_body(response)
    assert status == 408, response
    # The error tree's RequestTimeout: its code, and details naming the limit that was hit.
    assert error["error"]["code"] == "request_timeout"
    assert "stalled" in error["error"]["message"]
    assert error["error"]["details"] == {"limit": "body_idle_timeout", "seconds": BODY_IDLE_S}
    assert time.monotonic() - started < BODY_TIMEOUT_S + SOON_S / 2


async def test_a_body_trickling_in_is_cut_off_at_the_body_timeout(bounded: Bounded) -> None:
    body = json.dumps({"text": "Hello there. " * 20, "format": "pcm_16000"}).encode()
    reader, writer = await asyncio.open_connection(bounded.host, bounded.port)

    async def trickle() -> None:
        # A byte at a time, each well within the idle timeout: only the total limit stops it.
        writer.write(await _request_head(bounded, len(body)))
        for i in range(len(body)):
            writer.write(body[i : i + 1])
            await writer.drain()
            await asyncio.sleep(BODY_IDLE_S / 4)

    sender = asyncio.create_task(trickle())
    try:
        response = await asyncio.wait_for(reader.read(), BODY_TIMEOUT_S + SOON_S)
    finally:
        sender.cancel()
        await asyncio.wait([sender])
        writer.close()
    status, error = _status_and_body(response)
    assert status == 408, response
    assert "did not arrive within" in error["error"]["message"]
    assert error["error"]["details"] == {"limit": "body_timeout", "seconds": BODY_TIMEOUT_S}


@pytest.mark.parametrize(
    "sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x"], ids=["nothing", "half"]
)
async def test_a_connection_that_sends_no_request_is_closed(bounded: Bounded, sent: bytes) -> None:
    reader, writer = await asyncio.open_connection(bounded.host, bounded.port)
    try:
        writer.write(sent)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), SOON_S) == b""  # closed by the server
    finally:
        writer.close()


async def test_a_slow_handler_after_a_whole_body_is_not_cut_off(bounded: Bounded) -> None:
    """The body limits watch the body only: work after it may take longer than they allow."""
    # About 100 s of speech: several seconds of synthesis for the default (Piper) voice, well
    # past both body limits, without making the suite wait half a minute on a busy machine.
    text = "The weather is nice today, and the park is full of people. " * 25
    async with aiohttp.ClientSession() as s:
        started = time.monotonic()
        async with s.post(
            f"{bounded.url}/v1/tts",
            json={"text": text, "format": "wav_16000"},
            headers=bounded.headers(),
        ) as r:
            assert r.status == 200, await r.text()
            assert len(await r.read()) > 16000 * 2 * 10
    # Only meaningful when the synthesis took longer than the body's idle limit.
    if time.monotonic() - started < BODY_IDLE_S:
        pytest.skip("synthesis was faster than the body idle timeout on this machine")
