"""The official ``openai`` SDK against ``/openai/v1``: speech and transcriptions checked by what
the audio says, SSE streams, models, and bad input raising the SDK's own exception classes."""

from __future__ import annotations

import base64
import io
import json
import warnings
import wave
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import av
import openai
import pytest

from helpers import corpus_wer, normalize, sentences
from voicestream.rest.resources import REGISTRY

MAX_WER = 0.2
PCM_RATE = 24000

# What PyAV calls each response_format's container.
CONTAINERS = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav"}


@pytest.fixture
async def client(server: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/openai/v1", api_key=server.api_key, max_retries=0
    ) as c:
        yield c


def pcm_to_wav(pcm: bytes, rate: int = PCM_RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def decoded_seconds(audio: bytes) -> tuple[str, int, float]:
    """Container name, sample rate and duration, decoded by PyAV independently of the server."""
    with av.open(io.BytesIO(audio)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        samples = sum(frame.samples for frame in container.decode(stream))
        return container.format.name, rate, samples / rate


async def transcribe(client: openai.AsyncOpenAI, audio: bytes, name: str) -> str:
    result = await client.audio.transcriptions.create(model="whisper-1", file=(name, audio))
    return result.text


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
async def test_speech_every_format_says_the_text(client: openai.AsyncOpenAI, fmt: str) -> None:
    refs = sentences()[:6]
    hyps: list[str] = []
    for i, text in enumerate(refs):
        voice = ("alloy", "onyx", "fable", "echo", "nova", "slt")[i]
        response = await client.audio.speech.create(
            model="tts-1", voice=voice, input=text, response_format=fmt
        )
        audio = response.content
        if fmt == "pcm":
            assert response.response.headers["content-type"] == "audio/pcm"
            assert len(audio) % 2 == 0
            seconds = len(audio) / 2 / PCM_RATE
            upload = pcm_to_wav(audio)
        else:
            container, rate, seconds = decoded_seconds(audio)
            assert container == CONTAINERS[fmt]
            assert rate in (24000, 44100, 48000)
            upload = audio
        assert 0.8 < seconds < 6.0, seconds
        hyps.append(await transcribe(client, upload, f"speech.{'wav' if fmt == 'pcm' else fmt}"))
    wer = corpus_wer(refs, hyps)
    print(f"OpenAI speech {fmt} round-trip WER: {wer:.3f}")
    assert wer <= MAX_WER, list(zip(refs, hyps, strict=True))


async def test_speech_default_format_is_mp3_and_accepts_our_voice_ids(
    client: openai.AsyncOpenAI,
) -> None:
    response = await client.audio.speech.create(
        model="gpt-4o-mini-tts",
        voice="rms",  # type: ignore[arg-type]  # our own id; the SDK's Literal does not know it
        input="Good morning.",
        instructions="Speak warmly.",
    )
    assert response.response.headers["content-type"] == "audio/mpeg"
    assert decoded_seconds(response.content)[0] == "mp3"
    assert response.response.headers["x-voice-id"] == "rms"


async def test_speech_streams_in_chunks(client: openai.AsyncOpenAI) -> None:
    text = " ".join(sentences()[:4])
    chunks: list[bytes] = []
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="coral", input=text, response_format="pcm"
    ) as response:
        assert response.status_code == 200
        async for chunk in response.iter_bytes():
            chunks.append(chunk)
    assert len(chunks) >= 2, "audio leaves clause by clause, not all at the end"
    hyp = await transcribe(client, pcm_to_wav(b"".join(chunks)), "s.wav")
    assert corpus_wer([text], [hyp]) <= MAX_WER, hyp


async def test_speech_sse(client: openai.AsyncOpenAI) -> None:
    text = "The meeting has been moved to next week. Please call me back tomorrow morning."
    # flite's slt: the same text gives the same bytes (a Piper voice varies its timing).
    response = await client.audio.speech.create(
        model="tts-1", voice="slt", input=text, response_format="pcm", stream_format="sse"
    )
    assert response.response.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line[len("data: ") :])
        for line in response.content.decode().split("\n")
        if line.startswith("data: ")
    ]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert len(events) >= 3
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert usage["input_tokens"] == len(text)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert usage["output_tokens"] == pytest.approx(len(pcm) / 2 / PCM_RATE * 50, abs=2)
    # The events carry exactly the audio a plain request gets (synthesis is repeatable): nothing
    # lost, duplicated or reordered between the deltas.
    plain = await client.audio.speech.create(
        model="tts-1", voice="slt", input=text, response_format="pcm"
    )
    assert pcm == plain.content
    # And it is that speech.
    hyp = await transcribe(client, pcm_to_wav(pcm), "s.wav")
    assert corpus_wer([text], [hyp]) <= MAX_WER, hyp
    assert "the meeting has been moved to next week" in normalize(hyp), hyp


