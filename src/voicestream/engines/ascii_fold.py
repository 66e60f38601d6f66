"""Fold Unicode text to the ASCII that flite's US English front end understands.

flite reads bytes: an "ü" becomes two spelled-out junk "words". Folding "Grüße" to "Grusse" keeps
it speakable, and the index map lets the alignment point back at the caller's own characters.
"""

from __future__ import annotations

import unicodedata

__all__ = ["fold_to_ascii"]

# Typography that NFKD leaves non-ASCII but that has an obvious spoken equivalent.
_TABLE: dict[str, str] = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u2033": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    # A dash between words is a pause; a lone "-" token is silent punctuation to flite.
    "\u2013": " - ",
    "\u2014": " - ",
    "\u2015": " - ",
    "\u2212": "-",
    "\u00df": "ss",
    "\u00e6": "ae",
    "\u00c6": "AE",
    "\u0153": "oe",
    "\u0152": "OE",
    "\u00f8": "o",
    "\u00d8": "O",
    "\u0142": "l",
    "\u0141": "L",
    "\u00f0": "d",
    "\u00d0": "D",
    "\u00fe": "th",
    "\u00de": "Th",
    "\u20ac": " euros ",
    "\u00a3": " pounds ",
}


def fold_to_ascii(text: str) -> tuple[str, list[int]]:
    """Return ``(ascii_text, origin)`` where ``origin[i]`` is the index in ``text`` of the
    character that produced ``ascii_text[i]``.

    Characters with no ASCII rendering (emoji, other scripts) become a space so neighbouring
    words stay apart; combining marks vanish into the letter before them.
    """
    out: list[str] = []
    origin: list[int] = []
    for index, ch in enumerate(text):
        piece = _fold_char(ch)
        out.append(piece)
        origin.extend([index] * len(piece))
    return "".join(out), origin


def _fold_char(ch: str) -> str:
    if ch.isascii():
        return ch if ch.isprintable() or ch in "\t\n\r" else " "
    mapped = _TABLE.get(ch)
    if mapped is not None:
        return mapped
    category = unicodedata.category(ch)
    if category == "Mn":
        return ""
    if category.startswith("Z"):
        return " "
    decomposed = unicodedata.normalize("NFKD", ch)
    ascii_part = "".join(c for c in decomposed if c.isascii() and c.isprintable())
    return ascii_part or " "
