"""From Whisper's words and the source audio to dubbing segments, and a speaker's pitch.

Blocking numpy work: callers run it on the media executor.

A segment is a run of words a voice can say in one breath: a new one starts at a pause longer
than ``MAX_GAP_S``, after a word that ends a sentence, or before the run passes
``MAX_SEGMENT_S``. Whisper's word times drift by a tenth of a second or two, so each segment's
edges are then moved onto the audio's own speech onset and offset nearby: the dub is placed at
the segment's start, and the viewer sees lips move where the audio starts, not where Whisper
guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["RawSegment", "pitch_frames", "refine_edges", "segments_from_words"]

MAX_GAP_S: Final = 0.5
MAX_SEGMENT_S: Final = 10.0
_SENTENCE_END: Final = (".", "!", "?", "\u2026", "\u3002", "\uff01", "\uff1f")
_FRAME_S: Final = 0.01
# The level that counts as speech: relative to the window's loudest frame, so quiet recordings
# work too, with a floor against noise; gaps up to _BRIDGE_S inside a region are bridged.
_BRIDGE_S: Final = 0.25
_SHORTEST_S: Final = 0.05
_RELATIVE_DB: Final = -30.0
_FLOOR_DBFS: Final = -50.0
# Pitch: 40 ms frames every 20 ms, voices between 60 and 400 Hz.
_PITCH_FRAME_S: Final = 0.04
_PITCH_HOP_S: Final = 0.02
_F0_MIN: Final = 60.0
_F0_MAX: Final = 400.0
_VOICED_CORRELATION: Final = 0.5


@dataclass(slots=True)
class RawSegment:
    start: float
    end: float
    text: str


def segments_from_words(
    words: Sequence[tuple[str, float, float]],
    *,
    max_gap: float = MAX_GAP_S,
    max_seconds: float = MAX_SEGMENT_S,
) -> list[RawSegment]:
    """``(word, start, end)`` in time order grouped into segments (see the module doc)."""
    out: list[RawSegment] = []
    current: RawSegment | None = None
    for raw, start, end in words:
        word = raw.strip()
        if not word:
            continue
        end = max(start, end)
        if current is not None and (
            start - current.end > max_gap or end - current.start > max_seconds
        ):
            out.append(current)
            current = None
        if current is None:
            current = RawSegment(start, end, word)
        else:
            current.text = f"{current.text} {word}"
            current.end = max(current.end, end)
        if word.endswith(_SENTENCE_END):
            out.append(current)
            current = None
    if current is not None:
        out.append(current)
    return out


def _frame_levels(pcm: bytes, rate: int) -> npt.NDArray[np.float64]:
    """dBFS of each 10 ms frame."""
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float64) / 32768.0
    frame = max(1, int(rate * _FRAME_S))
    count = samples.size // frame
    if not count:
        return np.zeros(0)
    power = (samples[: count * frame].reshape(count, frame) ** 2).mean(axis=1)
    levels: npt.NDArray[np.float64] = 10.0 * np.log10(np.maximum(power, 1e-12))
    return levels


def _speech_regions(levels: npt.NDArray[np.float64]) -> list[tuple[int, int]]:
    """Frame ranges ``[first, last)`` of speech: runs of frames within ``_RELATIVE_DB`` of the
    loudest, with the short gaps inside words and between them bridged."""
    threshold = max(_FLOOR_DBFS, float(levels.max()) + _RELATIVE_DB)
    loud = np.flatnonzero(levels >= threshold)
    regions: list[tuple[int, int]] = []
    bridge = int(_BRIDGE_S / _FRAME_S)
    for frame in loud.tolist():
        if regions and frame - regions[-1][1] <= bridge:
            regions[-1] = (regions[-1][0], frame + 1)
        else:
            regions.append((frame, frame + 1))
    shortest = int(_SHORTEST_S / _FRAME_S)
    return [(a, b) for a, b in regions if b - a >= shortest]


def refine_edges(
    segments: list[RawSegment], pcm: bytes, rate: int, offset: float
) -> list[RawSegment]:
    """``segments`` (seconds on the recording's timeline, in order) with their edges moved
    onto the speech in ``pcm`` (which starts at ``offset`` seconds).

    A segment's speech is the regions of sound that overlap Whisper's span for it: it starts
    where the first begins and ends where the last ends. A region shared with a neighbouring
    segment (no pause between them) leaves that edge where Whisper put it.
    """
    levels = _frame_levels(pcm, rate)
    if not levels.size or not segments:
        return segments
    regions = [(offset + a * _FRAME_S, offset + b * _FRAME_S) for a, b in _speech_regions(levels)]
    out: list[RawSegment] = []
    for index, segment in enumerate(segments):
        before = segments[index - 1].end if index else None
        after = segments[index + 1].start if index + 1 < len(segments) else None
        mine = [r for r in regions if r[1] > segment.start and r[0] < segment.end]
        start, end = segment.start, segment.end
        if mine:
            first_start, last_end = mine[0][0], mine[-1][1]
            if before is None or first_start >= before:
                start = first_start
            if after is None or last_end <= after:
                end = last_end
        if out:
            start = max(start, out[-1].end)
        if end <= start:
            start, end = segment.start, segment.end
        out.append(RawSegment(round(start, 3), round(end, 3), segment.text))
    return out


def pitch_frames(pcm: bytes, rate: int, offset: float) -> list[tuple[float, float]]:
    """``(time, F0 in Hz)`` of the voiced frames of ``pcm``, by normalized autocorrelation;
    ``time`` is each frame's middle on the recording's timeline."""
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float64)
    frame = int(rate * _PITCH_FRAME_S)
    hop = int(rate * _PITCH_HOP_S)
    min_lag = max(1, int(rate / _F0_MAX))
    max_lag = min(frame - 1, int(rate / _F0_MIN))
    if samples.size < frame or max_lag <= min_lag:
        return []
    count = 1 + (samples.size - frame) // hop
    frames = np.lib.stride_tricks.sliding_window_view(samples, frame)[::hop][:count]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = (frames**2).mean(axis=1)
    loud = np.flatnonzero(energy > (32768.0 * 10 ** (_FLOOR_DBFS / 20)) ** 2)
    if not loud.size:
        return []
    # Autocorrelation of every loud frame at once, through the FFT (zero-padded: no wrap).
    spectrum = np.fft.rfft(frames[loud], n=2 * frame, axis=1)
    correlation = np.fft.irfft(spectrum * np.conj(spectrum), axis=1)[:, :frame]
    out: list[tuple[float, float]] = []
    for row, index in enumerate(loud.tolist()):
        if correlation[row, 0] <= 0:
            continue
        normalized = correlation[row] / correlation[row, 0]
        lag = min_lag + int(np.argmax(normalized[min_lag : max_lag + 1]))
        if normalized[lag] < _VOICED_CORRELATION:
            continue
        # Among peaks almost as strong, the shortest lag: a multiple of the period
        # correlates about as well and would halve the pitch.
        window = normalized[min_lag - 1 : max_lag + 2]
        peaks = np.flatnonzero((window[1:-1] > window[:-2]) & (window[1:-1] >= window[2:]))
        strong = peaks[window[1:-1][peaks] >= 0.9 * normalized[lag]]
        if strong.size:
            lag = min_lag + int(strong[0])
        time = offset + (index * hop + frame / 2) / rate
        out.append((round(time, 3), rate / lag))
    return out
