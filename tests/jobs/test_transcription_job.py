"""The ``transcription`` job type run as a worker runs it (real JobContext, files in PostgreSQL
and local storage, the session's Whisper): a ten-minute compressed recording transcribed with
bounded memory, its words where the speech was, its SRT and WebVTT read back."""

from __future__ import annotations

import io
import json
import tracemalloc
import uuid
from fractions import Fraction

import av
import jiwer
import numpy as np
import pydantic
import pytest

from helpers import normalize
from jobs.job_types_harness import JobTypeRunner
from voicestream.engines.catalog import EngineRegistry
from voicestream.errors import InvalidAudio, NotFound
from voicestream.jobs.registry import JobOutcome, job_type
from voicestream.media.encode import make_encoder
from voicestream.media.formats import parse_format
from voicestream.media.resample import resample
from voicestream.media.subtitles import parse_srt, parse_vtt

PASSAGES = (
    "The lighthouse keeper climbed the tower every evening to light the lamp.",
    "Ships far out at sea could see the beam sweeping across the dark water.",
    "In the morning he wrote the weather in a small book beside the window.",
)
RATE = 16000
TOTAL_SECONDS = 600.0
SPEECH_AT = (2.0, 287.0, 571.0)  # each passage starts here: the start, middle and end


def _speech(registry: EngineRegistry, text: str) -> bytes:
    engine, voice = registry.voice("slt")
    spoken = engine.synthesize(text, voice)
    return resample(spoken.pcm, spoken.sample_rate, RATE)


def _recording(
    registry: EngineRegistry, seconds: float, speech_at: tuple[float, ...]
) -> tuple[bytes, list[tuple[float, float]]]:
    """Room noise with the passages at ``speech_at``, as Ogg Opus (ten minutes are about
    1 MB: decoded they would be 19 MB of s16le, 38 MB as Whisper's float32)."""
    rng = np.random.default_rng(3)
    audio = (rng.standard_normal(int(seconds * RATE)) * 40).astype(np.int16)
    spans = []
    for start, text in zip(speech_at, PASSAGES, strict=False):
        speech = np.frombuffer(_speech(registry, text), dtype="<i2")
        first = int(start * RATE)
        audio[first : first + speech.size] = speech
        spans.append((start, start + speech.size / RATE))
    encoder = make_encoder(parse_format("opus_48000_32"), RATE)
    pcm = audio.astype("<i2").tobytes()
    step = RATE * 2 * 10
    data = b"".join(encoder.encode(pcm[i : i + step]) for i in range(0, len(pcm), step))
    return data + encoder.finish(), spans


async def _traced_run(runner: JobTypeRunner, file_id: uuid.UUID) -> tuple[JobOutcome, int]:
    tracemalloc.start()
    try:
        outcome = await runner.run("transcription", {"file_id": str(file_id)})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return outcome, peak


