"""The text normalisation applied to references and transcripts alike before scoring WER.

Whisper writes what it hears the way a person would type it ("The museum opens at 9:30.",
"$12", "5%", "2nd floor"); pocketsphinx's dictionary only has words ("nine thirty"). Scored
raw, Whisper would lose points for formatting, not for hearing. So both sides go through the
same steps, in this order:

1. lowercase; "a.m."/"p.m." after a number become "a m"/"p m";
2. numbers become words: "$12" → "twelve dollars", "5%" → "five percent", "22°" → "twenty two
   degrees", "9:30" or "9.30" → "nine thirty" ("9:00" → "nine", "10:05" → "ten oh five"),
   "at 730" → "at seven thirty" (a time without its colon, after "at" or "by"), "2nd" →
   "second", "40,000" → "forty thousand", "2.5" → "two point five", other digit runs as
   cardinals without "and" ("120" → "one hundred twenty");
3. hyphens and all other punctuation become spaces, except apostrophes inside words ("it's");
4. whitespace collapses.

The references (benchmarks' own sentences) are written in words, as a speaker says them, so
the synthesizers read them unambiguously; step 2 then only ever changes transcripts.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["normalize", "number_words"]

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_words(n: int) -> str:
    """A non-negative integer as spoken English, without "and": 120 → "one hundred twenty"."""
    if n < 1000:
        return " ".join(_below_thousand(n))
    words: list[str] = []
    for scale, name in _SCALES:
        if n >= scale:
            words += [number_words(n // scale), name]
            n %= scale
    if n:
        words += _below_thousand(n)
    return " ".join(words)


def _ordinal(n: int) -> str:
    *head, last = number_words(n).split()
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def _time(match: re.Match[str]) -> str:
    hours, minutes = int(match[1]), int(match[2])
    if minutes == 0:
        return f" {number_words(hours)} "
    if minutes < 10:
        return f" {number_words(hours)} oh {number_words(minutes)} "
    return f" {number_words(hours)} {number_words(minutes)} "


def _decimal(match: re.Match[str]) -> str:
    whole, fraction = match[1].replace(",", ""), match[2]
    spoken_fraction = " ".join(_ONES[int(d)] for d in fraction)
    return f" {number_words(int(whole))} point {spoken_fraction} "


def _cardinal(match: re.Match[str]) -> str:
    return f" {number_words(int(match[0].replace(',', '')))} "


_STEPS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"(\d)\s*([ap])\.\s?m\.?"), r"\1 \2 m"),
    (re.compile(r"(\d)\s*([ap])m\b"), r"\1 \2 m"),
    (re.compile(r"\$\s?(\d[\d,]*)"), r"\1 dollars"),
    (re.compile(r"(\d)\s?%"), r"\1 percent"),
    (re.compile(r"(\d)\s?°\s?[cf]?"), r"\1 degrees"),
    # A time, not a decimal: at most two digits before, exactly two after.
    (re.compile(r"(?<![\d.,])(\d{1,2})[:.](\d{2})(?![\d.,]*\d)"), _time),
    # "at 730": Whisper sometimes drops the colon of a time it heard as "seven thirty".
    (re.compile(r"(?<=\b(?:at|by) )([1-9]|1[0-2])([0-5]\d)\b"), _time),
    (re.compile(r"(\d+)(?:st|nd|rd|th)\b"), lambda m: f" {_ordinal(int(m[1]))} "),
    (re.compile(r"(\d[\d,]*)\.(\d+)"), _decimal),
    (re.compile(r"\d{1,3}(?:,\d{3})+|\d+"), _cardinal),
)


def normalize(text: str) -> str:
    """``text`` as the plain lowercase words both engines' WER is scored on."""
    out = text.lower()
    for pattern, replacement in _STEPS:
        out = pattern.sub(replacement, out)
    out = re.sub(r"[^a-z0-9']+", " ", out)
    out = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", out)  # quotes, not apostrophes inside words
    return " ".join(out.split())