async def test_speed_changes_duration_and_stays_intelligible(client: openai.AsyncOpenAI) -> None:
    text = "The children are playing in the park."
    seconds: dict[float, float] = {}
    for speed in (1.0, 0.5, 0.75, 1.5, 2.0):
        response = await client.audio.speech.create(
            model="tts-1", voice="alloy", input=text, response_format="wav", speed=speed
        )
        seconds[speed] = decoded_seconds(response.content)[2]
        if speed in (0.75, 1.5):
            # atempo keeps the pitch; pocketsphinx copes with moderate tempo changes (at 0.5
            # and 2.0 it loses most words, though the audio is still clear to a listener).
            hyp = await transcribe(client, response.content, "s.wav")
            assert corpus_wer([text], [hyp]) <= 0.4, (speed, hyp)
    print(f"speech durations by speed: {seconds}")
    for speed, duration in seconds.items():
        assert duration / seconds[1.0] == pytest.approx(1 / speed, rel=0.1), (speed, seconds)


async def test_openai_voice_names_are_spoken_by_the_piper_voice(
    client: openai.AsyncOpenAI,
) -> None:
    for name in ("alloy", "onyx", "nova"):
        raw = await client.audio.speech.with_raw_response.create(
            model="tts-1", voice=name, input="Hello there.", response_format="wav"
        )
        # The packaged Piper voice is the only one: every OpenAI name is it (flite before).
        assert raw.headers["x-voice-id"] == "en_US-joe-medium", name
    # Our own ids still pick exactly that voice.
    raw = await client.audio.speech.with_raw_response.create(
        model="tts-1", voice="slt", input="Hello there.", response_format="wav"
    )
    assert raw.headers["x-voice-id"] == "slt"


async def test_extreme_speeds_are_accepted(client: openai.AsyncOpenAI) -> None:
    # A whole sentence: alloy is a Piper voice, whose timing varies a little from run to run.
    text = "Thank you for calling, have a nice day."
    base = await client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm"
    )
    for speed in (0.25, 4.0):
        response = await client.audio.speech.create(
            model="tts-1", voice="alloy", input=text, response_format="pcm", speed=speed
        )
        ratio = len(response.content) / len(base.content)
        assert ratio == pytest.approx(1 / speed, rel=0.15), (speed, ratio)


@pytest.fixture(scope="module")
async def spoken(server: Any) -> tuple[str, bytes]:
    """Two sentences with a second of silence between them, as a WAV file."""
    first, second = "The weather is nice today.", "We are going to the beach this weekend."
    async with openai.AsyncOpenAI(
        base_url=f"{server.url}/openai/v1", api_key=server.api_key, max_retries=0
    ) as c:
        pieces = [
            await c.audio.speech.create(
                model="tts-1", voice="alloy", input=t, response_format="pcm"
            )
            for t in (first, second)
        ]
    silence = b"\0\0" * PCM_RATE
    return f"{first} {second}", pcm_to_wav(pieces[0].content + silence + pieces[1].content)


async def test_transcription_text_formats(
    client: openai.AsyncOpenAI, spoken: tuple[str, bytes]
) -> None:
    text, audio = spoken
    as_json = await client.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio))
    assert corpus_wer([text], [as_json.text]) <= MAX_WER, as_json.text
    plain = await client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("a.wav", audio), response_format="text", language="en"
    )
    assert isinstance(plain, str)
    assert normalize(plain) == normalize(as_json.text)
    srt = await client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", audio), response_format="srt"
    )
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    vtt = await client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", audio), response_format="vtt"
    )
    assert vtt.startswith("WEBVTT\n") and " --> " in vtt
    assert "beach" in vtt.lower() and "beach" in srt.lower()


