"""Text → Piper phoneme ids, keeping track of which input word each id speaks.

Piper voices were trained on espeak-ng's IPA with the clause punctuation put back into the
phoneme stream (``, . ! ? ; :``), a space after a mid-sentence clause, one sequence per sentence,
and ids framed as ``^ _ p _ p _ … p _ $`` (BOS, then a pad after every symbol, then EOS); that
is what this module produces from the voice's own ``phoneme_id_map``. Symbols the map lacks are
dropped (espeak-ng occasionally emits one a voice never saw), never fatal.

For alignment every id knows the input word it belongs to (``owners``). espeak-ng reports
clauses, not words, and its words do not always match the text's: it joins some ("of the" →
``ʌvðə``) and expands others ("1999" → three words). When a clause has as many phoneme words as
text words they pair up one to one; otherwise each text word is phonemized on its own and the
clause's phonemes are shared out in proportion to those lengths.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from voicestream.engines._espeak_ffi import EspeakLib, PhonemeClause
from voicestream.engines.piper_voice import BOS, EOS, PAD
from voicestream.errors import EngineError

__all__ = ["PhonemeSentence", "PhonemizedText", "phonemize"]

_SENTENCE_END = {"?": "?", "!": "!", ".": ".", "…": "."}
_CLAUSE_END = {",": ",", ";": ";", ":": ":"}
_CLOSERS = "\"')]}»”’"
# A sentence without punctuation can be arbitrarily long; VITS attention grows with the square of
# the sequence, so very long runs are cut between words into several model runs.
_MAX_IDS = 1200
# Symbols that do not make a word longer to say (stress, length marks), for the share-out.
_UNTIMED = set("ˈˌː")


@dataclass(slots=True)
class PhonemeSentence:
    """One model run: ids and, per id, the index of the word it speaks (-1: none)."""

    ids: list[int] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)

    def add(self, symbol_ids: tuple[int, ...], owner: int, pad: tuple[int, ...]) -> None:
        for value in (*symbol_ids, *pad):
            self.ids.append(value)
            self.owners.append(owner)


@dataclass(frozen=True, slots=True)
class PhonemizedText:
    sentences: list[PhonemeSentence]
    words: list[tuple[int, int]]  # character spans [start, end) of the text, by word index
    dropped: int  # phonemes the voice's map does not have


@dataclass(slots=True)
class _Clause:
    phonemes: list[str]  # espeak's words
    tokens: list[int]  # indices into the word list
    terminator: str  # "", or the punctuation fed to the model


def phonemize(
    espeak: EspeakLib, text: str, espeak_voice: str, symbols: Mapping[str, tuple[int, ...]]
) -> PhonemizedText:
    """Phoneme ids for ``text`` (already sanitized) in sentences, with word ownership.

    Raises:
        EngineError: espeak-ng does not know ``espeak_voice``.
    """
    result = espeak.phonemize([text], espeak_voice)
    if result is None:
        raise EngineError(f"espeak-ng has no voice {espeak_voice!r} to phonemize with")
    words = _words(text)
    clauses = [_clause(text, found, words) for found in result[0]]
    owners = _assign_owners(espeak, espeak_voice, text, clauses, words)
    return _to_ids(clauses, owners, words, symbols)


def _words(text: str) -> list[tuple[int, int]]:
    """Spans of the text's words, without the punctuation around them ("(Hello," → Hello)."""
    spans: list[tuple[int, int]] = []
    for match in re.finditer(r"\S+", text):
        start, end = match.start(), match.end()
        while start < end and unicodedata.category(text[start])[0] == "P":
            start += 1
        while end > start and unicodedata.category(text[end - 1])[0] == "P":
            end -= 1
        if start < end:
            spans.append((start, end))
    return spans


def _clause(text: str, found: PhonemeClause, words: list[tuple[int, int]]) -> _Clause:
    tokens = [i for i, (start, _) in enumerate(words) if found.start <= start < found.end]
    return _Clause(found.phonemes.split(), tokens, _terminator(text[found.start : found.end]))


def _terminator(piece: str) -> str:
    tail = piece.rstrip().rstrip(_CLOSERS).rstrip()
    run = ""
    for ch in reversed(tail):
        if ch in _SENTENCE_END or ch in _CLAUSE_END:
            run = ch + run
        else:
            break
    if not run:
        return ""
    # "really?!" asks a question; "well..." ends a sentence; otherwise the last mark wins.
    for mark in ("?", "!", ".", "…"):
        if mark in run:
            return _SENTENCE_END[mark]
    return _CLAUSE_END[run[-1]]


