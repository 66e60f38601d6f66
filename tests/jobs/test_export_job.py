"""The ``export`` job end to end on the session server: a project with two voices, a music
track and a tiny video, exported through ``POST /v1/projects/{id}/exports`` to every format,
each output checked by content (it decodes, its length, its loudness, the music ducked under
speech, the mp4's video packets untouched, the SRT where Whisper hears the words), and a
re-export after a one-block edit synthesizing that block only."""

from __future__ import annotations

import asyncio
import io
import math
import re
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np

from fixtures_services import unique_name
from server.waiting import eventually
from voicestream.engines.catalog import EngineRegistry
from voicestream.jobs.types.transcription import whisper_engine
from voicestream.media.decode import decode_audio
from voicestream.media.loudness import integrated_loudness
from voicestream.media.muxing import video_packets
from voicestream.media.resample import resample
from voicestream.media.subtitles import parse_srt, parse_vtt
from voicestream.media.wav import encode_wav
from voicestream.rest.resources import POOL
from voicestream.store.keys import ApiKeyRepository

RATE = 44100
MUSIC_HZ = 12000.0  # above anything the 16 kHz flite voices hold: the band measures music only
SECONDS = 9.0
FIRST = "Good morning everyone, and welcome to the studio."
SECOND = "Today we talk about gardens in the spring."


def _music() -> bytes:
    t = np.arange(int(SECONDS * RATE)) / RATE
    tone = 0.2 * np.sin(2 * np.pi * MUSIC_HZ * t)
    return encode_wav((tone * 32767).astype("<i2").tobytes(), RATE)


