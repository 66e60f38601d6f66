"""Subtitles from word timings: grouping words into cues, and SRT / WebVTT output."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Cue", "cues_from_words", "to_srt", "to_vtt"]

# ASCII, ellipsis, and the CJK full stop / fullwidth exclamation and question marks.
_SENTENCE_END = (".", "!", "?", "\u2026", "\u3002", "\uff01", "\uff1f")


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle: ``text`` shown from ``start`` to ``end`` seconds."""

    start: float
    end: float
    text: str


def _timestamp(seconds: float, separator: str) -> str:
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _clean(text: str) -> str:
    # A blank line ends a cue in both formats, so text may not contain one.
    return "\n".join(line.strip() for line in text.strip().splitlines() if line.strip())


def to_srt(cues: Iterable[Cue]) -> str:
    """SubRip: numbered blocks separated by blank lines."""
    blocks = [
        f"{index}\n{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}\n"
        f"{_clean(cue.text)}\n"
        for index, cue in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    # "<" and "&" start markup in WebVTT cue text, and "-->" may not appear at all.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: Iterable[Cue]) -> str:
    """WebVTT: the ``WEBVTT`` header, then one block per cue."""
    blocks = [
        f"{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}\n"
        f"{_vtt_escape(_clean(cue.text))}\n"
        for cue in cues
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def cues_from_words(
    words: Sequence[tuple[str, float, float]], max_chars: int = 42, max_gap: float = 0.8
) -> list[Cue]:
    """Group ``(word, start, end)`` timings into cues a viewer can read.

    A new cue starts when the line would pass ``max_chars``, when the speaker pauses
    longer than ``max_gap`` seconds, or after a word that ends a sentence. A single
    word longer than ``max_chars`` gets a cue of its own.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    cues: list[Cue] = []
    text = ""
    start = end = 0.0
    for raw, word_start, word_end in words:
        word = raw.strip()
        if not word:
            continue
        if text and (len(text) + 1 + len(word) > max_chars or word_start - end > max_gap):
            cues.append(Cue(start, end, text))
            text = ""
        if text:
            text = f"{text} {word}"
            end = max(end, word_end)
        else:
            text, start, end = word, word_start, max(word_start, word_end)
        if word.endswith(_SENTENCE_END):
            cues.append(Cue(start, end, text))
            text = ""
    if text:
        cues.append(Cue(start, end, text))
    return cues
