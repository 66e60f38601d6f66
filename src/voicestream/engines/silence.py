"""Trimming the silence engines put before speech.

flite starts every clause with 150–270 ms of near-silence. At the start of a stream that is
latency the listener hears even though the first byte left early, so the stream keeps only a
short lead-in there; between clauses it keeps a natural pause.
"""

from __future__ import annotations

import numpy as np

from .base import Alignment, Synthesis

__all__ = ["trim_leading_silence"]

# About -40 dBFS: above flite's comfort noise, below the onset of any phone.
_THRESHOLD = 330


def trim_leading_silence(result: Synthesis, keep_ms: float) -> Synthesis:
    """Drop leading silence beyond ``keep_ms``; alignment times move with the audio."""
    samples = np.frombuffer(result.pcm, dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > _THRESHOLD)
    if loud.size == 0:
        return result
    cut = max(0, int(loud[0]) - int(keep_ms * result.sample_rate / 1000))
    if cut == 0:
        return result
    cut_ms = cut * 1000 / result.sample_rate
    return Synthesis(
        pcm=result.pcm[cut * 2 :],
        sample_rate=result.sample_rate,
        alignment=_shift(result.alignment, cut_ms) if result.alignment else None,
    )


def _shift(a: Alignment, cut_ms: float) -> Alignment:
    starts = []
    durations = []
    for start, duration in zip(a.char_start_ms, a.char_duration_ms, strict=True):
        new_start = max(0, round(start - cut_ms))
        new_end = max(new_start, round(start + duration - cut_ms))
        starts.append(new_start)
        durations.append(new_end - new_start)
    return Alignment(a.chars, tuple(starts), tuple(durations))
