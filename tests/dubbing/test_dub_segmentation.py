"""dubbing/segmentation.py: words to segments, segment edges on the audio, speaker pitch."""

from __future__ import annotations

import numpy as np
import pytest

from voicestream.dubbing.segmentation import (
    RawSegment,
    pitch_frames,
    refine_edges,
    segments_from_words,
)

RATE = 16000


def _voiced(f0: float, seconds: float, amplitude: float = 3000.0) -> np.ndarray:
    """A buzz with harmonics at ``f0``, as a voice's source is."""
    t = np.arange(int(seconds * RATE)) / RATE
    return sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * amplitude


def _pcm(*parts: np.ndarray) -> bytes:
    return np.concatenate(parts).astype("<i2").tobytes()


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE))


def test_segments_split_at_pauses_and_sentence_ends() -> None:
    words = [
        ("Hello", 0.0, 0.3),
        ("there.", 0.35, 0.6),
        ("How", 0.7, 0.8),
        ("are", 0.85, 1.0),
        ("you", 1.8, 2.0),  # after a 0.8 s pause
        ("today", 2.05, 2.4),
    ]
    found = [(s.start, s.end, s.text) for s in segments_from_words(words)]
    assert found == [(0.0, 0.6, "Hello there."), (0.7, 1.0, "How are"), (1.8, 2.4, "you today")]
    long = [(f"w{i}", i * 0.4, i * 0.4 + 0.3) for i in range(40)]
    assert all(s.end - s.start <= 10.0 for s in segments_from_words(long))


@pytest.mark.parametrize("f0", [95.0, 130.0, 210.0, 260.0])
def test_pitch_is_the_fundamental_of_voiced_frames(f0: float) -> None:
    frames = pitch_frames(_pcm(_silence(0.5), _voiced(f0, 1.0), _silence(0.5)), RATE, 10.0)
    assert frames, "no voiced frame found"
    assert float(np.median([hz for _, hz in frames])) == pytest.approx(f0, rel=0.03)
    times = [t for t, _ in frames]
    assert min(times) >= 10.45 and max(times) <= 11.55  # on the timeline, only where voiced
    assert pitch_frames(_pcm(_silence(1.0)), RATE, 0.0) == []


def test_edges_move_onto_the_speech_whisper_misplaced() -> None:
    # Speech at 1.0-2.0 s and 2.6-3.4 s; Whisper said 0.0-2.1 and 2.9-3.3.
    pcm = _pcm(_silence(1.0), _voiced(150, 1.0), _silence(0.6), _voiced(150, 0.8), _silence(0.6))
    guessed = [RawSegment(0.0, 2.1, "one"), RawSegment(2.9, 3.3, "two")]
    refined = refine_edges(guessed, pcm, RATE, 0.0)
    assert [(s.start, s.end, s.text) for s in refined] == [
        (pytest.approx(1.0, abs=0.02), pytest.approx(2.0, abs=0.02), "one"),
        (pytest.approx(2.6, abs=0.02), pytest.approx(3.4, abs=0.02), "two"),
    ]
    # Speech with no pause between two segments keeps Whisper's boundary between them.
    joined = _pcm(_silence(0.5), _voiced(150, 2.0), _silence(0.5))
    parts = refine_edges([RawSegment(0.3, 1.4, "a"), RawSegment(1.4, 2.3, "b")], joined, RATE, 0)
    assert [(s.start, s.end) for s in parts] == [
        (pytest.approx(0.5, abs=0.02), 1.4),
        (1.4, pytest.approx(2.5, abs=0.02)),
    ]
