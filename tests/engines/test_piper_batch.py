"""Micro-batching Piper runs: concurrent callers share one padded run and each gets exactly its
own audio. Forced on CPU here (the engine enables it by itself only on GPU providers)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pytest
from speech_check import transcribe

from helpers import corpus_wer
from voicestream.engines.base import Synthesis
from voicestream.engines.piper_batch import (
    BatchItem,
    FloatArray,
    IntArray,
    MicroBatcher,
    run_padded,
)
from voicestream.engines.piper_tts import PiperTTS
from voicestream.engines.piper_voice import packaged_voices

T = TypeVar("T")
JOE = "en_US-joe-medium"
SENTENCES = [
    "Good afternoon, and welcome to the city library.",
    "Your table is ready.",
    "The train to Boston leaves from the north platform this evening.",
    "Could you spell your last name for me, please?",
]


@pytest.fixture(scope="module")
def unbatched() -> PiperTTS:
    engine = PiperTTS(packaged_voices(), batch_window_ms=0)
    engine.warm_up()
    return engine


@pytest.fixture(scope="module")
def batched() -> Iterator[PiperTTS]:
    # A window far longer than thread start-up jitter on a loaded machine, so the four callers
    # below always meet; in production it is a few milliseconds on a GPU.
    engine = PiperTTS(packaged_voices(), batch_window_ms=1500)
    engine.warm_up()
    yield engine


def _together(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``calls`` on their own threads, released at the same moment."""
    barrier = threading.Barrier(len(calls))

    def start(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(start, calls))


def _seconds(syn: Synthesis) -> float:
    return len(syn.pcm) / 2 / syn.sample_rate


def test_concurrent_callers_share_a_run_and_get_their_own_audio(
    batched: PiperTTS, unbatched: PiperTTS
) -> None:
    voice = next(v for v in batched.voices() if v.id == JOE)
    before = batched.batch_stats(JOE)
    together = _together([lambda t=text: batched.synthesize(t, voice) for text in SENTENCES])
    after = batched.batch_stats(JOE)
    assert before is not None and after is not None
    # Four single-sentence requests in fewer than four runs: some ran together.
    assert after[1] - before[1] == len(SENTENCES) and after[0] - before[0] < len(SENTENCES)
    alone = [unbatched.synthesize(text, voice) for text in SENTENCES]
    for text, mine, single in zip(SENTENCES, together, alone, strict=True):
        # The same length as an unbatched run (VITS draws its durations with noise, so not
        # exactly): the padding of the longer items was cut off, nothing of this one was.
        assert _seconds(mine) == pytest.approx(_seconds(single), rel=0.15), text
        assert mine.alignment is not None and "".join(mine.alignment.chars) == text
    # The same words (the unbatched voice's are checked in test_piper_tts.py).
    heard = [transcribe(s.pcm, s.sample_rate) for s in together]
    print(f"\nbatched: {heard}")
    assert corpus_wer(SENTENCES, heard) <= 0.1


def test_sentences_of_one_request_run_as_one_batch(batched: PiperTTS) -> None:
    voice = next(v for v in batched.voices() if v.id == JOE)
    text = "One. Two. Three. Four."
    before = batched.batch_stats(JOE)
    syn = batched.synthesize(text, voice)
    after = batched.batch_stats(JOE)
    assert before is not None and after is not None
    assert (after[0] - before[0], after[1] - before[1]) == (1, 4)
    assert syn.alignment is not None
    starts = [syn.alignment.char_start_ms[text.index(w)] for w in ("One", "Two", "Three", "Four")]
    assert starts == sorted(starts) and starts[-1] < _seconds(syn) * 1000


def test_cpu_engines_do_not_batch_unless_asked() -> None:
    engine = PiperTTS(packaged_voices())
    engine.warm_up()
    (info,) = engine.model_info()
    assert info["provider"] == "CPUExecutionProvider" and info["batch_window_ms"] is None
    assert engine.batch_stats(JOE) is None