@pytest.mark.timeout(360)  # ten minutes of audio through Whisper: ~30 s on two idle cores
async def test_ten_minutes_of_opus_transcribed_in_bounded_memory(
    runner: JobTypeRunner, registry: EngineRegistry
) -> None:
    recording, spans = _recording(registry, TOTAL_SECONDS, SPEECH_AT)
    file_id = await runner.upload(recording, "archive.ogg", "audio/ogg")
    # Just over one full window: the same work per window, a twelfth of the audio.
    short, _ = _recording(registry, 50.0, SPEECH_AT[:1])
    short_id = await runner.upload(short, "short.ogg", "audio/ogg")

    # Whisper itself needs tens of MB for a full window (the features of 30 s plus as much
    # padding); what the job holds besides must not grow with the recording. Decoded whole,
    # these ten minutes would add 19 MB (s16) or 38 MB (Whisper's float32).
    _, short_peak = await _traced_run(runner, short_id)
    runner.progress.clear()
    outcome, peak = await _traced_run(runner, file_id)
    assert peak - short_peak < 8 * 2**20, (
        f"peak traced memory {peak / 2**20:.1f} MiB for 10 min, "
        f"{short_peak / 2**20:.1f} MiB for a few seconds"
    )

    result = outcome.result
    assert result["duration"] == pytest.approx(TOTAL_SECONDS, abs=0.1)
    assert outcome.credits_used == result["credits_used"] == 600
    assert result["language"] == "en"
    assert jiwer.wer(normalize(" ".join(PASSAGES)), normalize(result["text"])) < 0.2
    values = [p for p in runner.progress if p is not None]
    assert values == sorted(values) and values[-1] == 100 and len(set(values)) >= 10

    files = {f["format"]: f for f in result["files"]}
    assert set(files) == {"json", "srt", "vtt"}
    body = json.loads(await runner.read_output(files["json"]))
    words = [w for segment in body["segments"] for w in segment["words"]]
    assert body["text"] == result["text"] and len(words) == result["words"] > 30
    # Every word lies where speech was put (Whisper stretches a last word's end a little).
    for word in words:
        assert any(s - 0.5 <= word["start"] <= word["end"] <= e + 1.0 for s, e in spans), word
    for (start, end), passage in zip(spans, PASSAGES, strict=True):
        heard = " ".join(w["word"] for w in words if start - 0.5 <= w["start"] <= end + 0.5)
        assert jiwer.wer(normalize(passage), normalize(heard)) < 0.4  # another passage: ~1

    # Subtitles read back: cue times are their words' times.
    starts = {round(w["start"], 3) for w in words}
    ends = {round(w["end"], 3) for w in words}
    for kind, parse in (("srt", parse_srt), ("vtt", parse_vtt)):
        cues = parse((await runner.read_output(files[kind])).decode())
        assert " ".join(c.text for c in cues).split() == [w["word"] for w in words]
        assert [c.start for c in cues] == sorted(c.start for c in cues)
        for cue in cues:
            assert round(cue.start, 3) in starts and round(cue.end, 3) in ends


def _mp4_with_video(speech: bytes) -> bytes:
    """An MP4 (index at the end) with a video track and the speech as AAC."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("mpeg4", rate=5)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=RATE)
        audio.codec_context.layout = "mono"
        seconds = len(speech) / 2 / RATE
        for i in range(int(seconds * 5)):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 5)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = np.frombuffer(speech, dtype="<i2").reshape(1, -1)
        sound = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        sound.sample_rate, sound.pts, sound.time_base = RATE, 0, Fraction(1, RATE)
        container.mux(audio.encode(sound))
        container.mux(audio.encode(None))
    return buffer.getvalue()


async def test_a_video_file_is_transcribed_from_its_audio_track(
    runner: JobTypeRunner, registry: EngineRegistry
) -> None:
    speech = bytes(RATE) + _speech(registry, PASSAGES[1]) + bytes(RATE)
    data = _mp4_with_video(speech)
    assert data.find(b"moov") > data.find(b"mdat"), "the index is at the end: reading must seek"
    file_id = await runner.upload(data, "clip.mp4", "video/mp4")
    outcome = await runner.run("transcription", {"file_id": str(file_id), "language": "en"})
    assert jiwer.wer(normalize(PASSAGES[1]), normalize(outcome.result["text"])) < 0.2
    assert outcome.result["duration"] == pytest.approx(len(speech) / 2 / RATE, abs=0.2)


async def test_bad_input(runner: JobTypeRunner) -> None:
    model = job_type("transcription").input_model
    for bad in ({}, {"file_id": "nope"}, {"file_id": str(uuid.uuid4()), "language": ""}):
        with pytest.raises(pydantic.ValidationError):
            model.model_validate(bad)
    not_audio = await runner.upload(b"just some text, no audio", "notes.txt", "text/plain")
    with pytest.raises(InvalidAudio):
        await runner.run("transcription", {"file_id": str(not_audio)})
    with pytest.raises(NotFound):
        await runner.run("transcription", {"file_id": str(uuid.uuid4())})
