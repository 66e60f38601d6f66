"""The Wyoming TCP endpoint driven by the real ``wyoming`` client library (what Home Assistant
uses): describe, speech checked by what it says (our Wyoming TTS transcribed back through our
Wyoming ASR), 22.05 kHz stereo input, streaming synthesis, bad input, and shutdown.

A dedicated app with ``wyoming_port=0`` shares the session's engines and database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from waiting import eventually
from wyoming.asr import Transcribe, Transcript, TranscriptChunk
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from helpers import corpus_wer, normalize, sentences
from voicestream.config import load_settings
from voicestream.engines.catalog import EngineRegistry
from voicestream.rest.moderation import MODERATOR
from voicestream.rest.resources import METRICS, POOL, USAGE
from voicestream.server.app import create_app
from voicestream.store.embedded import ServiceURLs
from voicestream.store.moderation import StoredPolicy
from voicestream.store.workspaces import find_workspace
from voicestream.transports.wyoming_tcp import USAGE_WORKSPACE, WYOMING

MAX_WER = 0.35
READ_TIMEOUT = 90.0  # seconds per event: generous for a loaded two-core machine
SAMPLES_PER_CHUNK = 1024


@dataclass
class WyomingApp:
    runner: web.AppRunner
    port: int

    @property
    def app(self) -> web.Application:
        return self.runner.app

    def client(self) -> AsyncTcpClient:
        return AsyncTcpClient("127.0.0.1", self.port, connect_timeout=30, read_timeout=READ_TIMEOUT)


async def _start(services: ServiceURLs, registry: EngineRegistry, data_dir: Path) -> WyomingApp:
    settings = load_settings(
        {},
        data_dir=data_dir,
        database_url=services.database_url,
        redis_url=services.redis_url,
        port=0,
        wyoming_port=0,
        max_text_chars=2000,
        convai_silence_timeout_seconds=0,
    )
    runner = web.AppRunner(create_app(settings, registry=registry), access_log=None)
    await runner.setup()  # runs the cleanup contexts: the Wyoming listener starts here
    listener = runner.app[WYOMING]
    assert listener.host == "127.0.0.1" and listener.port > 0
    return WyomingApp(runner, listener.port)


@pytest.fixture(scope="module")
async def wyoming(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[WyomingApp]:
    started = await _start(embedded_services, registry, tmp_path_factory.mktemp("wyoming"))
    try:
        yield started
    finally:
        await started.runner.cleanup()


# ---- client-side helpers (only the wyoming library's own events) ----------------------------


@dataclass
class Speech:
    rate: int
    width: int
    channels: int
    pcm: bytes
    groups: int  # audio-start … audio-stop groups
    events: list[str] = field(default_factory=list)


async def read(client: AsyncTcpClient) -> Event:
    event = await client.read_event()
    assert event is not None, "server closed the connection"
    return event


async def collect_speech(client: AsyncTcpClient, *, until: str) -> Speech:
    """Audio events up to (and including) the event type ``until``."""
    fmt: tuple[int, int, int] | None = None
    pcm = bytearray()
    groups = 0
    types: list[str] = []
    while True:
        event = await read(client)
        types.append(event.type)
        assert event.type != "error", event.data
        if AudioStart.is_type(event.type):
            start = AudioStart.from_event(event)
            fmt = (start.rate, start.width, start.channels)
            groups += 1
        elif AudioChunk.is_type(event.type):
            chunk = AudioChunk.from_event(event)
            assert (chunk.rate, chunk.width, chunk.channels) == fmt
            pcm += chunk.audio
        if event.type == until:
            break
    assert fmt is not None, types
    return Speech(*fmt, bytes(pcm), groups, types)


async def synthesize(client: AsyncTcpClient, text: str, voice: str = "slt") -> Speech:
    await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=voice)).event())
    return await collect_speech(client, until="audio-stop")


@dataclass
class Recognition:
    text: str
    chunks: list[str]
    order: list[str]


async def transcribe(
    client: AsyncTcpClient, pcm: bytes, rate: int, channels: int = 1, model: str | None = None
) -> Recognition:
    await client.write_event(Transcribe(name=model, language="en").event())
    await client.write_event(AudioStart(rate=rate, width=2, channels=channels).event())
    step = SAMPLES_PER_CHUNK * 2 * channels
    for i in range(0, len(pcm), step):
        chunk = AudioChunk(rate=rate, width=2, channels=channels, audio=pcm[i : i + step])
        await client.write_event(chunk.event())
    await client.write_event(AudioStop().event())
    chunks: list[str] = []
    order: list[str] = []
    text: str | None = None
    while True:
        event = await read(client)
        order.append(event.type)
        assert event.type != "error", event.data
        if TranscriptChunk.is_type(event.type):
            chunks.append(TranscriptChunk.from_event(event).text)
        elif Transcript.is_type(event.type):
            text = Transcript.from_event(event).text
        elif event.type == "transcript-stop":
            break
    assert text is not None
    return Recognition(text, chunks, order)


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(int(seconds * rate) * 2)


def to_22050_stereo(pcm16k: bytes) -> bytes:
    """16 kHz mono → 22.05 kHz stereo, by plain interpolation (independent of the server's
    resampler); the right channel is quieter so a wrong downmix would still be audible."""
    mono = np.frombuffer(pcm16k, dtype="<i2").astype(np.float64)
    n_out = int(len(mono) * 22050 / 16000)
    t = np.arange(n_out) * (16000 / 22050)
    up = np.interp(t, np.arange(len(mono)), mono)
    stereo = np.stack([up, up * 0.6], axis=1)
    return np.clip(np.round(stereo), -32768, 32767).astype("<i2").tobytes()


async def usage_totals(app: WyomingApp) -> dict[str, float]:
    rt = app.app
    workspace = await find_workspace(rt[POOL], USAGE_WORKSPACE)
    assert workspace is not None
    return await rt[USAGE].totals(workspace)


# ---- describe, ping -------------------------------------------------------------------------


async def test_describe_lists_voices_and_asr(wyoming: WyomingApp, registry: EngineRegistry) -> None:
    async with wyoming.client() as client:
        await client.write_event(Describe().event())
        event = await read(client)
        assert Info.is_type(event.type)
        info = Info.from_event(event)
    (tts,) = info.tts
    names = {v.name for v in tts.voices}
    assert {"slt", "rms", "awb", "kal16"} <= names
    assert any(name.startswith("espeak-") for name in names)
    slt = next(v for v in tts.voices if v.name == "slt")
    assert slt.languages == ["en-US"] and slt.installed
    assert "Flite" in slt.attribution.name and slt.attribution.url
    joe = next(v for v in tts.voices if v.name == "en_US-joe-medium")
    assert joe.languages == ["en-US"] and "Piper" in joe.attribution.name
    assert tts.supports_synthesize_streaming and tts.version
    (asr,) = info.asr
    # Every engine, the default first, by the names a transcribe event may ask for.
    by_name = {m.name: m for m in asr.models}
    assert [m.name for m in asr.models] == registry.stt_model_names()
    assert asr.models[0].name == "tiny.en" and "en" in asr.models[0].languages
    assert "Whisper" in asr.models[0].attribution.name and asr.models[0].attribution.url
    assert "en" in by_name["pocketsphinx"].languages
    assert "PocketSphinx" in by_name["pocketsphinx"].attribution.name
    assert asr.supports_transcript_streaming and asr.version
    assert info.wake == [] and info.intent == []


async def test_ping_pong(wyoming: WyomingApp) -> None:
    async with wyoming.client() as client:
        await client.write_event(Ping(text="hello").event())
        event = await read(client)
        assert Pong.is_type(event.type) and Pong.from_event(event).text == "hello"


# ---- speech round trips ---------------------------------------------------------------------


async def test_synthesize_then_transcribe_says_the_text(wyoming: WyomingApp) -> None:
    # Eight sentences: flite's output varies from call to call, and so does one sentence's
    # word error rate; over eight it stays well below the bar.
    refs = sentences()[:8]
    before = await usage_totals(wyoming)
    async with wyoming.client() as client:
        speeches = [await synthesize(client, text) for text in refs]
    for speech in speeches:
        assert (speech.rate, speech.width, speech.channels) == (16000, 2, 1)
        assert speech.groups == 1 and speech.events[-1] == "audio-stop"
        assert 0.8 < len(speech.pcm) / 2 / speech.rate < 8.0
    # One connection for every transcription: it stays usable from request to request.
    hyps: list[str] = []
    async with wyoming.client() as client:
        for speech in speeches:
            result = await transcribe(client, silence(0.3) + speech.pcm + silence(0.5), 16000)
            # Streaming ASR: start, chunks, the full transcript, stop, in that order.
            assert result.order[0] == "transcript-start"
            assert result.order[-2:] == ["transcript", "transcript-stop"]
            assert normalize("".join(result.chunks)) == normalize(result.text)
            hyps.append(result.text)
    wer = corpus_wer(refs, hyps)
    assert wer <= MAX_WER, list(zip(refs, hyps, strict=True))
    after = await usage_totals(wyoming)
    assert after["tts_characters"] - before["tts_characters"] == sum(len(t) for t in refs)
    assert after["stt_seconds"] - before["stt_seconds"] > sum(
        len(s.pcm) / 2 / s.rate for s in speeches
    )


async def test_22050_hz_stereo_is_converted(wyoming: WyomingApp) -> None:
    refs = sentences()[13:18]
    hyps: list[str] = []
    async with wyoming.client() as client:
        for text in refs:
            speech = await synthesize(client, text)
            stereo = to_22050_stereo(silence(0.3) + speech.pcm + silence(0.5))
            result = await transcribe(client, stereo, 22050, channels=2)
            hyps.append(result.text)
    wer = corpus_wer(refs, hyps)
    assert wer <= MAX_WER, list(zip(refs, hyps, strict=True))


async def test_transcribe_uses_the_model_it_names(wyoming: WyomingApp) -> None:
    # The engines write differently: Whisper capitalises and punctuates, pocketsphinx gives
    # bare lower-case words. So the text shows which engine heard the audio.
    text = sentences()[1]
    async with wyoming.client() as client:
        speech = await synthesize(client, text)
        audio = silence(0.3) + speech.pcm + silence(0.5)
        by_engine = await transcribe(client, audio, 16000, model="pocketsphinx")
        by_model = await transcribe(client, audio, 16000, model="tiny.en")
        # A choice holds for the one stream after it: then the default (Whisper) again.
        default = await transcribe(client, audio, 16000)
    results = (by_engine, by_model, default)
    assert corpus_wer([text] * 3, [r.text for r in results]) <= MAX_WER, results
    assert by_engine.text == normalize(by_engine.text), by_engine
    for whisper in (by_model, default):
        assert whisper.text[0].isupper() and whisper.text.endswith("."), whisper


def envelope(pcm: bytes, rate: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Loudness every 10 ms: what was said, roughly, whatever the exact samples."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    hop = rate // 100
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    env: np.ndarray[Any, np.dtype[np.float64]] = np.sqrt((frames**2).mean(axis=1))
    return env


async def test_espeak_voice_comes_at_its_own_rate(
    wyoming: WyomingApp, registry: EngineRegistry
) -> None:
    # pocketsphinx recognizes espeak-ng's formant speech too poorly to judge it by transcript,
    # so compare with what the engine itself says for the same text at 22.05 kHz: the same
    # length (a wrong rate would stretch it) and the same loudness contour (garbled or
    # resampled audio would not follow it).
    text = sentences()[7]
    async with wyoming.client() as client:
        speech = await synthesize(client, text, voice="espeak-en-us")
    assert (speech.rate, speech.width, speech.channels) == (22050, 2, 1)
    engine, voice = registry.voice("espeak-en-us")
    direct = await asyncio.to_thread(engine.synthesize, text, voice)
    assert direct.sample_rate == 22050
    ours, theirs = envelope(speech.pcm, 22050), envelope(direct.pcm, 22050)
    assert abs(len(ours) - len(theirs)) <= 0.1 * len(theirs), (len(ours), len(theirs))
    # Leading silence is trimmed to a short lead-in: align on the best lag before comparing.
    best = 0.0
    for lag in range(-30, 31):
        a = ours[max(0, lag) :]
        b = theirs[max(0, -lag) :]
        n = min(len(a), len(b))
        best = max(best, float(np.corrcoef(a[:n], b[:n])[0, 1]))
    assert best > 0.9, best


async def test_a_voice_chosen_by_language(wyoming: WyomingApp) -> None:
    async with wyoming.client() as client:
        await client.write_event(
            Synthesize(text="Hallo Welt.", voice=SynthesizeVoice(language="de_DE")).event()
        )
        speech = await collect_speech(client, until="audio-stop")
    # Only espeak-ng speaks German here, at its native rate.
    assert speech.rate == 22050 and len(speech.pcm) > 0.3 * 2 * 22050


async def test_streaming_synthesis(wyoming: WyomingApp) -> None:
    refs = sentences()[10:13]
    text = " ".join(refs)
    words = text.split(" ")
    async with wyoming.client() as client:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="slt")).event())
        # Pieces the way a language model streams them: words, sometimes split mid-word.
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            half = len(piece) // 2
            await client.write_event(SynthesizeChunk(text=piece[:half]).event())
            await client.write_event(SynthesizeChunk(text=piece[half:]).event())
        # The full text once more, for older servers: a streaming server must not speak it.
        await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(name="slt")).event())
        await client.write_event(SynthesizeStop().event())
        speech = await collect_speech(client, until="synthesize-stopped")
        assert speech.events.count("audio-start") == speech.events.count("audio-stop")
        assert speech.groups >= 2  # audio went out clause by clause, not all at the end
        assert speech.events[-2:] == ["audio-stop", "synthesize-stopped"]
        result = await transcribe(client, silence(0.3) + speech.pcm + silence(0.5), 16000)
    wer = corpus_wer([text], [result.text])
    assert wer <= MAX_WER, (text, result.text)


async def stt_records_after(app: WyomingApp, last_id: int) -> list[tuple[int, float]]:
    rt = app.app
    workspace = await find_workspace(rt[POOL], USAGE_WORKSPACE)
    rows = await rt[POOL].fetch(
        "SELECT id, quantity FROM usage_records WHERE workspace_id = $1 "
        "AND kind = 'stt_seconds' AND id > $2 ORDER BY id",
        workspace,
        last_id,
    )
    return [(row["id"], float(row["quantity"])) for row in rows]


def active_stt(app: WyomingApp) -> float:
    value = app.app[METRICS].registry.get_sample_value(
        "voicestream_active_streams", {"kind": "wyoming_stt"}
    )
    return value or 0.0


async def test_each_transcription_is_counted_once(wyoming: WyomingApp) -> None:
    # Two utterances per request, so transcript chunks leave in more than one batch: the
    # active-streams gauge and the usage record must follow streams, not batches.
    async with wyoming.client() as client:
        first = await synthesize(client, "The weather is nice today.")
        second = await synthesize(client, "We are going to the beach this weekend.")
    clip = silence(0.3) + first.pcm + silence(1.2) + second.pcm + silence(0.6)
    clip_seconds = len(clip) / 2 / 16000
    gauge_before = active_stt(wyoming)
    old = await stt_records_after(wyoming, 0)
    last_id = old[-1][0] if old else 0
    results: list[Recognition] = []
    async with wyoming.client() as client:
        for _ in range(2):  # one connection, request after request
            results.append(await transcribe(client, clip, 16000))
    async with wyoming.client() as client:
        results.append(await transcribe(client, clip, 16000))
    for result in results:
        assert len(result.chunks) >= 2, result  # the two utterances came as separate chunks
        assert result.order.count("transcript-start") == 1, result.order

    async def three_records() -> list[tuple[int, float]] | None:
        records = await stt_records_after(wyoming, last_id)
        return records if len(records) >= len(results) else None

    records = await eventually(three_records, within=30.0, what="a usage record per request")
    assert [seconds for _, seconds in records] == pytest.approx([clip_seconds] * 3, abs=0.01)
    await eventually(lambda: active_stt(wyoming) == gauge_before, what="the gauge back down")
    # Nothing else arrives late: exactly one record per transcription.
    assert len(await stt_records_after(wyoming, last_id)) == len(results)


# ---- bad input ------------------------------------------------------------------------------


async def raw_exchange(port: int, data: bytes, *, eof: bool = False) -> list[Event]:
    """Write raw bytes; every event until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        if eof:
            writer.write_eof()
        await writer.drain()
        events: list[Event] = []
        while (event := await asyncio.wait_for(async_read_event(reader), READ_TIMEOUT)) is not None:
            events.append(event)
        return events
    finally:
        writer.close()
        await writer.wait_closed()


