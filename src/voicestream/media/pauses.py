"""Cutting a long recording into windows of bounded length at its quietest moments."""

from __future__ import annotations

import numpy as np

__all__ = ["windows_at_pauses"]


def windows_at_pauses(
    pcm: bytes,
    rate: int,
    *,
    max_seconds: float,
    search_seconds: float = 5.0,
    frame_ms: int = 20,
) -> list[tuple[int, int]]:
    """Sample ranges ``[start, end)`` of mono s16le, each at most ``max_seconds`` long, that
    cover the whole recording in order.

    Each cut falls in the quietest ``frame_ms`` frame of the last ``search_seconds`` of its
    window, so that a recognizer fed one window at a time rarely sees a word cut in two.
    """
    if rate <= 0 or max_seconds <= 0 or frame_ms <= 0:
        raise ValueError("rate, max_seconds and frame_ms must be positive")
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)  # a view: no copy
    total = samples.size
    longest = max(1, int(max_seconds * rate))
    frame = max(1, rate * frame_ms // 1000)
    search = min(longest, max(frame, int(search_seconds * rate)))
    windows: list[tuple[int, int]] = []
    start = 0
    while total - start > longest:
        lo, hi = start + longest - search, start + longest
        frames = (hi - lo) // frame
        tail = samples[lo : lo + frames * frame].astype(np.float64).reshape(frames, frame)
        energy = (tail * tail).sum(axis=1)
        # The last of equally quiet frames: the window runs as long as it may.
        quietest = frames - 1 - int(np.argmin(energy[::-1]))
        cut = lo + (quietest + 1) * frame
        windows.append((start, cut))
        start = cut
    if start < total:
        windows.append((start, total))
    return windows
