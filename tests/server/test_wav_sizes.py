"""WAV responses read back with Python's ``wave``: the header's sizes are the real ones wherever
the whole audio is known before it leaves (one clause, or a route that answers with a whole
file); a longer stream keeps the streaming convention (0xFFFFFFFF, "until EOF") and still reads
to its end. The native ``/v1/tts`` and OpenAI speech streams are exactly that stream, made by the
same ``encode_stream``."""

from __future__ import annotations

import base64
import io
import struct
import wave
from typing import Any

import aiohttp
import av
import pytest
from waiting import eventually

from voicestream.rest.resources import METRICS

ONE_CLAUSE = "Good morning."
SEVERAL_CLAUSES = (
    "The weather is nice today. We are going to the beach this weekend, and after that we "
    "will drive home."
)
UNKNOWN = 0xFFFFFFFF


def header_sizes(data: bytes) -> tuple[int, int]:
    """The RIFF size and the data chunk's size of a canonical 44-byte header."""
    assert data[:4] == b"RIFF" and data[36:40] == b"data", data[:44]
    return struct.unpack_from("<I", data, 4)[0], struct.unpack_from("<I", data, 40)[0]


def decoded_samples(data: bytes) -> int:
    """Samples as FFmpeg decodes them, whatever the header claims."""
    with av.open(io.BytesIO(data)) as container:
        return sum(frame.samples for frame in container.decode(audio=0))


def assert_real_sizes(data: bytes) -> None:
    samples = (len(data) - 44) // 2
    assert samples > 1000, len(data)
    assert header_sizes(data) == (len(data) - 8, len(data) - 44)
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        assert w.getnframes() == samples
        assert len(w.readframes(w.getnframes())) == 2 * samples
    assert decoded_samples(data) == samples


async def native(s: aiohttp.ClientSession, server: Any, text: str) -> bytes:
    payload = {"text": text, "voice": "slt", "format": "wav_16000"}
    async with s.post(f"{server.url}/v1/tts", json=payload, headers=server.headers()) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "audio/wav"
        return await r.read()


async def openai_speech(s: aiohttp.ClientSession, server: Any, text: str, speed: float) -> bytes:
    payload = {
        "model": "tts-1",
        "voice": "slt",
        "input": text,
        "response_format": "wav",
        "speed": speed,
    }
    url = f"{server.url}/openai/v1/audio/speech"
    async with s.post(url, json=payload, headers=server.headers()) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def elevenlabs(s: aiohttp.ClientSession, server: Any, text: str, path: str = "") -> Any:
    url = f"{server.url}/elevenlabs/v1/text-to-speech/slt{path}"
    async with s.post(
        url,
        params={"output_format": "wav_16000"},
        json={"text": text, "model_id": "eleven_flash_v2_5"},
        headers={"xi-api-key": server.api_key},
    ) as r:
        assert r.status == 200, await r.text()
        if path.endswith("with-timestamps"):
            return base64.b64decode((await r.json())["audio_base64"])
        return await r.read(), r.headers.get("history-item-id")


@pytest.mark.parametrize(
    "route", ["native", "openai", "openai-speed", "elevenlabs", "elevenlabs-stream"]
)
async def test_one_clause_wav_has_real_sizes_on_every_route(server: Any, route: str) -> None:
    # One clause is the whole audio by the time its header leaves, on streaming routes too.
    async with aiohttp.ClientSession() as s:
        match route:
            case "native":
                data = await native(s, server, ONE_CLAUSE)
            case "openai":
                data = await openai_speech(s, server, ONE_CLAUSE, 1.0)
            case "openai-speed":
                data = await openai_speech(s, server, ONE_CLAUSE, 1.5)
            case "elevenlabs":
                data, _ = await elevenlabs(s, server, ONE_CLAUSE)
            case _:
                data, _ = await elevenlabs(s, server, ONE_CLAUSE, "/stream")
    assert_real_sizes(data)


async def test_whole_file_routes_have_real_sizes_for_long_text(server: Any) -> None:
    async with aiohttp.ClientSession() as s:
        # The non-streaming endpoint answers with a file, and a file has its sizes.
        converted, _ = await elevenlabs(s, server, SEVERAL_CLAUSES)
        assert_real_sizes(converted)
        # Base64 in JSON is a whole file too.
        timed = await elevenlabs(s, server, SEVERAL_CLAUSES, "/with-timestamps")
        assert_real_sizes(timed)
        # A streamed generation is stored in the history once it is all there: with its sizes.
        streamed, item_id = await elevenlabs(s, server, SEVERAL_CLAUSES, "/stream")
        assert item_id
        url = f"{server.url}/elevenlabs/v1/history/{item_id}/audio"
        async with s.get(url, headers={"xi-api-key": server.api_key}) as r:
            assert r.status == 200
            stored = await r.read()
    assert_real_sizes(stored)
    assert stored[44:] == streamed[44:]
    assert len(timed) == len(converted) == len(stored)
    # The stream itself could not know its length when the header left: it says "until EOF",
    # and readers still get every sample.
    assert header_sizes(streamed) == (UNKNOWN, UNKNOWN)
    assert decoded_samples(streamed) == (len(streamed) - 44) // 2
    with wave.open(io.BytesIO(streamed)) as w:
        assert w.readframes(w.getnframes()) == streamed[44:]


def active(server: Any, kind: str) -> float:
    value = server.app[METRICS].registry.get_sample_value(
        "voicestream_active_streams", {"kind": kind}
    )
    return value or 0.0


async def test_a_wav_reader_gone_after_the_first_clause_leaves_nothing_behind(
    server: Any,
) -> None:
    # The first clause goes out while the next is already being synthesized (the look-ahead
    # that tells a one-clause stream from a longer one): a client that leaves then must not
    # leave that synthesis, an error or an open stream behind.
    before = active(server, "tts_http")
    async with aiohttp.ClientSession() as s:
        payload = {"text": SEVERAL_CLAUSES * 4, "voice": "slt", "format": "wav_16000"}
        async with s.post(f"{server.url}/v1/tts", json=payload, headers=server.headers()) as r:
            assert r.status == 200
            first = await r.content.read(1024)
            assert header_sizes(first) == (UNKNOWN, UNKNOWN)
            r.close()
    await eventually(lambda: active(server, "tts_http") == before, what="the stream closed")
    async with aiohttp.ClientSession() as s:
        assert_real_sizes(await native(s, server, ONE_CLAUSE))
