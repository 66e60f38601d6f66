"""The official ElevenLabs SDK against ``/elevenlabs`` on a real server, checked by content."""

from __future__ import annotations

import base64
import io
import json
import struct
import wave
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import httpx
import numpy as np
import pytest
from elevenlabs import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError

from helpers import corpus_wer, normalize, sentences
from voicestream.media.formats import SUPPORTED_FORMATS, parse_format
from voicestream.transports.elevenlabs_rest import PREFIX

RunningServer = Any  # tests/conftest.py's RunningServer, reached through the fixture

TEXT = "Thanks for calling, how can I help you today?"
# The formats ElevenLabs names that our codecs make (aac/flac are ours only).
EL_FORMATS = [
    f for f in SUPPORTED_FORMATS if f.split("_")[0] in {"mp3", "pcm", "ulaw", "alaw", "opus", "wav"}
]


@pytest.fixture
def el_server(server: RunningServer) -> RunningServer:
    return server


@pytest.fixture
async def client(el_server: RunningServer) -> AsyncIterator[AsyncElevenLabs]:
    # Our own httpx client, so its connections are closed when the test ends.
    async with httpx.AsyncClient(timeout=60) as http:
        yield AsyncElevenLabs(
            base_url=f"{el_server.url}{PREFIX}", api_key=el_server.api_key, httpx_client=http
        )


async def _collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


def _decode_seconds(audio: bytes, fmt_name: str) -> float:
    """Duration of ``audio`` in ``fmt_name``, decoded independently of the server."""
    fmt = parse_format(fmt_name)
    if fmt.is_raw:
        return len(audio) / fmt.bytes_per_sample / fmt.sample_rate
    if fmt.codec == "wav":
        # A streamed WAV: the sizes in the header are "unknown" placeholders.
        assert audio[:4] == b"RIFF" and audio[8:16] == b"WAVEfmt "
        channels, rate = struct.unpack_from("<HI", audio, 22)
        assert (channels, rate) == (1, fmt.sample_rate)
        assert audio[36:40] == b"data"
        return (len(audio) - 44) / 2 / rate
    with av.open(io.BytesIO(audio)) as container:
        samples = 0
        rate = 0
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
    assert rate == fmt.sample_rate, (rate, fmt_name)
    return samples / rate


async def _transcribe(
    client: AsyncElevenLabs, audio: bytes, name: str = "a.mp3", **extra: Any
) -> Any:
    return await client.speech_to_text.convert(model_id="scribe_v1", file=(name, audio), **extra)


@pytest.mark.parametrize("fmt", EL_FORMATS)
async def test_convert_every_output_format(client: AsyncElevenLabs, fmt: str) -> None:
    audio = await _collect(
        client.text_to_speech.convert(
            "slt", text="Hello there.", model_id="eleven_flash_v2_5", output_format=fmt
        )
    )
    seconds = _decode_seconds(audio, fmt)
    assert 0.4 < seconds < 3.0, (fmt, seconds)
    if fmt.startswith("pcm_"):
        samples = np.frombuffer(audio, dtype="<i2")
        assert np.abs(samples.astype(np.int32)).max() > 1000  # speech, not silence


async def test_convert_default_mp3_says_the_text(client: AsyncElevenLabs) -> None:
    refs = sentences()[:4]
    hyps = []
    # The language as clients give it: none, ISO 639-3 (ElevenLabs' own), ISO 639-1, BCP-47.
    languages: list[dict[str, str]] = [{}, {"language_code": "eng"}, {"language_code": "en"}]
    languages.append({"language_code": "en-US"})
    for text, language in zip(refs, languages, strict=True):
        audio = await _collect(
            client.text_to_speech.convert(
                "slt",
                text=text,
                voice_settings={"stability": 0.5, "similarity_boost": 0.7},  # type: ignore[arg-type]
            )
        )
        with av.open(io.BytesIO(audio)) as container:
            assert container.format.name == "mp3"
        result = await _transcribe(client, audio, **language)
        assert result.language_code == "eng"
        words = [w for w in result.words if w.type == "word"]
        assert " ".join(w.text for w in words) == result.text
        assert all(w.start <= w.end for w in words)
        assert [w.start for w in words] == sorted(w.start for w in words)
        assert all(w.type == "spacing" for w in result.words[1::2])
        hyps.append(result.text)
    assert corpus_wer(refs, hyps) <= 0.25, list(zip(refs, hyps, strict=True))