async def test_transcription_verbose_json_with_words_and_segments(
    client: openai.AsyncOpenAI, spoken: tuple[str, bytes]
) -> None:
    text, audio = spoken
    result = await client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", audio),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert result.language == "english"
    assert corpus_wer([text], [result.text]) <= MAX_WER, result.text
    assert result.duration == pytest.approx(decoded_seconds(audio)[2], abs=0.05)
    assert result.segments and len(result.segments) >= 2, "two sentences, two VAD segments"
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    assert " ".join(s.text for s in result.segments) == result.text
    assert result.words
    assert " ".join(w.word for w in result.words) == result.text
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= result.duration + 0.01 for w in result.words)
    beach = next(w for w in result.words if w.word == "beach")
    assert beach.start > result.segments[0].end  # in the second sentence
    # Words only when asked for; segments by default.
    plain = await client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", audio), response_format="verbose_json"
    )
    assert plain.segments and plain.words is None


async def test_transcription_stream_events(
    client: openai.AsyncOpenAI, spoken: tuple[str, bytes]
) -> None:
    text, audio = spoken
    stream = await client.audio.transcriptions.create(
        model="gpt-4o-mini-transcribe", file=("a.wav", audio), stream=True
    )
    events = [event async for event in stream]
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) >= 2, "one delta per VAD segment, sent as it is decoded"
    done = events[-1]
    assert done.type == "transcript.text.done"
    assert "".join(d.delta for d in deltas) == done.text
    assert corpus_wer([text], [done.text]) <= MAX_WER, done.text


async def test_models_list_and_retrieve(client: openai.AsyncOpenAI) -> None:
    ids = {m.id async for m in client.models.list()}
    assert {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "whisper-1", "gpt-4o-transcribe"} <= ids
    model = await client.models.retrieve("whisper-1")
    assert (model.id, model.object, model.owned_by) == ("whisper-1", "model", "voicestream")
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("gpt-5")
    assert info.value.status_code == 404


async def test_any_model_name_is_accepted(
    client: openai.AsyncOpenAI, spoken: tuple[str, bytes]
) -> None:
    # Pipecat's default is "gpt-transcribe"; names OpenAI has not invented yet work too, and
    # every name maps onto the same best installed engine, so the transcript is the same.
    text, audio = spoken
    reference = await client.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio))
    for model in ("gpt-transcribe", "gpt-9o-transcribe-preview"):
        result = await client.audio.transcriptions.create(model=model, file=("a.wav", audio))
        assert normalize(result.text) == normalize(reference.text), model
    assert corpus_wer([text], [reference.text]) <= MAX_WER, reference.text
    speech = await client.audio.speech.create(
        model="gpt-9o-mini-tts", voice="alloy", input="Thank you.", response_format="flac"
    )
    assert 0.3 < decoded_seconds(speech.content)[2] < 3.0


# ---------------------------------------------------------------------------- translations


async def translate(client: openai.AsyncOpenAI, **kwargs: Any) -> Any:
    # The SDK marks the translations API deprecated (it still sends it): only the warning goes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return await client.audio.translations.create(**kwargs)


def _no_multilingual_model(server: Any) -> bool:
    registry = server.app[REGISTRY]
    return not any(getattr(e, "multilingual", False) is True for e in registry.stt_engines())


