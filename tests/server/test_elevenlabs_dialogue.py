"""ElevenLabs' text-to-dialogue through the official SDK on a real server, checked by content:
each input in its own voice, in order, at the output format's rate, with a pause between turns."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from elevenlabs import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError

from helpers import corpus_wer, normalize, sentences
from voicestream.transports.elevenlabs_rest import PREFIX

RunningServer = Any  # tests/conftest.py's RunningServer, reached through the fixture


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[AsyncElevenLabs]:
    # Our own httpx client, so its connections are closed when the test ends.
    async with httpx.AsyncClient(timeout=60) as http:
        yield AsyncElevenLabs(
            base_url=f"{server.url}{PREFIX}", api_key=server.api_key, httpx_client=http
        )


async def _collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


async def _transcribe(client: AsyncElevenLabs, pcm16k: bytes) -> str:
    result = await client.speech_to_text.convert(
        model_id="scribe_v1", file=("a.pcm", pcm16k), file_format="pcm_s16le_16"
    )
    return result.text


def _seconds(pcm: bytes, rate: int) -> float:
    return len(pcm) / 2 / rate


async def test_dialogue_with_timestamps_two_voices(client: AsyncElevenLabs) -> None:
    first, second = sentences()[0], sentences()[1]
    before = (await client.user.subscription.get()).character_count or 0
    res = await client.text_to_dialogue.convert_with_timestamps(
        inputs=[{"text": first, "voice_id": "slt"}, {"text": second, "voice_id": "rms"}],
        model_id="eleven_v3",
        output_format="pcm_16000",
        settings={"stability": 0.5},
    )
    audio = base64.b64decode(res.audio_base_64)
    duration = _seconds(audio, 16000)
    assert 2.5 < duration < 10, duration
    a = res.alignment
    assert a is not None and res.normalized_alignment is not None
    assert "".join(a.characters) == first + second
    starts = a.character_start_times_seconds
    assert starts == sorted(starts) and a.character_end_times_seconds[-1] <= duration + 0.05
    one, two = res.voice_segments
    assert (one.voice_id, one.dialogue_input_index) == ("slt", 0)
    assert (two.voice_id, two.dialogue_input_index) == ("rms", 1)
    assert (one.character_start_index, one.character_end_index) == (0, len(first))
    assert (two.character_start_index, two.character_end_index) == (len(first), len(a.characters))
    assert one.start_time_seconds < one.end_time_seconds
    assert one.end_time_seconds + 0.2 <= two.start_time_seconds < two.end_time_seconds
    assert abs(two.end_time_seconds - duration) < 0.15
    # Each turn, cut out by its segment's times, says its own input.
    halves = []
    for seg in (one, two):
        lo = int(seg.start_time_seconds * 16000) * 2
        hi = int(seg.end_time_seconds * 16000) * 2
        halves.append(await _transcribe(client, audio[lo:hi]))
    assert corpus_wer([first, second], halves) <= 0.35, halves
    assert corpus_wer([first, second], halves) < corpus_wer([second, first], halves)
    after = (await client.user.subscription.get()).character_count or 0
    assert after == before + len(first) + len(second)


async def test_dialogue_mixes_voices_of_different_rates(client: AsyncElevenLabs) -> None:
    """flite speaks at 16 kHz and espeak-ng at 22.05 kHz: both land at 24 kHz, in full."""
    first, second = "Good morning.", "Hello, how are you?"
    fmt = "pcm_24000"
    pairs = [("slt", first), ("espeak-en-us", second)]
    alone = [
        _seconds(await _collect(client.text_to_speech.convert(v, text=t, output_format=fmt)), 24000)
        for v, t in pairs
    ]
    chunks = [
        c
        async for c in client.text_to_dialogue.stream(
            inputs=[{"text": t, "voice_id": v} for v, t in pairs], output_format=fmt
        )
    ]
    assert len(chunks) >= 2, "streamed, not made whole first"
    together = _seconds(b"".join(chunks), 24000)
    # Each voice at its own length (a wrong rate would stretch or squeeze it), plus the pause.
    if abs(together - (sum(alone) + 0.25)) >= 0.15:
        pytest.fail(f"{together=} {alone=}\n" + await _explain(client, pairs, fmt))


async def _explain(client: AsyncElevenLabs, pairs: list[tuple[str, str]], fmt: str) -> str:
    """Which side is off when the lengths disagree: each word's time in a single-voice answer
    (a clause the engine dropped shows as words of no length) and the dialogue's turns."""
    lines = []
    for voice, text in pairs:
        res = await client.text_to_speech.convert_with_timestamps(
            voice, text=text, output_format=fmt
        )
        a = res.alignment
        assert a is not None
        times = zip(a.character_start_times_seconds, a.character_end_times_seconds, strict=True)
        words = [f"{c}{s:.2f}-{e:.2f}" for c, (s, e) in zip(a.characters, times, strict=True)]
        seconds = _seconds(base64.b64decode(res.audio_base_64), 24000)
        lines.append(f"{voice} alone, again: {seconds:.3f} s; {' '.join(words)}")
    res = await client.text_to_dialogue.convert_with_timestamps(
        inputs=[{"text": t, "voice_id": v} for v, t in pairs], output_format=fmt
    )
    turns = [(s.voice_id, s.start_time_seconds, s.end_time_seconds) for s in res.voice_segments]
    lines.append(f"dialogue, again: {turns}")
    return "\n".join(lines)


