"""ctypes binding to ``libespeak-ng.so.1`` in synchronous mode.

espeak-ng keeps one global synthesizer (current voice, output buffers, the callback), so
``EspeakLib.synth`` holds ``ESPEAK_LOCK`` for the whole call. The callback runs on the thread
that called ``espeak_Synth``, inside that call, which is what lets one module-level sink collect
the audio of the call in progress.

``EspeakLib.phonemize`` turns text into IPA clause by clause (``espeak_TextToPhonemes``) for the
neural voices trained on espeak-ng's phonemes (Piper). It selects its own voice under the same
lock, and ``synth`` selects its voice on every call, so neither disturbs the other.
"""

from __future__ import annotations

import bisect
import ctypes
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from voicestream.errors import EngineUnavailable

__all__ = [
    "ESPEAK_LOCK",
    "EVENT_END",
    "EVENT_SENTENCE",
    "EVENT_WORD",
    "EspeakLib",
    "Event",
    "PhonemeClause",
    "Sink",
    "load_espeak",
]

_LIB_NAMES = ("libespeak-ng.so.1", "/usr/lib/x86_64-linux-gnu/libespeak-ng.so.1")
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit()
_BUFFER_MS = 200  # audio per callback: fewer Python round trips than the 60 ms default
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes phonememode bit 1: IPA as UTF-8

EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_SENTENCE = 2
EVENT_END = 5

