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
_TIMING_EXAMPLE = "00:00:01,000 --> 00:00:02,000"
_QUOTED_MAX = 60


def _seconds(hours: str | None, minutes: str, secs: str, fraction: str) -> float:
    # A fraction of fewer than three digits is tenths or hundredths: "1,5" is 1.5 s.
    millis = int(fraction.ljust(3, "0"))
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(secs) + millis / 1000


def _fail(line: int, problem: str) -> ValidationFailed:
    return ValidationFailed(f"line {line}: {problem}", details={"line": line})


def _quoted(line: str) -> str:
    text = line.strip()
    if len(text) > _QUOTED_MAX:
        text = text[: _QUOTED_MAX - 3] + "..."
    return f"'{text}'"


@dataclass(frozen=True, slots=True)
class _Block:
    """The non-blank lines of one block and the 1-based line number of the first."""

    first: int
    lines: list[str]

    def number(self, index: int) -> int:
        return self.first + index


def _timing(block: _Block, index: int) -> tuple[float, float]:
    line = block.lines[index]
    match = _TIMING.match(line)
    if match is None:
        raise _fail(block.number(index), f"bad timing {_quoted(line)} (expected {_TIMING_EXAMPLE})")
    groups = match.groups()
    start, end = _seconds(*groups[:4]), _seconds(*groups[4:])
    if end < start:
        raise _fail(
            block.number(index),
            f"the cue ends ({end:.3f} s) before it starts ({start:.3f} s)",
        )
    return start, end


def _blocks(text: str) -> list[_Block]:
    """Blocks separated by blank (or whitespace-only) lines, with their line numbers."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    blocks: list[_Block] = []
    current: list[str] = []
    first = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip()
        if line.strip():
            if not current:
                first = number
            current.append(line)
        elif current:
            blocks.append(_Block(first, current))
            current = []
    if current:
        blocks.append(_Block(first, current))
    return blocks


def _cue(block: _Block, timing_index: int, text: str) -> Cue:
    start, end = _timing(block, timing_index)
    if not text:
        raise _fail(block.number(timing_index), "the cue has no text after its timing line")
    return Cue(start, end, text)


def _check_order(cues: list[Cue], lines: list[int], allow_overlap: bool) -> None:
    for previous, cue, line in zip(cues, cues[1:], lines[1:], strict=False):
        if cue.start < previous.start:
            raise _fail(
                line,
                f"the cue starts ({cue.start:.3f} s) before the cue above it "
                f"({previous.start:.3f} s): cues must be in time order",
            )
        if not allow_overlap and cue.start < previous.end:
            raise _fail(
                line,
                f"the cue starts ({cue.start:.3f} s) before the cue above it ends "
                f"({previous.end:.3f} s)",
            )


def parse_srt(text: str, *, allow_overlap: bool = True) -> list[Cue]:
    """The cues of a SubRip document, in document order; their text as written (SRT's
    ``<i>`` and ``<b>`` stay: they are part of the text to SRT's readers).

    The cue number line may be left out (many tools do); when present it must be a number.
    ``allow_overlap`` False also refuses a cue that starts before the previous one ends.

    Raises:
        ValidationFailed: naming the line (``details["line"]``, 1-based): a bad or missing
            timing line, a non-numeric cue number, a cue without text, a cue that ends before
            it starts, cues out of time order (or overlapping, when not allowed).
    """
    cues: list[Cue] = []
    lines: list[int] = []
    for block in _blocks(text):
        head = block.lines[0]
        if _TIMING.match(head) is not None or "-->" in head:
            timing_index = 0
        elif len(block.lines) > 1 and "-->" in block.lines[1]:
            if not head.strip().isdigit():
                raise _fail(block.first, f"the cue number {_quoted(head)} is not a number")
            timing_index = 1
        elif head.strip().isdigit():
            line = block.lines[1] if len(block.lines) > 1 else ""
            if not line:
                raise _fail(block.first, "the cue number is not followed by a timing line")
            raise _fail(block.number(1), f"bad timing {_quoted(line)} (expected {_TIMING_EXAMPLE})")
        else:
            raise _fail(
                block.first,
                f"expected a cue number or a timing line ({_TIMING_EXAMPLE}), got {_quoted(head)}",
            )
        body = "\n".join(line.strip() for line in block.lines[timing_index + 1 :]).strip()
        cues.append(_cue(block, timing_index, body))
        lines.append(block.number(timing_index))
    _check_order(cues, lines, allow_overlap)
    return cues


def parse_vtt(text: str, *, allow_overlap: bool = True) -> list[Cue]:
    """The cues of a WebVTT document, in document order, their text without markup (voice,
    class and timestamp tags) and with character references decoded.

    ``allow_overlap`` False also refuses a cue that starts before the previous one ends.

    Raises:
        ValidationFailed: naming the line (``details["line"]``, 1-based): no ``WEBVTT``
            signature, a bad or missing timing line, a cue without text, a cue that ends before
            it starts, cues out of time order (or overlapping, when not allowed).
    """
    blocks = _blocks(text)
    header = blocks[0].lines[0] if blocks else ""
    if not (header == "WEBVTT" or header.startswith(("WEBVTT ", "WEBVTT\t"))):
        line = blocks[0].first if blocks else 1
        raise _fail(line, "not a WebVTT document: it must start with WEBVTT")
    cues: list[Cue] = []
    lines: list[int] = []
    for block in blocks[1:]:
        head = block.lines[0]
        if head.startswith(("NOTE", "STYLE", "REGION")) and "-->" not in head:
            continue
        # A cue may have an identifier line before its timing.
        if "-->" in head:
            timing_index = 0
        elif len(block.lines) > 1 and "-->" in block.lines[1]:
            timing_index = 1
        else:
            raise _fail(
                block.first,
                f"expected a cue timing line (00:00:01.000 --> 00:00:02.000), got {_quoted(head)}",
            )
        body = "\n".join(line.strip() for line in block.lines[timing_index + 1 :])
        plain = html.unescape(_VTT_TAG.sub("", body)).strip()
        cues.append(_cue(block, timing_index, plain))
        lines.append(block.number(timing_index))
    _check_order(cues, lines, allow_overlap)
    return cues
