"""Block lists: words and phrases matched whole, whatever their case or Unicode spelling.

Text and terms are both normalized the same way (NFKC, case-folded, combining marks dropped,
runs of whitespace as one space), so full-width "BAD", "Bád" and "bad" are one word; a term
matches on word boundaries only, so "ass" is not found in "class".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["TermList", "normalize"]

_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    bare = "".join(
        ch for ch in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(ch)
    )
    return _SPACES.sub(" ", bare).strip()


class TermList:
    """A compiled block list; ``first_match`` over already ``normalize``d text."""

    def __init__(self, terms: Iterable[str]) -> None:
        self.terms = tuple(dict.fromkeys(t for t in (normalize(term) for term in terms) if t))
        if self.terms:
            alternatives = "|".join(
                re.escape(term).replace(r"\ ", r"\s+")
                for term in sorted(self.terms, key=len, reverse=True)
            )
            self._pattern: re.Pattern[str] | None = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
        else:
            self._pattern = None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def first_match(self, normalized: str) -> str | None:
        if self._pattern is None:
            return None
        found = self._pattern.search(normalized)
        return None if found is None else found.group(0)