# -- the batcher on its own, over a scripted graph -------------------------------------------

HOP = 4


def _graph(
    calls: list[int], *, fail: bool = False, durations: bool = True
) -> Callable[
    [IntArray, IntArray, FloatArray, IntArray | None], tuple[FloatArray, FloatArray | None]
]:
    """Every id lasts ``id`` frames of ``HOP`` samples, each sample valued ``id``; past an item's
    length the output is padding (zeros), as a VITS graph's masked frames are."""

    def run(
        ids: IntArray, lengths: IntArray, scales: FloatArray, speakers: IntArray | None
    ) -> tuple[FloatArray, FloatArray | None]:
        calls.append(len(ids))
        if fail:
            raise RuntimeError("graph exploded")
        frames = np.where(np.arange(ids.shape[1]) < lengths[:, None], ids, 0).astype(np.float32)
        total = int(frames.sum(axis=1).max()) * HOP
        audio = np.zeros((len(ids), total), dtype=np.float32)
        for row in range(len(ids)):
            samples = np.repeat(ids[row, : lengths[row]], ids[row, : lengths[row]] * HOP)
            audio[row, : samples.size] = samples.astype(np.float32) * scales[1]
        return audio, frames if durations else None

    return run


def test_each_caller_gets_exactly_its_own_samples() -> None:
    calls: list[int] = []
    batcher = MicroBatcher(
        _graph(calls), hop=HOP, rate=1000, multi_speaker=False, window_s=5.0, max_batch=3
    )
    requests = [[1, 2], [3, 1, 1, 2], [2]]
    results = _together(
        [lambda ids=ids: batcher.synthesize([BatchItem(ids)], (0.0, 1.0, 0.0)) for ids in requests]
    )
    assert calls == [3]  # full at three items: run at once, without waiting out the window
    for ids, (result,) in zip(requests, results, strict=True):
        expected = np.repeat(ids, np.array(ids) * HOP).astype(np.float32)
        assert np.array_equal(result.audio, expected)
        assert result.frames is not None and result.frames.tolist() == ids


def test_different_speeds_never_share_a_run() -> None:
    calls: list[int] = []
    batcher = MicroBatcher(
        _graph(calls), hop=HOP, rate=1000, multi_speaker=False, window_s=5.0, max_batch=2
    )
    scales = [(0.0, 1.0, 0.0), (0.0, 2.0, 0.0), (0.0, 1.0, 0.0), (0.0, 2.0, 0.0)]
    results = _together(
        [lambda s=s: batcher.synthesize([BatchItem([1, 2])], s)[0].audio for s in scales]
    )
    assert sorted(calls) == [2, 2]
    for scale, audio in zip(scales, results, strict=True):
        assert float(audio.max()) == pytest.approx(2 * scale[1])


def test_a_failed_run_reaches_every_caller() -> None:
    calls: list[int] = []
    batcher = MicroBatcher(
        _graph(calls, fail=True), hop=HOP, rate=1000, multi_speaker=False, window_s=5.0, max_batch=3
    )

    def call() -> str:
        try:
            batcher.synthesize([BatchItem([1])], (0.0, 1.0, 0.0))
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert _together([call, call, call]) == ["graph exploded"] * 3
    assert calls == [3]


def test_without_durations_the_padding_is_trimmed_but_speech_kept() -> None:
    calls: list[int] = []
    run = _graph(calls, durations=False)
    short, long = BatchItem([5, 5]), BatchItem([5, 5, 5, 5, 5, 5, 5, 5])
    rate = 100
    results = run_padded(run, [short, long], (0, 1, 0), hop=HOP, multi_speaker=False, rate=rate)
    short_audio, long_audio = (r.audio for r in results)
    speech = 2 * 5 * HOP
    assert speech <= short_audio.size < long_audio.size
    assert short_audio.size <= speech + int(0.12 * rate) + 1  # the margin, not the whole padding
    assert long_audio.size == 8 * 5 * HOP