async def test_stream_yields_audio_progressively(client: AsyncElevenLabs) -> None:
    text = "The weather is nice today. Please call me back tomorrow morning."
    chunks = [
        c async for c in client.text_to_speech.stream("rms", text=text, output_format="pcm_16000")
    ]
    audio = b"".join(chunks)
    assert len(chunks) > 1
    assert 2.0 < len(audio) / 2 / 16000 < 10.0
    result = await client.speech_to_text.convert(
        model_id="scribe_v1", file=("a.pcm", audio), file_format="pcm_s16le_16"
    )
    assert "weather" in normalize(result.text) or "tomorrow" in normalize(result.text)


async def test_convert_with_timestamps(client: AsyncElevenLabs) -> None:
    res = await client.text_to_speech.convert_with_timestamps(
        "slt", text=TEXT, output_format="pcm_22050"
    )
    audio = base64.b64decode(res.audio_base_64)
    duration = len(audio) / 2 / 22050
    a = res.alignment
    assert a is not None and res.normalized_alignment is not None
    assert "".join(a.characters) == TEXT
    starts, ends = a.character_start_times_seconds, a.character_end_times_seconds
    assert len(starts) == len(ends) == len(TEXT)
    assert starts == sorted(starts)
    assert all(s <= e for s, e in zip(starts, ends, strict=True))
    assert ends[-1] <= duration + 0.01
    # The second clause ("how can I…") starts well after the first's audio began.
    assert starts[TEXT.index("how")] > 0.3
    assert ends[-1] > duration * 0.5


