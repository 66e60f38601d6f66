"""What licence a model folder's own files state (for ``voicestream models list``).

One reading for every kind of model: a ``license:`` line (Hugging Face model cards' front
matter, Piper's MODEL_CARD), else a well-known licence named in a LICENSE file's text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["stated_license"]

# Enough of a file for a card's front matter or a licence's title, never a whole weights file.
_HEAD_CHARS = 20000
_LICENSE_LINE = re.compile(r"^\W*licen[sc]e\s*:\s*(\S[^\n]*)", re.IGNORECASE | re.MULTILINE)
# Lower-case fragment → SPDX id; the first that matches wins (GPL texts mention neither).
_KNOWN = (
    ("apache", "Apache-2.0"),
    ("cc-by-4.0", "CC-BY-4.0"),
    ("cc0", "CC0-1.0"),
    ("mit", "MIT"),
)


def stated_license(files: Iterable[Path]) -> str | None:
    """The licence the first of ``files`` that states one names; None when none does.

    A ``license:`` line gives its value (as an SPDX id when it is a well-known licence, else as
    written); a LICENSE file's text counts only when it names a well-known licence. Unreadable
    or missing files are skipped.
    """
    for path in files:
        try:
            head = path.read_text(encoding="utf-8", errors="replace")[:_HEAD_CHARS]
        except OSError:
            continue
        line = _LICENSE_LINE.search(head)
        if line:
            value = line.group(1).strip().strip("\"'")
            return _spdx(value) or value
        if path.name.upper().startswith(("LICENSE", "LICENCE", "COPYING")):
            known = _spdx(head)
            if known:
                return known
    return None


def _spdx(text: str) -> str | None:
    lowered = text.lower()
    for needle, spdx in _KNOWN:
        if re.search(rf"(?<![a-z]){re.escape(needle)}(?![a-z])", lowered):
            return spdx
    return None
