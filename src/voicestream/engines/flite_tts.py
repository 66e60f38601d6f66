"""flite, in-process through ctypes: fast CPU speech with character alignment.

Thread safety: flite keeps no mutable global state on the synthesis path (every call builds its
own utterance; the voices and lexicon are read-only once registered), so one shared voice serves
several executor threads at once; ``tests/engines/test_flite_tts.py`` hammers it from four
threads. The one shared thing is libc ``rand()``, which the clustergen voices (slt, rms, awb) use
for unvoiced excitation noise. Each synthesis seeds it from its text first, so the same text
gives the same audio whatever the process synthesized before: without that, a sentence's noise
(and how well a recognizer hears it) depended on every earlier request. Syntheses running at the
same moment on several threads still share the one generator, so their noise may differ from a
lone run's; lengths and timings are exact either way. kal16 (diphone) never draws on it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicestream.engines._flite_ffi import FliteLib, load_flite
from voicestream.engines.alignment import (
    TimedSpan,
    build_alignment,
    has_speakable,
    sanitize,
    silent_alignment,
)
from voicestream.engines.ascii_fold import fold_to_ascii
from voicestream.engines.base import Synthesis, TTSEngine, Voice
from voicestream.errors import EngineError, UnknownVoice

__all__ = ["FLITE_SAMPLE_RATE", "FliteTTS"]

# All four bundled voices synthesize at 16 kHz (checked against the wave of a real synthesis in
# the tests); the catalog needs the rate before any synthesis has run.
FLITE_SAMPLE_RATE = 16000
_MAX_TOKEN = 64

_VOICES = (
    Voice("slt", "SLT (US English, female)", "en-US", "female", FLITE_SAMPLE_RATE, "flite"),
    Voice("rms", "RMS (US English, male)", "en-US", "male", FLITE_SAMPLE_RATE, "flite"),
    Voice(
        "awb", "AWB (Scottish English, male)", "en-GB-scotland", "male", FLITE_SAMPLE_RATE, "flite"
    ),
    Voice("kal16", "KAL (US English, male, diphone)", "en-US", "male", FLITE_SAMPLE_RATE, "flite"),
)


@dataclass(frozen=True, slots=True)
class _Token:
    name: str
    start_ms: float
    end_ms: float


class FliteTTS(TTSEngine):
    """Voices ``slt``, ``rms``, ``awb`` and ``kal16``; libraries load at construction.

    Raises:
        EngineUnavailable: (from the constructor) the flite libraries are not installed.
    """

    name = "flite"

    def __init__(self) -> None:
        self._flite: FliteLib = load_flite()

    def voices(self) -> list[Voice]:
        return list(_VOICES)

    def warm_up(self) -> None:
        # The first synthesis per voice pages in its model data from the shared library.
        for voice in _VOICES:
            self.synthesize("Hello.", voice)

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        pointer = self._flite.voices.get(voice.id)
        if voice.engine != self.name or pointer is None:
            raise UnknownVoice(f"flite has no voice {voice.id!r}", details={"voice": voice.id})
        folded, origin = _break_long_tokens(*fold_to_ascii(sanitize(text)))
        if not has_speakable(folded):
            return Synthesis(b"", voice.sample_rate, silent_alignment(text))
        lib = self._flite.lib
        data = folded.encode("ascii")
        if _SRAND is not None:
            _SRAND(zlib.crc32(data))
        utt = lib.flite_synth_text(data, pointer)
        if not utt:
            raise EngineError(f"flite failed to synthesize {len(text)} characters")
        try:
            pcm, rate = _read_wave(lib, utt, voice.sample_rate)
            tokens = _read_tokens(lib, utt, rate)
        finally:
            lib.delete_utterance(utt)
        if not tokens or not pcm:
            # Nothing flite could pronounce (e.g. "<>"): a pause is not worth sending.
            return Synthesis(b"", rate, silent_alignment(text))
        spans = _map_tokens(tokens, folded, origin)
        audio_ms = len(pcm) / 2 * 1000 / rate
        return Synthesis(pcm, rate, build_alignment(text, spans, audio_ms))


def _load_srand() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).srand if name else None
    except (OSError, AttributeError):  # no libc to seed: the noise just is not repeatable
        return None


_SRAND = _load_srand()


def _break_long_tokens(folded: str, origin: list[int]) -> tuple[str, list[int]]:
    """Split whitespace-free runs longer than ``_MAX_TOKEN`` with spaces.

    flite's cost grows faster than linearly with token length (slt: 10,000 letters without a
    space take 35 s; in 64-letter tokens 4.6 s, the usual ~50x real time), so one pasted blob
    cannot hog a synthesis thread.
    """
    if len(folded) <= _MAX_TOKEN or all(len(t) <= _MAX_TOKEN for t in folded.split()):
        return folded, origin
    chars: list[str] = []
    where: list[int] = []
    run = 0
    for ch, index in zip(folded, origin, strict=True):
        run = 0 if ch.isspace() else run + 1
        if run > _MAX_TOKEN:
            chars.append(" ")
            where.append(index)
            run = 1
        chars.append(ch)
        where.append(index)
    return "".join(chars), where


def _read_wave(lib: ctypes.CDLL, utt: int, default_rate: int) -> tuple[bytes, int]:
    wave_ptr = lib.utt_wave(utt)
    if not wave_ptr:
        return b"", default_rate
    wave = wave_ptr.contents
    frames, channels = max(0, wave.num_samples), max(1, wave.num_channels)
    if frames == 0 or not wave.samples:
        return b"", wave.sample_rate or default_rate
    samples = np.ctypeslib.as_array(wave.samples, shape=(frames * channels,)).copy()
    if channels > 1:
        # flite voices are mono; average defensively rather than emit interleaved audio.
        samples = samples.reshape(frames, channels).mean(axis=1).astype(np.int16)
    if sys.byteorder == "big":
        samples = samples.byteswap()
    return samples.tobytes(), wave.sample_rate


def _feat_string(lib: ctypes.CDLL, item: int, name: bytes) -> str | None:
    # flite aborts the process (cst_error) when asked for an absent feature, so always check.
    if not lib.item_feat_present(item, name):
        return None
    raw: bytes | None = lib.item_feat_string(item, name)
    return None if raw is None else raw.decode("ascii", "replace")


def _segment_end(lib: ctypes.CDLL, segment: int | None) -> float | None:
    if not segment or not lib.item_feat_present(segment, b"end"):
        return None
    return float(lib.item_feat_float(segment, b"end"))


def _word_times(lib: ctypes.CDLL, word: int) -> tuple[float, float] | None:
    first = lib.path_to_item(word, b"R:SylStructure.daughter1.daughter1.R:Segment")
    last = lib.path_to_item(word, b"R:SylStructure.daughtern.daughtern.R:Segment")
    end = _segment_end(lib, last)
    if not first or end is None:
        return None  # a word flite did not pronounce has no segments
    previous = lib.item_prev(first)
    start = _segment_end(lib, previous) if previous else 0.0
    return (start or 0.0), end


def _read_tokens(lib: ctypes.CDLL, utt: int, rate: int) -> list[_Token]:
    """Each input token that produced speech, with the time span of its words.

    The Token relation is used rather than Word because its items are the caller's own tokens
    ("$3.50") while words are normalised ("three dollars fifty cents").
    """
    tokens: list[_Token] = []
    if not lib.utt_relation_present(utt, b"Token"):
        return tokens
    item = lib.relation_head(lib.utt_relation(utt, b"Token"))
    while item:
        name = _feat_string(lib, item, b"name")
        word = lib.item_daughter(item)
        times: list[tuple[float, float]] = []
        while word:
            timed = _word_times(lib, word)
            if timed is not None:
                times.append(timed)
            word = lib.item_next(word)
        if name and times:
            start = min(t[0] for t in times) * 1000.0
            end = max(t[1] for t in times) * 1000.0
            tokens.append(_Token(name, start, end))
        item = lib.item_next(item)
    return tokens


def _map_tokens(tokens: list[_Token], folded: str, origin: list[int]) -> list[TimedSpan]:
    """Find each token in the folded text, in order, and express it in original characters."""
    spans: list[TimedSpan] = []
    cursor = 0
    for token in tokens:
        at = folded.find(token.name, cursor)
        if at < 0:
            continue  # the gap around it absorbs its time
        stop = at + len(token.name)
        spans.append(TimedSpan(origin[at], origin[stop - 1] + 1, token.start_ms, token.end_ms))
        cursor = stop
    return spans