def _assign_owners(
    espeak: EspeakLib,
    espeak_voice: str,
    text: str,
    clauses: list[_Clause],
    words: list[tuple[int, int]],
) -> list[list[list[int]]]:
    """Per clause, per espeak word, per phoneme symbol: the text word it speaks."""
    uneven = [c for c in clauses if c.phonemes and c.tokens and len(c.phonemes) != len(c.tokens)]
    alone: dict[int, str] = {}
    if uneven:
        tokens = sorted({t for c in uneven for t in c.tokens})
        found = espeak.phonemize([text[slice(*words[t])] for t in tokens], espeak_voice) or []
        for token, parts in zip(tokens, found, strict=False):
            alone[token] = "".join(part.phonemes for part in parts)
    owners: list[list[list[int]]] = []
    for clause in clauses:
        if len(clause.phonemes) == len(clause.tokens):
            owners.append(
                [[t] * len(word) for word, t in zip(clause.phonemes, clause.tokens, strict=True)]
            )
        elif not clause.tokens:
            owners.append([[-1] * len(word) for word in clause.phonemes])
        else:
            owners.append(_share_out(clause, alone))
    return owners


def _share_out(clause: _Clause, alone: dict[int, str]) -> list[list[int]]:
    """Give each phoneme symbol of the clause to a text word, in order, in proportion to how
    long each word is when phonemized alone."""
    weights = [
        max(1, sum(ch not in _UNTIMED and not ch.isspace() for ch in alone.get(t, "")))
        for t in clause.tokens
    ]
    total = sum(weights)
    timed = sum(ch not in _UNTIMED for word in clause.phonemes for ch in word)
    bounds: list[float] = []
    running = 0
    for weight in weights:
        running += weight
        bounds.append(running / total * max(1, timed))
    result: list[list[int]] = []
    position = 0
    index = 0
    for word in clause.phonemes:
        owned: list[int] = []
        for ch in word:
            while index < len(bounds) - 1 and position + 0.5 > bounds[index]:
                index += 1
            owned.append(clause.tokens[index])
            if ch not in _UNTIMED:
                position += 1
        result.append(owned)
    return result


class _IdWriter:
    """Builds the sentences' id sequences in Piper's framing, one symbol at a time."""

    def __init__(self, symbols: Mapping[str, tuple[int, ...]]) -> None:
        self.symbols = symbols
        self.pad = symbols[PAD]
        self.space = symbols.get(" ", ())
        self.longest = max(len(key) for key in symbols)
        self.sentences: list[PhonemeSentence] = []
        self.dropped = 0
        self._open()

    def _open(self) -> None:
        self.current = PhonemeSentence()
        self.current.add(self.symbols[BOS], -1, self.pad)
        self.spoken = False  # the current sentence has at least one phoneme

    def close(self) -> None:
        if self.spoken:
            self.current.add(self.symbols[EOS], -1, ())
            self.sentences.append(self.current)
        self._open()

    def word(self, word: str, word_owners: list[int], *, first: bool) -> None:
        pieces, missing = _symbols(word, word_owners, self.symbols, self.longest)
        self.dropped += missing
        if not pieces:
            return
        if self.spoken and len(self.current.ids) + 2 * len(pieces) + 4 > _MAX_IDS:
            self.close()
        if not first and self.spoken and self.space:
            self.current.add(self.space, -1, self.pad)
        for ids, owner in pieces:
            self.current.add(ids, owner, self.pad)
        self.spoken = True

    def end_clause(self, mark: str) -> None:
        if mark and mark in self.symbols and self.spoken:
            self.current.add(self.symbols[mark], -1, self.pad)
        if mark in _SENTENCE_END.values():
            self.close()
        elif self.spoken and self.space:
            self.current.add(self.space, -1, self.pad)


def _to_ids(
    clauses: list[_Clause],
    owners: list[list[list[int]]],
    words: list[tuple[int, int]],
    symbols: Mapping[str, tuple[int, ...]],
) -> PhonemizedText:
    writer = _IdWriter(symbols)
    for clause, clause_owners in zip(clauses, owners, strict=True):
        if not clause.phonemes:
            continue
        for position, (word, word_owners) in enumerate(
            zip(clause.phonemes, clause_owners, strict=True)
        ):
            writer.word(word, word_owners, first=position == 0)
        writer.end_clause(clause.terminator)
    writer.close()
    return PhonemizedText(writer.sentences, words, writer.dropped)


def _symbols(
    word: str, word_owners: list[int], symbols: Mapping[str, tuple[int, ...]], longest: int
) -> tuple[list[tuple[tuple[int, ...], int]], int]:
    """The word's symbols as (ids, owner), longest match first; and how many were unknown.

    espeak's IPA may carry precomposed letters; the maps list base letters and combining marks
    separately (Piper decomposes to NFD), so each character is decomposed before lookup.
    """
    chars: list[tuple[str, int]] = []
    for ch, owner in zip(word, word_owners, strict=True):
        chars.extend((part, owner) for part in unicodedata.normalize("NFD", ch))
    pieces: list[tuple[tuple[int, ...], int]] = []
    missing = 0
    i = 0
    while i < len(chars):
        for size in range(min(longest, len(chars) - i), 0, -1):
            key = "".join(ch for ch, _ in chars[i : i + size])
            if key in symbols:
                pieces.append((symbols[key], chars[i][1]))
                i += size
                break
        else:
            missing += 1
            i += 1
    return pieces, missing