async def test_voice_settings_speed_paces_a_piper_voice(client: AsyncElevenLabs) -> None:
    text = "The children are playing in the park."
    seconds: dict[float, float] = {}
    for speed in (1.0, 1.5):
        res = await client.text_to_speech.convert_with_timestamps(
            "en_US-joe-medium",
            text=text,
            output_format="pcm_22050",
            voice_settings={"speed": speed},  # type: ignore[arg-type]
        )
        audio = base64.b64decode(res.audio_base_64)
        seconds[speed] = len(audio) / 2 / 22050
        assert res.alignment is not None
        # Paced by the voice itself, so the timestamps are the faster audio's own.
        assert seconds[speed] - 0.3 < res.alignment.character_end_times_seconds[-1]
        assert res.alignment.character_end_times_seconds[-1] <= seconds[speed] + 0.01
        if speed != 1.0:
            wav = io.BytesIO()
            with wave.open(wav, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(22050)
                w.writeframes(audio)
            result = await _transcribe(client, wav.getvalue(), "fast.wav")
            assert normalize(result.text) == normalize(text), result.text
    # Faster by about the asked factor (the voice's own pacing is within ~15 % of it).
    assert 1 / 1.5 * 0.9 < seconds[1.5] / seconds[1.0] < 0.85, seconds


async def test_stream_with_timestamps_chunks_cover_text(client: AsyncElevenLabs) -> None:
    chunks = [
        c
        async for c in client.text_to_speech.stream_with_timestamps(
            "slt", text=TEXT, output_format="mp3_44100_128"
        )
    ]
    assert len(chunks) >= 2, "one line per clause"
    audio = b"".join(base64.b64decode(c.audio_base_64) for c in chunks)
    duration = _decode_seconds(audio, "mp3_44100_128")
    chars: list[str] = []
    starts: list[float] = []
    ends: list[float] = []
    for c in chunks:
        if c.alignment is not None:
            chars += c.alignment.characters
            starts += c.alignment.character_start_times_seconds
            ends += c.alignment.character_end_times_seconds
    assert "".join(chars) == TEXT
    assert starts == sorted(starts), "absolute times, increasing across chunks"
    assert ends[-1] <= duration + 0.1
    assert chunks[1].alignment is not None
    assert chunks[1].alignment.character_start_times_seconds[-1] > 0.3


async def test_voices_list_get_search(client: AsyncElevenLabs) -> None:
    all_voices = await client.voices.get_all()
    ids = [v.voice_id for v in all_voices.voices]
    assert {"slt", "rms"} <= set(ids)
    slt = await client.voices.get("slt")
    assert slt.voice_id == "slt" and slt.category == "premade" and slt.name
    first = await client.voices.search(page_size=2, include_total_count=True)
    assert len(first.voices) == 2 and first.has_more and first.total_count == len(ids)
    second = await client.voices.search(page_size=2, next_page_token=first.next_page_token)
    assert {v.voice_id for v in second.voices}.isdisjoint({v.voice_id for v in first.voices})
    found = await client.voices.search(search="slt")
    assert [v.voice_id for v in found.voices] == ["slt"]


async def test_models_list(client: AsyncElevenLabs) -> None:
    models = await client.models.list()
    by_id = {m.model_id: m for m in models}
    assert {"eleven_flash_v2_5", "eleven_multilingual_v2", "eleven_turbo_v2_5"} <= set(by_id)
    assert all(m.can_do_text_to_speech for m in models)
    assert by_id["eleven_multilingual_v2"].languages
    # And each model id is accepted by text-to-speech.
    audio = await _collect(
        client.text_to_speech.convert(
            "slt", text="Hi there.", model_id="eleven_turbo_v2_5", output_format="pcm_16000"
        )
    )
    assert len(audio) > 16000


async def test_user_and_subscription_count_characters(client: AsyncElevenLabs) -> None:
    before = await client.user.subscription.get()
    assert before.tier == "self-hosted" and before.character_limit > 10**8
    text = "Counting characters for billing."
    await _collect(client.text_to_speech.convert("slt", text=text, output_format="pcm_16000"))
    after = await client.user.subscription.get()
    assert after.character_count == before.character_count + len(text)
    user = await client.user.get()
    assert user.subscription is not None
    assert user.subscription.character_count == after.character_count
    assert user.user_id


@pytest.mark.parametrize(
    ("voice", "kwargs", "status"),
    [
        ("nobody", {"text": "Hello."}, 404),
        ("slt", {"text": ""}, 422),
        ("slt", {"text": "   "}, 422),
        ("slt", {"text": "x" * 2001}, 400),
        ("slt", {"text": "Hello.", "output_format": "mp3_1_1"}, 400),
        ("slt", {"text": "Hello.", "model_id": "no_such_model"}, 422),
        ("slt", {"text": "Hello.", "voice_settings": {"stability": 7}}, 422),
    ],
)
async def test_bad_tts_input_is_a_4xx_api_error(
    client: AsyncElevenLabs, voice: str, kwargs: dict[str, Any], status: int
) -> None:
    for call in (client.text_to_speech.convert, client.text_to_speech.stream):
        with pytest.raises(ApiError) as info:
            await _collect(call(voice, **kwargs))
        assert info.value.status_code == status, info.value.body
    with pytest.raises(ApiError) as info:
        await client.text_to_speech.convert_with_timestamps(voice, **kwargs)
    assert info.value.status_code == status
    with pytest.raises(ApiError) as info:
        async for _ in client.text_to_speech.stream_with_timestamps(voice, **kwargs):
            pass
    assert info.value.status_code == status


async def test_unknown_voice_has_elevenlabs_error_shape(client: AsyncElevenLabs) -> None:
    with pytest.raises(ApiError) as info:
        await client.voices.get("nobody")
    assert info.value.status_code == 404
    assert info.value.body["detail"]["status"] == "voice_not_found"
    assert "nobody" in info.value.body["detail"]["message"]


@pytest.mark.parametrize(
    ("file", "kwargs", "status"),
    [
        (b"this is not audio at all" * 50, {}, 400),
        (b"", {}, 400),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", {}, 400),
        (None, {}, 400),
        (b"\x00\x00" * 16000, {"language_code": "de"}, 422),
        (b"\x00\x00" * 16000, {"language_code": "deu"}, 422),
    ],
)
async def test_bad_stt_input_is_a_4xx_api_error(
    client: AsyncElevenLabs, file: bytes | None, kwargs: dict[str, Any], status: int
) -> None:
    args: dict[str, Any] = {"model_id": "scribe_v1", **kwargs}
    if file is not None:
        args["file"] = ("garbage.mp3", file)
    with pytest.raises(ApiError) as info:
        await client.speech_to_text.convert(**args)
    assert info.value.status_code == status, info.value.body


async def test_stt_unknown_model_and_null_fields(el_server: RunningServer) -> None:
    """The SDK's literal "null" form fields mean absent; an unknown model is a 422.

    ElevenLabs knows its Scribe ids; here an installed model's own name works too, and any
    other name (a text-to-speech model's id, as a confused client might send) is refused
    as ElevenLabs refuses it."""
    silence = io.BytesIO()
    with wave.open(silence, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * 16000)
    headers = {"xi-api-key": el_server.api_key}
    url = f"{el_server.url}{PREFIX}/v1/speech-to-text"
    async with aiohttp.ClientSession() as s:
        for model, expected in (("scribe_v1", 200), ("eleven_multilingual_v2", 422)):
            form = aiohttp.FormData()
            form.add_field("model_id", model)
            for name in ("language_code", "webhook_metadata", "entity_detection"):
                form.add_field(name, "null")
            form.add_field("file", silence.getvalue(), filename="s.wav")
            async with s.post(url, data=form, headers=headers) as r:
                body = await r.json()
                assert r.status == expected, body
        assert body["detail"][0]["loc"][-1] == "model_id"
        async with s.post(
            f"{el_server.url}{PREFIX}/v1/text-to-speech/slt",
            data=b"{not json",
            headers=headers,
        ) as r:
            assert r.status == 400
            assert json.loads(await r.text())["detail"]["status"] == "invalid_json"