def _video() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(int(SECONDS * 10)):
            shade = np.full((64, 64, 3), (i * 11) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(shade, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


async def _call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kw) as r:
        return r.status, await r.json()


async def _upload(
    http: aiohttp.ClientSession, server: Any, headers: dict[str, str], data: bytes, name: str
) -> str:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    status, body = await _call(http, "POST", f"{server.url}/v1/files", data=form, headers=headers)
    assert status == 201, body
    return str(body["id"])


async def _export(
    http: aiohttp.ClientSession, server: Any, headers: dict[str, str], project: str, fmt: str
) -> dict[str, Any]:
    status, job = await _call(
        http, "POST", f"{server.url}/v1/projects/{project}/exports", json={"format": fmt},
        headers=headers,
    )  # fmt: skip
    assert status == 202 and job["type"] == "export", job

    async def finished() -> dict[str, Any] | None:
        _, now = await _call(http, "GET", f"{server.url}/v1/jobs/{job['id']}", headers=headers)
        return now if now["status"] in ("completed", "failed", "cancelled") else None

    done: dict[str, Any] = await eventually(finished, within=60, what=f"{fmt} export")
    assert done["status"] == "completed", done
    return done


async def _download(http: aiohttp.ClientSession, server: Any, entry: dict[str, Any]) -> bytes:
    # A local signed URL is relative to the server.
    async with http.get(server.url + entry["url"]) as r:
        assert r.status == 200
        return await r.read()


def _band_level_db(pcm: bytes, rate: int, start: float, end: float) -> float:
    """The level of MUSIC_HZ (±300 Hz) in [start, end), in dB."""
    x = np.frombuffer(pcm, dtype="<i2")[int(start * rate) : int(end * rate)].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    band = spectrum[(freqs > MUSIC_HZ - 300) & (freqs < MUSIC_HZ + 300)]
    # A tone's spectral peak grows with the window: per sample, windows of any length compare.
    return 20 * math.log10(float(np.sqrt((band**2).sum())) / x.size + 1e-12)


def _decoded(data: bytes, fmt: str) -> tuple[bytes, int]:
    if fmt.startswith("pcm"):
        return data, RATE
    rate = 48000 if fmt == "mp4" else RATE
    return decode_audio(data, rate), rate


def _check_audio(
    data: bytes, fmt: str, result: dict[str, Any], voice_spans: list[tuple[float, float]]
) -> None:
    pcm, rate = _decoded(data, fmt)
    seconds = len(pcm) / 2 / rate
    assert abs(seconds - SECONDS) < 0.15, (fmt, seconds)
    assert abs(result["duration"] - SECONDS) < 0.05
    loudness = integrated_loudness(pcm, rate)
    assert abs(loudness - (-16.0)) <= 1.0, (fmt, loudness)
    # Music alone (before the first block, and after the last one's release) against music
    # under the middle of each spoken block: ducked by about the default 12 dB.
    alone = _band_level_db(pcm, rate, 8.0, 9.0)
    assert abs(_band_level_db(pcm, rate, 0.0, 0.4) - alone) < 2.0, fmt
    for start, end in voice_spans:
        middle = (start + end) / 2
        under = _band_level_db(pcm, rate, middle - 0.4, middle + 0.4)
        assert alone - under > 8.0, (fmt, alone, under)


def _plain(word: str) -> str:
    return re.sub(r"\W", "", word).lower()


def _transcribed_words(
    registry: EngineRegistry, pcm: bytes, rate: int
) -> list[tuple[str, float, float]]:
    engine = whisper_engine(registry, None)
    transcript = engine.transcribe(resample(pcm, rate, 16000))
    return [(_plain(w.text), w.start, w.end) for w in transcript.words]


async def test_a_project_exports_to_every_format_and_re_renders_one_edited_block(
    server, http, registry: EngineRegistry, tmp_path: Path
) -> None:
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace=unique_name("export"), role="owner"
    )
    headers = dict(server.headers(key))
    music = await _upload(http, server, headers, await asyncio.to_thread(_music), "music.wav")
    video_bytes = await asyncio.to_thread(_video)
    video = await _upload(http, server, headers, video_bytes, "picture.mp4")
    # A token no other test speaks: the first render synthesizes both blocks.
    token = uuid.uuid4().hex[:6]
    timeline = {
        "video_asset": {"file_id": video},
        "tracks": [
            {"id": "voices", "kind": "voice", "clips": [
                {"id": "a", "type": "tts", "start": 0.8, "text": FIRST, "voice_id": "slt"},
                {"id": "b", "type": "tts", "start": 4.5, "text": SECOND, "voice_id": "rms"},
            ]},
            {"id": "bed", "kind": "music", "clips": [
                {"id": "m", "type": "audio", "start": 0.0, "file_id": music},
            ]},
        ],
    }  # fmt: skip
    status, project = await _call(
        http, "POST", f"{server.url}/v1/projects", json={"name": f"export {token}", **timeline},
        headers=headers,
    )  # fmt: skip
    assert status == 201, project
    project_id = project["id"]

    first = await _export(http, server, headers, project_id, "wav")
    result = first["result"]
    assert result["version"] == 1 and result["format"] == "wav_44100"
    assert result["blocks"]["synthesized"] + result["blocks"]["reused"] == 2
    wav, srt_entry, vtt_entry = result["files"]
    data = await _download(http, server, wav)
    pcm, rate = await asyncio.to_thread(_decoded, data, "wav")
    srt = (await _download(http, server, srt_entry)).decode()
    cues = parse_srt(srt)
    assert len(parse_vtt((await _download(http, server, vtt_entry)).decode())) == len(cues) >= 2
    # Each block's span on the timeline, from the cues (its first and last spoken words).
    a_end = max(c.end for c in cues if c.start < 4.5)
    b_end = max(c.end for c in cues)
    spans = [(0.8 + 0.3, a_end), (4.5 + 0.3, b_end)]
    assert cues[0].start >= 0.8 and a_end < 4.5 < b_end <= SECONDS
    await asyncio.to_thread(_check_audio, data, "wav", result, spans)
    # The SRT's cues start and end where Whisper hears their first and last words in the
    # export. Whisper pins the first word of its window to 0.0 whatever the silence before it:
    # a start it reports as 0 says nothing and is skipped.
    heard = await asyncio.to_thread(_transcribed_words, registry, pcm, rate)
    ends = 0
    for cue in cues:
        words = [_plain(w) for w in cue.text.split()]
        first = [(s, e) for text, s, e in heard if text == words[0]]
        if first:
            start = min((s for s, _ in first), key=lambda s: abs(s - cue.start))
            assert start < 0.05 or abs(start - cue.start) <= 0.3, (cue, heard)
        last = [e for text, _, e in heard if text == words[-1]]
        if last:
            end = min(last, key=lambda e: abs(e - cue.end))
            assert abs(end - cue.end) <= 0.3, (cue, heard)
            ends += 1
    assert ends >= 2, (cues, heard)

    others = await asyncio.gather(
        *(_export(http, server, headers, project_id, fmt) for fmt in ("mp3", "pcm", "flac", "mp4"))
    )
    for fmt, done in zip(("mp3", "pcm", "flac", "mp4"), others, strict=True):
        result = done["result"]
        assert result["blocks"] == {"synthesized": 0, "reused": 2}, (fmt, result)
        data = await _download(http, server, result["files"][0])
        await asyncio.to_thread(_check_audio, data, fmt, result, spans)
        if fmt == "mp4":
            out = tmp_path / "export.mp4"
            source = tmp_path / "source.mp4"
            await asyncio.to_thread(out.write_bytes, data)
            await asyncio.to_thread(source.write_bytes, video_bytes)
            copied = await asyncio.to_thread(video_packets, out)
            assert copied == await asyncio.to_thread(video_packets, source)

    status, edited = await _call(
        http, "PATCH", f"{server.url}/v1/projects/{project_id}/clips/b",
        json={"text": f"Tomorrow we plant seeds number {token}."}, headers=headers,
    )  # fmt: skip
    assert status == 200 and edited["version"] == 2
    again = await _export(http, server, headers, project_id, "wav")
    assert again["result"]["version"] == 2
    assert again["result"]["blocks"] == {"synthesized": 1, "reused": 1}
