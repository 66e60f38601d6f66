"""The ``tts`` job type run as a worker runs it (real JobContext, files in PostgreSQL and local
storage, the session's engines), its outputs checked by content: decoded, measured for
loudness with pyloudnorm, transcribed back with Whisper, chapter markers read back."""

from __future__ import annotations

import io
import math

import av
import jiwer
import numpy as np
import pydantic
import pyloudnorm
import pytest
from scipy.signal import resample_poly

from helpers import normalize
from jobs.job_types_harness import JobTypeRunner
from voicestream.engines.catalog import EngineRegistry
from voicestream.errors import UnknownVoice
from voicestream.jobs.context import JobCancelled
from voicestream.jobs.registry import NO_FILES, job_type
from voicestream.jobs.types.transcription import whisper_engine
from voicestream.media.chapter_marks import read_wav_chapters
from voicestream.media.decode import decode_audio
from voicestream.media.resample import resample

BOOK = """# The Harbour

The boats came in at dawn. Fishermen carried their nets up the stone steps,
and the gulls followed them along the quay.

# The Market

By noon the market was full of people. A woman sold bread from a wooden cart,
and children ran between the stalls.

# The Storm

In the evening dark clouds rolled over the hills. Everyone hurried home before
the rain began to fall.
"""
SPOKEN = (
    "The Harbour. The boats came in at dawn. Fishermen carried their nets up the stone steps, "
    "and the gulls followed them along the quay. The Market. By noon the market was full of "
    "people. A woman sold bread from a wooden cart, and children ran between the stalls. "
    "The Storm. In the evening dark clouds rolled over the hills. Everyone hurried home "
    "before the rain began to fall."
)