async def test_translation_without_a_multilingual_model_says_how_to_add_one(
    client: openai.AsyncOpenAI, spoken: tuple[str, bytes], server: Any
) -> None:
    if not _no_multilingual_model(server):
        pytest.skip("a multilingual model is installed here")
    for fmt in ("json", "text", "verbose_json"):
        with pytest.raises(openai.BadRequestError) as info:
            await translate(
                client, model="whisper-1", file=("a.wav", spoken[1]), response_format=fmt
            )
        assert info.value.status_code == 400
        assert info.value.code == "model_not_installed" and info.value.param == "model"
        assert "multilingual" in info.value.message
        assert "VOICESTREAM_MODELS_DIR" in info.value.message


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"file": ("x.wav", b"")}, "file"),
        ({"response_format": "xml"}, "response_format"),
        ({"temperature": 7.0}, "temperature"),
        ({"model": ""}, "model"),
    ],
)
async def test_translation_bad_input_raises_bad_request(
    client: openai.AsyncOpenAI, spoken: tuple[str, bytes], kwargs: dict[str, Any], param: str
) -> None:
    args: dict[str, Any] = {"model": "whisper-1", "file": ("a.wav", spoken[1]), **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        await translate(client, **args)
    assert info.value.status_code == 400
    assert info.value.param == param
    assert info.value.code != "model_not_installed"


async def test_translation_without_a_file_part(server: Any) -> None:
    url = f"{server.url}/openai/v1/audio/translations"
    async with aiohttp.ClientSession(headers=server.headers()) as s:
        form = aiohttp.FormData()
        form.add_field("model", "whisper-1")
        async with s.post(url, data=form) as r:
            assert r.status == 400
            err = (await r.json())["error"]
            assert (err["param"], err["type"]) == ("file", "invalid_request_error")
        async with s.post(url, data=b"raw bytes") as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "file"
    async with aiohttp.ClientSession() as s, s.post(url, data=b"x") as r:
        assert r.status == 401


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"voice": "nobody"}, "voice"),
        ({"response_format": "ogg"}, "response_format"),
        ({"input": ""}, "input"),
        ({"input": "word " * 900}, "input"),  # past the server's 2000-character test limit
        ({"model": ""}, "model"),
        ({"speed": 9.0}, "speed"),
        ({"stream_format": "ws"}, "stream_format"),
    ],
)
async def test_speech_bad_input_raises_bad_request(
    client: openai.AsyncOpenAI, overrides: dict[str, Any], param: str
) -> None:
    kwargs: dict[str, Any] = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **overrides}
    with pytest.raises(openai.BadRequestError) as info:
        await client.audio.speech.create(**kwargs)
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict)
    assert body["param"] == param and body["type"] == "invalid_request_error"
    assert info.value.param == param


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"file": ("x.mp3", b"this is not audio at all" * 20)}, "file"),
        ({"file": ("x.wav", b"")}, "file"),
        ({"model": "m" * 300}, "model"),
        ({"response_format": "xml"}, "response_format"),
        ({"language": "de"}, "language"),
        ({"timestamp_granularities": ["word"]}, "timestamp_granularities"),
    ],
)
async def test_transcription_bad_input_raises_bad_request(
    client: openai.AsyncOpenAI,
    spoken: tuple[str, bytes],
    kwargs: dict[str, Any],
    param: str,
) -> None:
    args: dict[str, Any] = {"model": "whisper-1", "file": ("a.wav", spoken[1]), **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        await client.audio.transcriptions.create(**args)
    assert info.value.status_code == 400
    assert info.value.param == param


async def test_raw_requests_get_openai_shaped_errors(server: Any) -> None:
    url = f"{server.url}/openai/v1/audio"
    async with aiohttp.ClientSession(headers=server.headers()) as s:
        form = aiohttp.FormData()
        form.add_field("model", "whisper-1")
        async with s.post(f"{url}/transcriptions", data=form) as r:
            assert r.status == 400
            err = (await r.json())["error"]
            assert (err["param"], err["type"]) == ("file", "invalid_request_error")
        async with s.post(f"{url}/transcriptions", data=b"raw bytes") as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "file"
        truncated = b'--abc\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1'
        for content_type, data in (
            ("multipart/form-data", b"--abc\r\ngarbage"),
            ("multipart/form-data; boundary=xyz", b"--abc\r\ngarbage"),
            ("multipart/form-data; boundary=abc", truncated),
        ):
            async with s.post(
                f"{url}/transcriptions", data=data, headers={"Content-Type": content_type}
            ) as r:
                assert r.status == 400, (content_type, await r.text())
                assert (await r.json())["error"]["type"] == "invalid_request_error"
        async with s.post(f"{url}/speech", data=b"{not json") as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "invalid_json"
        async with s.post(f"{url}/speech", json=["a list"]) as r:
            assert r.status == 400
        async with s.post(f"{url}/speech", json={"model": "tts-1", "input": "Hi."}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "voice"
        # Only punctuation: nothing to say, an empty but valid stream (and a done event).
        payload = {"model": "tts-1", "input": "...", "voice": "alloy", "stream_format": "sse"}
        async with s.post(f"{url}/speech", json=payload) as r:
            assert r.status == 200
            body = await r.text()
            assert json.loads(body.removeprefix("data: "))["type"] == "speech.audio.done"
    async with aiohttp.ClientSession() as s, s.get(f"{server.url}/openai/v1/models") as r:
        assert r.status == 401  # a key is required here as everywhere


async def test_oversized_upload_is_413(client: openai.AsyncOpenAI, server: Any) -> None:
    big = b"\0" * (server.settings.max_upload_bytes + 1024)
    with pytest.raises(openai.APIStatusError) as info:
        await client.audio.transcriptions.create(model="whisper-1", file=("a.wav", big))
    assert info.value.status_code == 413