ESPEAK_LOCK = threading.Lock()


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from ``speak_lib.h``; the trailing union is 8 bytes on 64-bit."""

    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters of the UTF-8 input
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of this message
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    )


class _VoiceInfo(ctypes.Structure):
    """``espeak_VOICE``."""

    _fields_ = (
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated name)*, 0
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    )


@dataclass(frozen=True, slots=True)
class Event:
    kind: int
    text_position: int
    length: int
    audio_ms: int


@dataclass(slots=True)
class Sink:
    """Audio and events of the synthesis in progress."""

    chunks: list[bytes] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PhonemeClause:
    """One clause as espeak-ng splits text: its IPA (words separated by spaces, punctuation
    dropped) and the characters ``[start, end)`` of the text it came from."""

    phonemes: str
    start: int
    end: int


# Pointers arrive as plain addresses (None for NULL), which are simple to test for NULL.
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True, slots=True)
class EspeakLib:
    lib: ctypes.CDLL
    sample_rate: int
    # espeak language name (lower case) -> voice identifier such as "gmw/en-US".
    languages: dict[str, str]
    _set_sink: Callable[[Sink | None], None]

    def synth(self, text: str, voice_identifier: str, flags: int) -> Sink | None:
        """Blocking: synthesize ``text``; None when espeak rejected the voice or the text."""
        data = text.encode("utf-8")
        with ESPEAK_LOCK:
            if self.lib.espeak_SetVoiceByName(voice_identifier.encode()) != 0:
                return None
            sink = Sink()
            self._set_sink(sink)
            try:
                status = self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, flags, None, None)
            finally:
                self._set_sink(None)
        return sink if status == 0 else None

    def phonemize(self, texts: Sequence[str], voice_name: str) -> list[list[PhonemeClause]] | None:
        """Blocking: IPA clause by clause for each of ``texts``, in the espeak voice
        ``voice_name`` (a voice name such as ``en-us`` or a language espeak lists); None when
        espeak knows no such voice. One lock hold for the whole batch of texts."""
        with ESPEAK_LOCK:
            if self.lib.espeak_SetVoiceByName(voice_name.encode()) != 0:
                identifier = self.languages.get(voice_name.lower())
                if identifier is None or self.lib.espeak_SetVoiceByName(identifier.encode()) != 0:
                    return None
            return [self._clauses(text) for text in texts]

    def _clauses(self, text: str) -> list[PhonemeClause]:
        raw = text.encode("utf-8")
        # Byte offset of every character, to turn espeak's byte pointer into a text index.
        offsets = [0]
        for ch in text:
            offsets.append(offsets[-1] + len(ch.encode("utf-8")))
        buffer = ctypes.create_string_buffer(raw)
        base = ctypes.addressof(buffer)
        pointer = ctypes.c_void_p(base)
        clauses: list[PhonemeClause] = []
        start = 0
        # Each call consumes one clause; the bound only guards against a pointer that stalls.
        for _ in range(len(raw) + 1):
            if not pointer.value:
                break
            before = pointer.value
            result = self.lib.espeak_TextToPhonemes(
                ctypes.byref(pointer), _CHARS_UTF8, _PHONEMES_IPA
            )
            phonemes = (result or b"").decode("utf-8", "replace").strip()
            if pointer.value is None or pointer.value == before:
                end = len(text)
            else:
                # espeak leaves the pointer one character into the next clause (it reads ahead).
                at = bisect.bisect_right(offsets, pointer.value - base) - 1
                end = min(max(at - 1, start), len(text))
            clauses.append(PhonemeClause(phonemes, start, end))
            start = end
            if end >= len(text):
                break
        return clauses


_loaded: EspeakLib | None = None
# espeak keeps the callback's raw function pointer: its ctypes object must never be collected.
_callbacks: list[object] = []


def load_espeak() -> EspeakLib:
    """Initialise espeak-ng once per process.

    Raises:
        EngineUnavailable: the library or its data is missing.
    """
    global _loaded
    with ESPEAK_LOCK:
        if _loaded is None:
            _loaded = _load()
        return _loaded


def _open() -> ctypes.CDLL:
    error: OSError | None = None
    for name in _LIB_NAMES:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            error = exc
    raise EngineUnavailable(f"libespeak-ng is not installed: {error}")


def _load() -> EspeakLib:
    lib = _open()
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetSynthCallback.argtypes = (_CALLBACK,)
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = (
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    )
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = (
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_int,
        ctypes.c_int,
    )
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceInfo))
    lib.espeak_ListVoices.argtypes = (ctypes.c_void_p,)
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, None, _INITIALIZE_DONT_EXIT)
    if rate <= 0:
        raise EngineUnavailable(f"espeak_Initialize failed ({rate}); is espeak-ng-data installed?")

    current: list[Sink | None] = [None]

    def on_audio(wav: int | None, count: int, events_address: int | None) -> int:
        sink = current[0]
        if sink is None:
            return 0
        if wav and count > 0:
            sink.chunks.append(ctypes.string_at(wav, count * 2))
        if events_address:
            events = ctypes.cast(events_address, ctypes.POINTER(_Event))
            i = 0
            while events[i].type != EVENT_LIST_TERMINATED:
                e = events[i]
                sink.events.append(Event(e.type, e.text_position, e.length, e.audio_position))
                i += 1
        return 0  # 0 = keep going

    def set_sink(sink: Sink | None) -> None:
        current[0] = sink

    callback = _CALLBACK(on_audio)
    _callbacks.append(callback)
    lib.espeak_SetSynthCallback(callback)
    return EspeakLib(lib, rate, _list_languages(lib), set_sink)


def _list_languages(lib: ctypes.CDLL) -> dict[str, str]:
    """Map every language espeak-ng-data offers to the voice file serving it best."""
    best: dict[str, tuple[int, str]] = {}
    voices = lib.espeak_ListVoices(None)
    i = 0
    while voices and voices[i]:
        info = voices[i].contents
        identifier = (info.identifier or b"").decode()
        address = info.languages
        while address:
            priority = ctypes.c_ubyte.from_address(address).value
            if priority == 0:
                break
            raw = ctypes.string_at(address + 1)
            language = raw.decode("ascii", "replace").lower()
            if language not in best or priority < best[language][0]:
                best[language] = (priority, identifier)
            address += 2 + len(raw)
        i += 1
    return {language: identifier for language, (_, identifier) in best.items()}