async def test_dialogue_default_mp3_says_both_turns(client: AsyncElevenLabs) -> None:
    lines = sentences()[2:4]
    audio = await _collect(
        client.text_to_dialogue.convert(
            inputs=[{"text": lines[0], "voice_id": "rms"}, {"text": lines[1], "voice_id": "slt"}]
        )
    )
    assert audio[:3] == b"ID3" or audio[0] == 0xFF, "MP3 by default"
    result = await client.speech_to_text.convert(model_id="scribe_v1", file=("d.mp3", audio))
    heard = normalize(result.text).split()
    assert {"table", "people"} & set(heard) and {"meeting", "week"} & set(heard), heard


def _wav_samples(data: bytes) -> int:
    """Frames as Python's ``wave`` reads them from the header, checked against the bytes."""
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        frames = w.getnframes()
        assert len(w.readframes(frames)) == 2 * frames
    return frames


async def test_whole_dialogue_wav_has_real_sizes(client: AsyncElevenLabs) -> None:
    """The non-streaming routes answer whole files, so the header's sizes are the real ones
    (a stream's 0xFFFFFFFF makes ``wave`` report 2**31 - 1 frames)."""
    inputs = [{"text": sentences()[0], "voice_id": "slt"}, {"text": "Fine.", "voice_id": "rms"}]
    converted = await _collect(
        client.text_to_dialogue.convert(inputs=inputs, output_format="wav_16000")
    )
    samples = (len(converted) - 44) // 2
    assert samples > 16000, len(converted)
    assert _wav_samples(converted) == samples
    timed = await client.text_to_dialogue.convert_with_timestamps(
        inputs=inputs, output_format="wav_16000"
    )
    audio = base64.b64decode(timed.audio_base_64)
    assert _wav_samples(audio) == (len(audio) - 44) // 2 == samples


async def test_dialogue_stream_with_timestamps_lines(client: AsyncElevenLabs) -> None:
    first, second = "Hi there. How are you?", "Fine, thanks."
    lines = [
        c
        async for c in client.text_to_dialogue.stream_with_timestamps(
            inputs=[{"text": first, "voice_id": "slt"}, {"text": second, "voice_id": "rms"}],
            output_format="pcm_16000",
        )
    ]
    assert len(lines) >= 3, "one line per clause"
    chars: list[str] = []
    starts: list[float] = []
    voices = []
    for line in lines:
        if line.alignment is None:
            continue
        chars += line.alignment.characters
        starts += line.alignment.character_start_times_seconds
        (seg,) = line.voice_segments
        assert (seg.character_start_index, seg.character_end_index) == (
            0,
            len(line.alignment.characters),
        )
        voices.append(seg.voice_id)
    assert "".join(chars) == first + second
    assert starts == sorted(starts), "dialogue time, increasing across lines"
    assert voices == sorted(voices, key=["slt", "rms"].index) and set(voices) == {"slt", "rms"}


@pytest.mark.parametrize(
    ("kwargs", "status", "where"),
    [
        ({"inputs": [{"text": "Hi.", "voice_id": "nobody"}]}, 404, "voice_not_found"),
        ({"inputs": []}, 422, "inputs"),
        (
            {"inputs": [{"text": "Hi.", "voice_id": "slt"}, {"text": " ", "voice_id": "rms"}]},
            422,
            "text",
        ),
        ({"inputs": [{"text": "x" * 1500, "voice_id": "slt"}] * 2}, 400, "text_too_long"),
        ({"inputs": [{"text": "Hi.", "voice_id": f"v{i}"} for i in range(11)]}, 422, "inputs"),
        ({"inputs": [{"text": "Hi.", "voice_id": "slt"}], "model_id": "nope"}, 422, "model_id"),
        ({"inputs": [{"text": "Hi.", "voice_id": "slt"}], "output_format": "mp3_1_1"}, 400, None),
        ({"inputs": [{"text": "Hi.", "voice_id": "slt"}], "settings": {"stability": 3}}, 422, None),
    ],
)
async def test_bad_dialogue_input_is_an_elevenlabs_error(
    client: AsyncElevenLabs, kwargs: dict[str, Any], status: int, where: str | None
) -> None:
    calls = (client.text_to_dialogue.convert, client.text_to_dialogue.stream)
    for call in calls:
        with pytest.raises(ApiError) as info:
            await _collect(call(**kwargs))
        assert info.value.status_code == status, info.value.body
    with pytest.raises(ApiError) as info:
        await client.text_to_dialogue.convert_with_timestamps(**kwargs)
    assert info.value.status_code == status
    body = info.value.body
    if where is not None:
        assert where in str(body), body
    if status == 404:
        assert body["detail"]["status"] == "voice_not_found" and "nobody" in str(body)
    with pytest.raises(ApiError) as info:
        async for _ in client.text_to_dialogue.stream_with_timestamps(**kwargs):
            pass
    assert info.value.status_code == status
