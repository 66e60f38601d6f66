"""Where speech starts in decoded audio, for the dubbing tests' timing checks (the pipeline's
own test and the SDK's end-to-end one measure the same way)."""

from __future__ import annotations

import numpy as np

__all__ = ["ONSET_DBFS", "speech_starts"]

ONSET_DBFS = -35.0


def speech_starts(
    pcm: bytes, rate: int, spans: list[tuple[float, float]], *, threshold_dbfs: float = ONSET_DBFS
) -> list[float | None]:
    """The start (s) of the first 10 ms frame above ``threshold_dbfs`` inside each span of
    mono s16le ``pcm``; None for a span with none."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    frame = rate // 100
    power = (x[: x.size // frame * frame].reshape(-1, frame) ** 2).mean(axis=1)
    levels = 10 * np.log10(np.maximum(power, 1e-12))
    found: list[float | None] = []
    for lo, hi in spans:
        first = max(0, int(lo * 100))
        loud = np.flatnonzero(levels[first : int(hi * 100)] > threshold_dbfs)
        found.append(first / 100 + loud[0] / 100 if loud.size else None)
    return found
