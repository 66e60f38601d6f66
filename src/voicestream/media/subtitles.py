"""Subtitles from word timings: grouping words into cues, SRT / WebVTT output, and reading
SRT / WebVTT back (uploaded subtitles; checking our own output)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from voicestream.errors import ValidationFailed

__all__ = ["Cue", "cues_from_words", "parse_srt", "parse_vtt", "to_srt", "to_vtt"]

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


# --- reading ---------------------------------------------------------------------------------

# SRT writes "00:00:01,500"; many tools write a dot instead, and WebVTT may leave out the hours.
_TIME = r"(?:(\d+):)?([0-5]?\d):([0-5]\d)[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s+-->\s+{_TIME}(?:\s+.*)?$")
_VTT_TAG = re.compile(r"<[^>]*>")
_BLOCK_BREAK = re.compile(r"\n[ \t]*\n")


def _seconds(hours: str | None, minutes: str, secs: str, fraction: str) -> float:
    # A fraction of fewer than three digits is tenths or hundredths: "1,5" is 1.5 s.
    millis = int(fraction.ljust(3, "0"))
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(secs) + millis / 1000


def _timing(line: str, number: int) -> tuple[float, float] | None:
    match = _TIMING.match(line)
    if match is None:
        return None
    groups = match.groups()
    start, end = _seconds(*groups[:4]), _seconds(*groups[4:])
    if end < start:
        raise ValidationFailed(
            f"subtitle cue {number} ends before it starts",
            details={"cue": number, "start": start, "end": end},
        )
    return start, end


def _blocks(text: str) -> list[list[str]]:
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    blocks = []
    for block in _BLOCK_BREAK.split(text):
        lines = [line.rstrip() for line in block.split("\n")]
        while lines and not lines[0].strip():
            lines.pop(0)
        if lines:
            blocks.append(lines)
    return blocks


def parse_srt(text: str) -> list[Cue]:
    """The cues of a SubRip document, in document order; their text as written (SRT's
    ``<i>`` and ``<b>`` stay: they are part of the text to SRT's readers).

    Raises:
        ValidationFailed: a block without a timing line, or a cue that ends before it starts.
    """
    cues: list[Cue] = []
    for number, lines in enumerate(_blocks(text), start=1):
        # The counter line is optional in practice; the timing is on the first or second line.
        found = None
        body: list[str] = []
        for index in range(min(2, len(lines))):
            found = _timing(lines[index], number)
            if found is not None:
                body = lines[index + 1 :]
                break
        if found is None:
            raise ValidationFailed(
                f"SRT block {number} has no timing line (00:00:01,000 --> 00:00:02,000)",
                details={"block": number},
            )
        cues.append(Cue(found[0], found[1], "\n".join(line.strip() for line in body).strip()))
    return cues


def parse_vtt(text: str) -> list[Cue]:
    """The cues of a WebVTT document, in document order, their text without markup (voice,
    class and timestamp tags) and with character references decoded.

    Raises:
        ValidationFailed: no ``WEBVTT`` signature, or a cue that ends before it starts.
    """
    blocks = _blocks(text)
    header = blocks[0][0] if blocks else ""
    if not (header == "WEBVTT" or header.startswith(("WEBVTT ", "WEBVTT\t"))):
        raise ValidationFailed("not a WebVTT document: it must start with WEBVTT")
    cues: list[Cue] = []
    for lines in blocks[1:]:
        if lines[0].startswith(("NOTE", "STYLE", "REGION")) and "-->" not in lines[0]:
            continue
        # A cue may have an identifier line before its timing.
        for index in range(min(2, len(lines))):
            found = _timing(lines[index], len(cues) + 1)
            if found is not None:
                body = "\n".join(line.strip() for line in lines[index + 1 :])
                plain = html.unescape(_VTT_TAG.sub("", body)).strip()
                cues.append(Cue(found[0], found[1], plain))
                break
    return cues
