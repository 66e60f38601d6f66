"""Test signals shared by the media tests."""

from __future__ import annotations

import numpy as np

from voicestream.media.signal import float_to_pcm, sine


def chirp(seconds: float, rate: int, f0: float = 150.0, f1: float = 3400.0) -> bytes:
    """A linear sweep that stays inside the telephone band, at half full scale."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds))
    return float_to_pcm(0.5 * np.sin(phase))


def tone_and_chirp(rate: int) -> bytes:
    """1 s of 440 Hz then a 1 s sweep: the tone checks pitch, the sweep pins the codec delay."""
    return sine(440, 1.0, rate) + chirp(1.0, rate)
