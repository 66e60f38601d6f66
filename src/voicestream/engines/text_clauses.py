"""Splitting incrementally arriving text into clauses a TTS engine can start on.

A clause ends at ``, ; : . ! ?`` (or a newline) followed by whitespace: punctuation at the very
end of the buffer is not yet a boundary, since "3." may become "3.5". Long runs without
punctuation are cut at a space so the engine never waits for a huge clause.

The first clause is what the listener waits for: a neural voice synthesizes a clause in one
run, in time that grows with its length (Piper on two cores: "Thanks for calling," in about
115 ms, an 80-character sentence in about 450 ms). So a first clause longer than
``first_clause_chars`` is cut early, at a phrase boundary where one is near (before a
preposition or conjunction: "Our office is open | from nine in the morning…"), else at the last
space. The rest follows while the first plays, in clauses of the usual size.
"""

from __future__ import annotations

import re

__all__ = ["ClauseSplitter"]

_BOUNDARY = re.compile(r"[,;:.!?\u2026\u3002\uff01\uff1f]+[\"')\]]*\s+|\n+")
# A very short first clause ("Hi,") gains little latency and costs prosody; keep them together.
_MIN_CLAUSE_CHARS = 3
# An early first clause is at least this long: a word or two would sound clipped.
_MIN_EARLY_CHARS = 12
_EARLY_SLACK_CHARS = 20
# Words a spoken phrase naturally starts with: a cut before one keeps the prosody natural.
_PHRASE_STARTS = frozenset(
    "about after and as at because before but by for from if in into like of on or so than "
    "that then through to until when where which while who with without".split()
)


class ClauseSplitter:
    """Buffers text; hands out complete clauses with their offset in the whole text."""

    def __init__(self, max_clause_chars: int = 300, first_clause_chars: int | None = None) -> None:
        """``first_clause_chars``: cut the first clause early past this length (None: no)."""
        self._buf = ""
        self._offset = 0  # offset of _buf[0] in the stream's whole text
        self._max = max_clause_chars
        self._first_max = first_clause_chars
        self._started = False  # a clause with words in it has been handed out

    @property
    def pending(self) -> str:
        return self._buf

    def push(self, text: str) -> list[tuple[int, str]]:
        """Add text; return the clauses completed by it as ``(offset, clause)``."""
        self._buf += text
        out: list[tuple[int, str]] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                break
            out.append(self._take(cut))
        return [c for c in out if c[1].strip()]

    def flush(self) -> list[tuple[int, str]]:
        """Everything buffered, as clauses, boundary or not."""
        out = self.push("")
        if self._buf:
            out.append(self._take(len(self._buf)))
        return [c for c in out if c[1].strip()]

    def _next_cut(self) -> int | None:
        for m in _BOUNDARY.finditer(self._buf):
            if m.end() >= _MIN_CLAUSE_CHARS and self._buf[: m.start()].strip():
                if not self._started and (early := self._early_cut(m.end())) is not None:
                    return early
                return m.end()
        if not self._started and (early := self._early_cut(len(self._buf))) is not None:
            return early
        if len(self._buf) > self._max:
            space = self._buf.rfind(" ", 0, self._max)
            return space + 1 if space > 0 else self._max
        return None

    def _early_cut(self, natural: int) -> int | None:
        """Where to cut the first clause, whose natural end is ``natural``, if that is too far
        and the text before it holds a cut point (only once whole words are there)."""
        limit = self._first_max
        # Just past the limit, the clause's own end is worth its few extra characters.
        if limit is None or natural <= limit + _EARLY_SLACK_CHARS:
            return None
        # Spaces inside the window, each followed by a complete word.
        spaces = [
            i
            for i in range(_MIN_EARLY_CHARS, min(limit, natural - 1) + 1)
            if self._buf[i] == " " and " " in self._buf[i + 1 : natural]
        ]
        if not spaces:
            return None
        for i in reversed(spaces):
            word = self._buf[i + 1 : natural].split(" ", 1)[0].strip(",;:").lower()
            if word in _PHRASE_STARTS:
                return i + 1
        return spaces[-1] + 1

    def _take(self, cut: int) -> tuple[int, str]:
        clause, self._buf = self._buf[:cut], self._buf[cut:]
        offset = self._offset
        self._offset += cut
        self._started = self._started or bool(clause.strip())
        return offset, clause