def the_error(events: list[Event]) -> Error:
    assert [e.type for e in events] == ["error"], events
    return Error.from_event(events[0])


@pytest.mark.parametrize(
    ("data", "code", "mentions"),
    [
        (b"{this is not json}\n", "invalid_json", "JSON"),
        (b'{"data": {}}\n', "protocol_error", '"type"'),
        (b'{"type": "audio-chunk", "payload_length": -1}\n', "protocol_error", "payload_length"),
        (b'{"type": "audio-chunk", "payload_length": 99999999}\n', "payload_too_large", "limit"),
        (b'{"type": "ping", "data_length": 4}\nnope', "invalid_json", "JSON"),
        (b'{"type": "x", "pad": "' + b"y" * 70_000, "payload_too_large", "header"),
    ],
    ids=["not-json", "no-type", "negative-length", "huge-payload", "bad-data", "endless-header"],
)
async def test_bad_framing_gets_an_error_then_close(
    wyoming: WyomingApp, data: bytes, code: str, mentions: str
) -> None:
    err = the_error(await raw_exchange(wyoming.port, data))
    assert err.code == code and mentions in err.text


async def test_truncated_event_at_eof_gets_an_error(wyoming: WyomingApp) -> None:
    data = b'{"type": "audio-chunk", "payload_length": 2048}\n' + bytes(100)
    err = the_error(await raw_exchange(wyoming.port, data, eof=True))
    assert err.code == "protocol_error" and "stream ended inside" in err.text


