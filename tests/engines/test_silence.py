from __future__ import annotations

import numpy as np

from voicestream.engines.base import Alignment, Synthesis
from voicestream.engines.silence import trim_leading_silence


def _synth(lead_ms: int, speech_ms: int = 100) -> Synthesis:
    rate = 16000
    quiet = (np.random.default_rng(1).integers(-40, 40, rate * lead_ms // 1000)).astype(np.int16)
    t = np.arange(rate * speech_ms // 1000) / rate
    loud = (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    pcm = np.concatenate([quiet, loud]).tobytes()
    alignment = Alignment(("a", "b"), (0, lead_ms), (lead_ms, speech_ms))
    return Synthesis(pcm, rate, alignment)


def test_trims_to_the_lead_in_and_moves_alignment() -> None:
    out = trim_leading_silence(_synth(250), keep_ms=30)
    x = np.frombuffer(out.pcm, dtype=np.int16)
    first_loud = int(np.flatnonzero(np.abs(x) > 330)[0])
    assert abs(first_loud / 16 - 30) <= 1  # ms
    assert abs(len(x) / 16 - (30 + 100)) <= 1
    assert out.alignment is not None
    assert out.alignment.char_start_ms == (0, 30)
    assert out.alignment.char_duration_ms == (30, 100)


def test_short_lead_in_and_silence_are_left_alone() -> None:
    short = _synth(20)
    assert trim_leading_silence(short, keep_ms=30) is short
    silent = Synthesis(b"\x00\x00" * 1600, 16000, None)
    assert trim_leading_silence(silent, keep_ms=30) is silent
