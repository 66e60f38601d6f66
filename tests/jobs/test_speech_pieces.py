"""jobs/speech.py: a piece of text synthesized whole with its word times, and the
content-addressed cache that lets a re-render skip unchanged pieces."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobs.job_types_harness import JobTypeRunner
from voicestream.jobs.context import JobContext
from voicestream.jobs.speech import Speech, SpeechCache, speech_cache, synthesize
from voicestream.media.signal import rms_dbfs


def _found(root: Path, pattern: str) -> list[Path]:
    return list(root.rglob(pattern))


def _damage(path: Path) -> None:
    path.write_bytes(b"\x00" * 10)  # a writer cut short, or a disk error


TEXT = "Seven bright lanterns hung above the old stone bridge."


@pytest.fixture
async def ctx(runner: JobTypeRunner) -> AsyncIterator[JobContext]:
    async def report(percent: int | None) -> bool:
        return False

    yield JobContext(
        job_id=uuid.uuid4(),
        workspace_id=runner.workspace_id,
        attempt=1,
        files=None,  # type: ignore[arg-type]  # synthesis never touches files
        engines=runner.engines,
        settings=runner.settings,
        _report=report,
    )


async def test_words_follow_the_text_and_lie_inside_the_audio(ctx: JobContext) -> None:
    speech = await synthesize(ctx, "slt", TEXT)
    assert speech.rate > 0 and speech.seconds > 1.5
    assert [w for w, _, _ in speech.words] == TEXT.split()
    starts = [s for _, s, _ in speech.words]
    assert starts == sorted(starts)
    assert all(s < e for _, s, e in speech.words)
    assert speech.words[-1][2] <= speech.seconds + 0.05
    # The first word is spoken where the audio is: the 100 ms after its start are not silent.
    first = int(speech.words[0][1] * speech.rate) * 2
    assert rms_dbfs(speech.pcm[first : first + speech.rate // 5]) > -40


async def test_speed_shortens_the_audio_and_its_word_times(ctx: JobContext) -> None:
    normal = await synthesize(ctx, "slt", TEXT)
    fast = await synthesize(ctx, "slt", TEXT, speed=1.25)
    assert fast.seconds / normal.seconds == pytest.approx(0.8, abs=0.06)
    assert fast.words[-1][2] / normal.words[-1][2] == pytest.approx(0.8, abs=0.08)


async def test_cache_round_trip_and_keys(tmp_path: Path, ctx: JobContext) -> None:
    cache = SpeechCache(tmp_path / "cache")
    key = cache.key("flite", "slt", TEXT, 1.0)
    assert key != cache.key("flite", "slt", TEXT, 1.25)
    assert key != cache.key("flite", "awb", TEXT, 1.0)
    assert await cache.get(key) is None
    speech = Speech(b"\x01\x00" * 800, 16000, (("hello", 0.0, 0.05),))
    await cache.put(key, speech)
    assert await cache.get(key) == speech
    shared = speech_cache(ctx)
    await shared.put(key, speech)
    assert _found(ctx.settings.data_dir / "speech-cache", f"{key}.pcm")


async def test_a_damaged_entry_is_a_miss(tmp_path: Path) -> None:
    cache = SpeechCache(tmp_path)
    key = cache.key("x")
    await cache.put(key, Speech(b"\x00\x01" * 100, 8000, ()))
    (audio,) = _found(tmp_path, "*.pcm")
    _damage(audio)
    assert await cache.get(key) is None