async def test_events_before_broken_framing_are_answered(wyoming: WyomingApp) -> None:
    events = await raw_exchange(wyoming.port, b'{"type": "ping"}\n{broken\n')
    assert [e.type for e in events] == ["pong", "error"]


async def test_unknown_events_get_an_error_and_the_connection_stays(wyoming: WyomingApp) -> None:
    async with wyoming.client() as client:
        for kind in ("x-no-such-event", "detect", "transcript"):
            await client.write_event(Event(type=kind, data={"text": "?"}))
            event = await read(client)
            assert Error.is_type(event.type)
            err = Error.from_event(event)
            assert err.code == "protocol_error" and kind in err.text
        speech = await synthesize(client, "Still here.")
        assert speech.pcm
        await client.write_event(Describe().event())
        assert Info.is_type((await read(client)).type)


def _audio_start(rate: int = 16000, width: int = 2, channels: int = 1) -> Event:
    return AudioStart(rate=rate, width=width, channels=channels).event()


BAD_REQUESTS: dict[str, tuple[list[Event], str]] = {
    "unknown voice": (
        [Synthesize(text="Hi.", voice=SynthesizeVoice(name="nobody")).event()],
        "unknown_voice",
    ),
    "language nobody speaks": (
        [Synthesize(text="Hi.", voice=SynthesizeVoice(language="tlh")).event()],
        "unknown_voice",
    ),
    "speaker": (
        [Synthesize(text="Hi.", voice=SynthesizeVoice(name="slt", speaker="2")).event()],
        "unknown_voice",
    ),
    "text not a string": ([Event("synthesize", {"text": 42})], "invalid_request"),
    "empty text": ([Synthesize(text="   ").event()], "empty_text"),
    "text too long": ([Synthesize(text="word " * 500).event()], "text_too_long"),
    "ssml": ([Event("synthesize", {"text": "<speak/>", "text_format": "ssml"})], "invalid_request"),
    "chunk without start": ([SynthesizeChunk(text="hi").event()], "protocol_error"),
    "stream too long": (
        [SynthesizeStart().event(), *[SynthesizeChunk(text=" " * 500).event()] * 5],
        "text_too_long",
    ),
    "transcribe german": ([Transcribe(language="de").event()], "invalid_request"),
    "unknown asr model": ([Transcribe(name="large-v3").event()], "invalid_request"),
    "unknown program": ([Event("select-program", {"name": "piper"})], "invalid_request"),
    "audio-chunk without audio-start": (
        [AudioChunk(rate=16000, width=2, channels=1, audio=bytes(64)).event()],
        "protocol_error",
    ),
    "8-bit audio": ([_audio_start(width=1)], "unsupported_format"),
    "six channels": ([_audio_start(channels=6)], "unsupported_format"),
    "rate as string": (
        [Event("audio-start", {"rate": "16k", "width": 2, "channels": 1})],
        "invalid_request",
    ),
    "chunk format differs": (
        [_audio_start(), AudioChunk(rate=8000, width=2, channels=1, audio=bytes(64)).event()],
        "unsupported_format",
    ),
    "half a frame": (
        [_audio_start(), AudioChunk(rate=16000, width=2, channels=1, audio=bytes(63)).event()],
        "invalid_audio",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
async def test_a_failed_request_gets_an_error_then_close(wyoming: WyomingApp, case: str) -> None:
    events, code = BAD_REQUESTS[case]
    async with wyoming.client() as client:
        for event in events:
            await client.write_event(event)
        replies: list[Event] = []
        while (event := await client.read_event()) is not None:
            replies.append(event)
    # A streaming request may have produced audio before it failed; the error comes last.
    assert replies and Error.is_type(replies[-1].type), replies
    err = Error.from_event(replies[-1])
    assert err.code == code, err
    assert err.text
    assert all(not Error.is_type(e.type) for e in replies[:-1])


# ---- shutdown -------------------------------------------------------------------------------


async def test_shutdown_closes_connections(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    started = await _start(embedded_services, registry, tmp_path_factory.mktemp("wyoming-stop"))
    stopped = False
    try:
        async with started.client() as idle, started.client() as busy:
            await idle.write_event(Describe().event())
            assert Info.is_type((await read(idle)).type)
            # One connection mid-transcription, with audio still expected.
            await busy.write_event(_audio_start())
            await busy.write_event(
                AudioChunk(rate=16000, width=2, channels=1, audio=silence(0.5)).event()
            )
            await busy.write_event(Ping(text="sync").event())
            assert Pong.is_type((await read(busy)).type)
            await started.runner.cleanup()
            stopped = True
            assert await idle.read_event() is None
            assert await busy.read_event() is None
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", started.port)
    finally:
        if not stopped:
            await started.runner.cleanup()


def test_no_listener_without_a_port(server: Any) -> None:
    assert server.settings.wyoming_port is None
    assert WYOMING not in server.app


async def test_a_text_the_wyoming_workspace_blocks_is_refused(wyoming: WyomingApp) -> None:
    """Wyoming's speech meets its workspace's content policy like every other TTS route."""
    rt = wyoming.app
    workspace = await find_workspace(rt[POOL], USAGE_WORKSPACE)
    assert workspace is not None
    policy = StoredPolicy(("zorp",), (), (), 0.5, 0.8, None, None)
    # Through the server's moderator, as the admin route does: its cached policy is dropped.
    await rt[MODERATOR].set_policy(workspace, policy)
    async with wyoming.client() as client:
        await client.write_event(
            Synthesize(text="Say Zorp now.", voice=SynthesizeVoice(name="slt")).event()
        )
        event = await client.read_event()
    assert event is not None and Error.is_type(event.type), event
    assert Error.from_event(event).code == "content_blocked"
