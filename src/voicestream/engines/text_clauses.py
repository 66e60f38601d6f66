"""Splitting incrementally arriving text into clauses a TTS engine can start on.

A clause ends at ``, ; : . ! ?`` (or a newline) followed by whitespace: punctuation at the very
end of the buffer is not yet a boundary, since "3." may become "3.5". Long runs without
punctuation are cut at a space so the engine never waits for a huge clause.
"""

from __future__ import annotations

import re

__all__ = ["ClauseSplitter"]

_BOUNDARY = re.compile(r"[,;:.!?\u2026\u3002\uff01\uff1f]+[\"')\]]*\s+|\n+")
# A very short first clause ("Hi,") gains little latency and costs prosody; keep them together.
_MIN_CLAUSE_CHARS = 3


class ClauseSplitter:
    """Buffers text; hands out complete clauses with their offset in the whole text."""

    def __init__(self, max_clause_chars: int = 300) -> None:
        self._buf = ""
        self._offset = 0  # offset of _buf[0] in the stream's whole text
        self._max = max_clause_chars

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
                return m.end()
        if len(self._buf) > self._max:
            space = self._buf.rfind(" ", 0, self._max)
            return space + 1 if space > 0 else self._max
        return None

    def _take(self, cut: int) -> tuple[int, str]:
        clause, self._buf = self._buf[:cut], self._buf[cut:]
        offset = self._offset
        self._offset += cut
        return offset, clause
