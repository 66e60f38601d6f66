"""Text clean-up and character alignment shared by the embedded TTS engines.

Engines report timing per word or token (``TimedSpan``: a character range of the input text and
the audio time it was spoken in). Clients want ElevenLabs-style timing per *character*, covering
every character of the text they sent, so ``build_alignment`` spreads each span's time over its
characters and gives the gaps between spans (spaces, punctuation, pauses) the time between them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from voicestream.engines.base import Alignment

__all__ = ["TimedSpan", "build_alignment", "has_speakable", "sanitize", "silent_alignment"]


@dataclass(frozen=True, slots=True)
class TimedSpan:
    """Characters ``[start_char, end_char)`` of the text were spoken in ``[start_ms, end_ms]``."""

    start_char: int
    end_char: int
    start_ms: float
    end_ms: float


def sanitize(text: str) -> str:
    """Replace control characters and lone surrogates with spaces, keeping every index.

    Engines take NUL-terminated UTF-8, so a NUL would cut the text and a lone surrogate cannot be
    encoded; a space keeps character offsets equal to the caller's text for the alignment.
    """
    return "".join(" " if unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in text)


def has_speakable(text: str) -> bool:
    """True when ``text`` has anything besides whitespace, punctuation and control characters."""
    return any(unicodedata.category(ch)[0] not in "PZC" for ch in text)


def silent_alignment(text: str) -> Alignment:
    """Every character at time zero with no duration: the alignment of empty audio."""
    zeros = (0,) * len(text)
    return Alignment(chars=tuple(text), char_start_ms=zeros, char_duration_ms=zeros)


def build_alignment(text: str, spans: Sequence[TimedSpan], audio_ms: float) -> Alignment:
    """Character timing for ``text`` from word-level ``spans`` over ``audio_ms`` of audio.

    Spans must be in text order; ones that overlap an earlier span's characters or fall outside
    the text are dropped rather than trusted, since engines report positions loosely. Times are
    clamped into the audio and forced monotonic, so the result always satisfies the contract:
    ``"".join(chars) == text``, non-decreasing starts, and no character ending after the audio.
    """
    n = len(text)
    total = max(0.0, float(audio_ms))
    starts: list[float] = [0.0] * n
    ends: list[float] = [0.0] * n
    char_cursor = 0
    time_cursor = 0.0
    for span in spans:
        if span.start_char < char_cursor or span.end_char <= span.start_char or span.end_char > n:
            continue
        t0 = min(max(span.start_ms, time_cursor), total)
        t1 = min(max(span.end_ms, t0), total)
        _spread(starts, ends, char_cursor, span.start_char, time_cursor, t0)
        _spread(starts, ends, span.start_char, span.end_char, t0, t1)
        char_cursor, time_cursor = span.end_char, t1
    _spread(starts, ends, char_cursor, n, time_cursor, total)
    return _to_ms(text, starts, ends, int(total))


def _spread(starts: list[float], ends: list[float], lo: int, hi: int, t0: float, t1: float) -> None:
    """Share ``[t0, t1]`` evenly among characters ``lo..hi-1``."""
    count = hi - lo
    if count <= 0:
        return
    step = (t1 - t0) / count
    for k in range(count):
        starts[lo + k] = t0 + step * k
        ends[lo + k] = t0 + step * (k + 1)


def _to_ms(text: str, starts: list[float], ends: list[float], limit: int) -> Alignment:
    # Rounding each boundary independently could make a start go backwards or an end pass the
    # audio; clamp after rounding so the integer result keeps the float invariants.
    out_start: list[int] = []
    out_dur: list[int] = []
    previous = 0
    for s, e in zip(starts, ends, strict=True):
        start = min(max(round(s), previous), limit)
        end = min(max(round(e), start), limit)
        out_start.append(start)
        out_dur.append(end - start)
        previous = start
    return Alignment(
        chars=tuple(text), char_start_ms=tuple(out_start), char_duration_ms=tuple(out_dur)
    )