def _lufs(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    return float(pyloudnorm.Meter(rate).integrated_loudness(x))


def _true_peak_dbtp(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    return 20 * math.log10(float(np.abs(resample_poly(x, 4, 1)).max()))


def _check_progress(reports: list[int | None]) -> None:
    values = [p for p in reports if p is not None]
    assert values == sorted(values), "progress never goes back"
    assert values[0] == 0 and values[-1] == 100
    assert len(set(values)) >= 5, "progress moves as the chapters go"


async def test_markdown_book_to_mp3_with_chapters_at_target_loudness(
    runner: JobTypeRunner, registry: EngineRegistry
) -> None:
    file_id = await runner.upload(BOOK.encode(), "book.md", "text/markdown")
    outcome = await runner.run("tts", {"file_id": str(file_id), "voice": "slt"})
    result = outcome.result
    _check_progress(runner.progress)
    assert outcome.credits_used == result["credits_used"] == result["characters"] > 300
    assert [c["title"] for c in result["chapters"]] == ["The Harbour", "The Market", "The Storm"]
    [saved] = result["files"]
    assert saved["format"] == "mp3_44100_128" and saved["url"]
    data = await runner.read_output(saved)
    assert saved["bytes"] == len(data)

    # Chapter markers as an MP3 player reads them: ID3v2 CHAP frames.
    with av.open(io.BytesIO(data)) as container:
        chapters = container.chapters()
    assert [c["metadata"]["title"] for c in chapters] == ["The Harbour", "The Market", "The Storm"]
    for marker, reported in zip(chapters, result["chapters"], strict=True):
        assert float(marker["start"] * marker["time_base"]) == pytest.approx(
            reported["start"], abs=0.01
        )
    starts = [c["start"] for c in result["chapters"]]
    assert starts[0] < 0.1 and starts == sorted(starts)

    pcm = decode_audio(data, 44100)
    assert len(pcm) / 2 / 44100 == pytest.approx(result["duration"], abs=0.1)
    assert _lufs(pcm, 44100) == pytest.approx(-16.0, abs=1.0)
    assert result["loudness"]["target_lufs"] == -16.0

    # Each chapter's words are where its marker says: transcribe the middle chapter alone.
    engine = whisper_engine(registry, None)
    whole = engine.transcribe(resample(pcm, 44100, 16000))
    assert jiwer.wer(normalize(SPOKEN), normalize(whole.text)) < 0.15
    second = result["chapters"][1]
    part = pcm[round(second["start"] * 44100) * 2 : round(second["end"] * 44100) * 2]
    heard = normalize(engine.transcribe(resample(part, 44100, 16000)).text)
    assert heard.startswith("the market") and "harbour" not in heard and "storm" not in heard


async def test_piper_text_to_wav_with_cue_chapters_at_a_chosen_loudness(
    runner: JobTypeRunner,
) -> None:
    # Piper's speech peaks about 20 dB over its loudness: at -18 LUFS the limiter has work to do.
    text = (
        "Chapter 1\n\nThe quick brown fox jumps over the lazy dog.\n\n"
        "Chapter 2\n\nPeter Piper picked a peck of pickled peppers!"
    )
    outcome = await runner.run(
        "tts", {"text": text, "format": "wav_22050", "loudness": -18, "voice": "en_US-joe-medium"}
    )
    result = outcome.result
    assert outcome.credits_used == len(text)
    data = await runner.read_output(result["files"][0])
    marks = read_wav_chapters(data)
    assert [title for title, _ in marks] == ["Chapter 1", "Chapter 2"]
    assert [start for _, start in marks] == pytest.approx(
        [c["start"] for c in result["chapters"]], abs=0.001
    )
    with av.open(io.BytesIO(data)) as container:  # a WAV any reader takes, chunks and all
        assert container.streams.audio[0].sample_rate == 22050
    pcm = decode_audio(data, 22050)
    assert len(pcm) / 2 / 22050 == pytest.approx(result["duration"], abs=0.001)
    assert _lufs(pcm, 22050) == pytest.approx(-18.0, abs=1.0)
    assert _true_peak_dbtp(pcm) <= -0.5
    assert result["loudness"]["gain_db"] > 0


@pytest.mark.parametrize("fmt", ["opus_48000_64", "flac_22050"])
async def test_chapters_in_ogg_opus_and_flac(runner: JobTypeRunner, fmt: str) -> None:
    text = "Prologue\n\nIt starts.\n\nChapter one\n\nIt goes on.\n\nEpilogue\n\nIt ends."
    outcome = await runner.run("tts", {"text": text, "format": fmt, "voice": "slt"})
    data = await runner.read_output(outcome.result["files"][0])
    # Ogg Opus carries them as chapters; FLAC as Vorbis comment CHAPTERnnn tags, which
    # libavformat (like players) reads back as chapters too.
    with av.open(io.BytesIO(data)) as container:
        titles = [c["metadata"]["title"] for c in container.chapters()]
    assert titles == ["Prologue", "Chapter one", "Epilogue"]


async def test_loudness_null_keeps_the_voice_level(runner: JobTypeRunner) -> None:
    outcome = await runner.run(
        "tts",
        {"text": "Just as it comes.", "format": "pcm_16000", "loudness": None, "voice": "slt"},
    )
    assert outcome.result["loudness"] == {
        "target_lufs": None,
        "measured_lufs": None,
        "gain_db": None,
    }
    assert outcome.result["chapters"][0]["title"] == "Opening"
    data = await runner.read_output(outcome.result["files"][0])
    assert len(data) / 2 / 16000 == pytest.approx(outcome.result["duration"], abs=0.001)


async def test_a_cancel_stops_the_job_before_any_output(runner: JobTypeRunner) -> None:
    runner.cancel_after = 2
    with pytest.raises(JobCancelled):
        await runner.run("tts", {"text": "One. Two. Three. Four. Five. Six.", "voice": "slt"})
    outputs = await runner.pool.fetchval(
        "SELECT count(*) FROM files WHERE workspace_id = $1 AND purpose = 'output'",
        runner.workspace_id,
    )
    assert outputs == 0


async def test_bad_input() -> None:
    model = job_type("tts").input_model
    for bad in (
        {},
        {"text": "x", "file_id": "00000000-0000-0000-0000-000000000000"},
        {"text": "   "},
        {"text": "x", "format": "mp3_1"},
        {"text": "x", "loudness": 3},
        {"text": "x", "speed": 2},
    ):
        with pytest.raises(pydantic.ValidationError):
            model.model_validate(bad)
    assert await job_type("tts").estimate(model.model_validate({"text": "12345"}), NO_FILES) == 5


async def test_unknown_voice_fails_the_job(runner: JobTypeRunner) -> None:
    with pytest.raises(UnknownVoice):
        await runner.run("tts", {"text": "Hello.", "voice": "nobody"})
