"""Audio helpers for the engine tests (plain functions, not fixtures)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

SpeechFactory = Callable[[str], bytes]


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(int(seconds * rate) * 2)


def to_float(pcm: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def rms(pcm: bytes) -> float:
    samples = to_float(pcm)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


def trimmed(pcm: bytes, floor: int = 300) -> bytes:
    """Speech without the silence a TTS puts before and after it (flite: ~0.2 s each), so the
    gaps a test puts between pieces are the pauses the VAD hears."""
    audible = np.flatnonzero(np.abs(np.frombuffer(pcm, "<i2")) > floor)
    return pcm[audible[0] * 2 : (audible[-1] + 1) * 2]
