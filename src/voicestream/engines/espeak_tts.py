"""espeak-ng, in-process through ctypes: many languages, robotic but instant.

espeak-ng is not thread-safe (one global synthesizer), so every call is serialized on the
binding's ``ESPEAK_LOCK``; a synthesis takes well under a millisecond per word, so the lock is
never held long and one executor thread is all this engine can use.
Alignment comes from espeak's word events (character position and audio time of each word).
"""

from __future__ import annotations

import logging
import sys

import numpy as np

from voicestream.engines._espeak_ffi import (
    EVENT_END,
    EVENT_SENTENCE,
    EVENT_WORD,
    EspeakLib,
    Event,
    load_espeak,
)
from voicestream.engines.alignment import (
    TimedSpan,
    build_alignment,
    has_speakable,
    sanitize,
    silent_alignment,
)
from voicestream.engines.base import Synthesis, TTSEngine, Voice
from voicestream.errors import EngineError, UnknownVoice

__all__ = ["CATALOG", "EspeakTTS"]

log = logging.getLogger(__name__)

_CHARS_UTF8 = 0x1
# A pause at the end of each piece: the stream layer sends one clause at a time, and without it
# consecutive clauses would run into each other with no breath between them.
_END_PAUSE = 0x1000

# (voice id suffix, espeak language, BCP-47 tag, display name). Curated from the languages
# espeak-ng-data ships that sound intelligible; the constructor drops any the installed data lacks.
CATALOG: tuple[tuple[str, str, str, str], ...] = (
    ("en-us", "en-us", "en-US", "English (US)"),
    ("en-gb", "en-gb", "en-GB", "English (UK)"),
    ("de", "de", "de", "German"),
    ("fr", "fr-fr", "fr-FR", "French"),
    ("es", "es", "es-ES", "Spanish (Spain)"),
    ("es-419", "es-419", "es-419", "Spanish (Latin America)"),
    ("it", "it", "it", "Italian"),
    ("pt", "pt", "pt-PT", "Portuguese (Portugal)"),
    ("pt-br", "pt-br", "pt-BR", "Portuguese (Brazil)"),
    ("nl", "nl", "nl", "Dutch"),
    ("pl", "pl", "pl", "Polish"),
    ("ru", "ru", "ru", "Russian"),
    ("uk", "uk", "uk", "Ukrainian"),
    ("sv", "sv", "sv", "Swedish"),
    ("da", "da", "da", "Danish"),
    ("nb", "nb", "nb", "Norwegian Bokmål"),
    ("fi", "fi", "fi", "Finnish"),
    ("cs", "cs", "cs", "Czech"),
    ("sk", "sk", "sk", "Slovak"),
    ("hu", "hu", "hu", "Hungarian"),
    ("ro", "ro", "ro", "Romanian"),
    ("bg", "bg", "bg", "Bulgarian"),
    ("hr", "hr", "hr", "Croatian"),
    ("el", "el", "el", "Greek"),
    ("tr", "tr", "tr", "Turkish"),
    ("ca", "ca", "ca", "Catalan"),
    ("ar", "ar", "ar", "Arabic"),
    ("he", "he", "he", "Hebrew"),
    ("hi", "hi", "hi", "Hindi"),
    ("id", "id", "id", "Indonesian"),
    ("vi", "vi", "vi", "Vietnamese"),
    ("cmn", "cmn", "zh", "Chinese (Mandarin)"),
    ("ko", "ko", "ko", "Korean"),
)


class EspeakTTS(TTSEngine):
    """Voices ``espeak-<language>``; the library initializes at construction.

    Raises:
        EngineUnavailable: (from the constructor) libespeak-ng or its data is missing.
    """

    name = "espeak-ng"

    def __init__(self) -> None:
        self._espeak: EspeakLib = load_espeak()
        rate = self._espeak.sample_rate
        self._voices: dict[str, tuple[Voice, str]] = {}
        for suffix, language, tag, title in CATALOG:
            identifier = self._espeak.languages.get(language)
            if identifier is None:
                continue
            voice = Voice(f"espeak-{suffix}", f"{title} (espeak-ng)", tag, "male", rate, self.name)
            self._voices[voice.id] = (voice, identifier)

    def voices(self) -> list[Voice]:
        return [voice for voice, _ in self._voices.values()]

    def warm_up(self) -> None:
        # The first use of a language loads its dictionary from disk. Loading is the point, not
        # the audio: some languages (Hebrew) speak no digits, and that is no fault to retry or
        # warn about, so this skips synthesize's retry for an empty result.
        for voice, config in self._voices.values():
            self._synth("1", voice, config)

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        entry = self._voices.get(voice.id)
        if entry is None:
            raise UnknownVoice(f"espeak-ng has no voice {voice.id!r}", details={"voice": voice.id})
        rate = self._espeak.sample_rate
        spoken = sanitize(text)
        if not has_speakable(spoken):
            return Synthesis(b"", rate, silent_alignment(text))
        pcm, spans = self._synth(spoken, voice, entry[1])
        if not spans or not pcm:
            # Seen about once in a few full-suite runs, never alone: the first clause of a
            # request ("Hello, ") came back without audio (cause not found; TTSStream warns
            # when a clause is dropped). A clause dropped silently is worse than one more
            # synthesis of a few milliseconds; if the second try is empty too, the clause
            # is dropped as before and TTSStream's warning says so.
            log.warning(
                "espeak-ng gave nothing for %r (voice %s); asking again", text[:80], voice.id
            )
            pcm, spans = self._synth(spoken, voice, entry[1])
        if not spans or not pcm:
            return Synthesis(b"", rate, silent_alignment(text))
        if sys.byteorder == "big":
            pcm = np.frombuffer(pcm, dtype=np.int16).byteswap().tobytes()
        audio_ms = len(pcm) / 2 * 1000 / rate
        return Synthesis(pcm, rate, build_alignment(text, spans, audio_ms))

    def _synth(self, spoken: str, voice: Voice, identifier: str) -> tuple[bytes, list[TimedSpan]]:
        sink = self._espeak.synth(spoken, identifier, _CHARS_UTF8 | _END_PAUSE)
        if sink is None:
            raise EngineError(f"espeak-ng failed to synthesize with {voice.id!r}")
        return b"".join(sink.chunks), _word_spans(sink.events)


def _word_spans(events: list[Event]) -> list[TimedSpan]:
    """A word lasts from its own event to the next word, sentence or clause-end event."""
    boundaries = [e for e in events if e.kind in (EVENT_WORD, EVENT_SENTENCE, EVENT_END)]
    spans: list[TimedSpan] = []
    for index, event in enumerate(boundaries):
        if event.kind != EVENT_WORD or event.length <= 0:
            continue
        end_ms = next(
            (b.audio_ms for b in boundaries[index + 1 :] if b.audio_ms > event.audio_ms),
            float("inf"),  # build_alignment clamps this to the end of the audio
        )
        start = event.text_position - 1
        spans.append(TimedSpan(start, start + event.length, float(event.audio_ms), end_ms))
    return spans
