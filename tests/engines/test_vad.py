"""The per-stream VAD segmenter on real Silero probabilities and flite speech."""

from __future__ import annotations

import numpy as np
import pytest
from engine_audio import SpeechFactory, silence

from voicestream.engines.flite_tts import FliteTTS
from voicestream.engines.silero_vad import SileroVAD
from voicestream.engines.vad import VADEvent, VoiceActivityDetector

_RATE = 16000


def _run(vad: VoiceActivityDetector, pcm: bytes, chunk: int | None = None) -> list[VADEvent]:
    step = chunk or len(pcm) or 1
    events: list[VADEvent] = []
    for i in range(0, len(pcm), step):
        events += vad.process(pcm[i : i + step])
    return events + vad.flush()


def _onset_and_end(flite: FliteTTS, text: str) -> tuple[bytes, float, float]:
    """Speech, plus where flite's alignment puts its first and last spoken character."""
    slt = next(v for v in flite.voices() if v.id == "slt")
    syn = flite.synthesize(text, slt)
    assert syn.alignment is not None
    al = syn.alignment
    spoken = [i for i, c in enumerate(al.chars) if c.isalnum()]
    onset = al.char_start_ms[spoken[0]] / 1000
    end = (al.char_start_ms[spoken[-1]] + al.char_duration_ms[spoken[-1]]) / 1000
    return syn.pcm, onset, end


def test_silence_and_low_noise_give_no_events(silero: SileroVAD) -> None:
    noise = np.random.default_rng(7).normal(0, 40, 3 * _RATE).astype("<i2").tobytes()
    for pcm in (silence(3.0), noise):
        vad = VoiceActivityDetector(silero)
        assert _run(vad, pcm) == []
        assert not vad.in_speech


def test_one_sentence_in_silence(silero: SileroVAD, flite: FliteTTS) -> None:
    pcm, onset, end = _onset_and_end(flite, "Please call me back tomorrow morning.")
    lead = 1.0
    vad = VoiceActivityDetector(silero)
    events = _run(vad, silence(lead) + pcm + silence(1.0))
    assert [e.kind for e in events] == ["start", "end"]
    assert abs(events[0].time - (lead + onset)) < 0.1
    assert lead + end - 0.1 <= events[1].time <= lead + end + 0.6


def test_two_sentences_give_two_segments(silero: SileroVAD, speech: SpeechFactory) -> None:
    first, second = speech("The weather is nice today."), speech("See you next week.")
    pcm = silence(0.5) + first + silence(1.0) + second + silence(0.8)
    events = _run(VoiceActivityDetector(silero), pcm)
    assert [e.kind for e in events] == ["start", "end", "start", "end"]
    times = [e.time for e in events]
    assert times == sorted(times)
    gap_start = 0.5 + len(first) / 2 / _RATE
    assert times[1] < gap_start + 0.6 < times[2]


def test_chunked_feeding_equals_bulk(silero: SileroVAD, speech: SpeechFactory) -> None:
    pcm = silence(0.4) + speech("Turn left at the next light.") + silence(0.7)
    bulk = _run(VoiceActivityDetector(silero), pcm)
    framed = _run(VoiceActivityDetector(silero), pcm, chunk=640)  # 20 ms frames
    ragged = _run(VoiceActivityDetector(silero), pcm, chunk=333)  # odd bytes split samples
    assert bulk == framed == ragged
    assert len(bulk) == 2


def test_flush_closes_open_speech(silero: SileroVAD, speech: SpeechFactory) -> None:
    vad = VoiceActivityDetector(silero)
    pcm = silence(0.3) + speech("This sentence is cut off")
    events = vad.process(pcm)
    assert [e.kind for e in events] == ["start"] and vad.in_speech
    (end,) = vad.flush()
    assert end.kind == "end" and end.time <= len(pcm) / 2 / _RATE + 1e-9
    assert not vad.in_speech and vad.flush() == []


def test_bad_threshold(silero: SileroVAD) -> None:
    with pytest.raises(ValueError):
        VoiceActivityDetector(silero, threshold=1.5)
