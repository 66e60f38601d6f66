"""Contracts every engine implements.

Each engine implements one narrow, *blocking* method set; the streaming machinery around it
(``tts_stream``, ``stt_stream``) owns buffering, scheduling, deadlines and metrics, so an engine
author writes only inference code. Blocking methods are only ever called from an engine's own
executor thread.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from ..errors import Busy

__all__ = [
    "Alignment",
    "DecoderPoolStats",
    "STTDecoder",
    "STTEngine",
    "Synthesis",
    "TTSEngine",
    "Transcript",
    "VADModel",
    "VADState",
    "Voice",
    "Word",
    "primary_language",
]


@dataclass(frozen=True, slots=True)
class Voice:
    """One entry of the voice catalog (``GET /v1/voices``)."""

    id: str
    name: str
    language: str  # BCP-47, e.g. "en-US", "de"
    gender: str  # "female" | "male" | "neutral"
    sample_rate: int
    engine: str


@dataclass(frozen=True, slots=True)
class Alignment:
    """Character-level timing of one synthesized piece of text (ElevenLabs' shape).

    Times are milliseconds from the start of *this* piece's audio; ``chars`` joined give the
    piece's text exactly.
    """

    chars: tuple[str, ...]
    char_start_ms: tuple[int, ...]
    char_duration_ms: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Synthesis:
    """The audio for one piece of text: mono s16le at ``sample_rate``."""

    pcm: bytes
    sample_rate: int
    alignment: Alignment | None = None


class TTSEngine(ABC):
    """Text → speech, one clause at a time.

    Streaming is built on top of this by ``tts_stream.TTSStream``, which splits incoming text
    into clauses and schedules them (first clauses ahead of continuations).
    """

    name: str

    @abstractmethod
    def voices(self) -> list[Voice]:
        """The voices this engine offers. Cheap; no synthesis."""

    @abstractmethod
    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        """Blocking: synthesize ``text`` (a clause or sentence) with ``voice``."""

    def native_speed(self, voice: Voice, speed: float) -> float:
        """How much of ``speed`` (times the normal pace) ``synthesize_at`` speaks ``voice`` at
        by itself; the output stage changes the tempo by the rest (``speed`` / this).

        Optional hook. The default, 1.0, leaves all of it to the output stage (a tempo filter
        over the audio); a model that controls its own pace (Piper's ``length_scale``) sounds
        more natural and keeps its alignment exact."""
        return 1.0

    def synthesize_at(self, text: str, voice: Voice, speed: float) -> Synthesis:
        """Blocking: ``synthesize`` asked for ``speed`` times the normal pace, spoken at
        ``native_speed(voice, speed)``; only called when that is not 1.0."""
        raise NotImplementedError(f"{self.name} cannot change its speaking rate")

    def warm_up(self) -> None:  # noqa: B027 - optional hook, empty by default on purpose
        """Blocking: load models so the first request pays no start-up cost."""


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: float  # seconds
    end: float  # seconds


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    words: tuple[Word, ...] = field(default_factory=tuple)


class STTDecoder(ABC):
    """One utterance-at-a-time speech decoder, owned by one stream at a time.

    Calls come from a single executor thread, in order: ``start``, ``feed``…, ``finish``, then
    possibly ``start`` again for the next utterance.
    """

    @abstractmethod
    def start(self) -> None:
        """Begin a new utterance."""

    @abstractmethod
    def feed(self, pcm: bytes) -> str:
        """Add mono s16le audio at the engine's rate; return the partial hypothesis so far."""

    @abstractmethod
    def finish(self) -> Transcript:
        """End the utterance; word times are seconds from the utterance start."""

    def calibrate(self, pcm: bytes) -> None:  # noqa: B027 - optional hook, empty by default
        """Before a whole recording is decoded: adapt to its channel from the recording itself,
        so its transcript depends on the recording alone and not on earlier traffic."""

    # True for decoders whose ``finish`` is slow enough to be worth starting early (on
    # ``pause``). The stream then feeds such a decoder only audio the VAD has judged to be part
    # of the utterance (never a silence that may yet end it), so a decode started at a pause
    # sees exactly what ``finish`` would, and a speculation that nothing overtook is the final.
    speculates: ClassVar[bool] = False
    # Whether ``finish`` should time each word. A stream whose reader only wants the text (a
    # conversation's turns) clears it for the utterances it decodes: aligning words costs
    # Whisper about half a decode again, on the path from end of speech to the answer.
    # Decoders that time words for free may ignore it.
    word_times: bool = True
    # The language the stream was asked to hear (BCP-47 or ISO 639-1; the engine ``hears`` it):
    # a multilingual decoder decodes in it instead of detecting one. None: the engine's own
    # choice. Set by the stream on each loan; engines that hear one language ignore it.
    language: str | None = None

    def pause(self) -> None:  # noqa: B027 - optional hook, empty by default
        """The speaker paused: everything fed so far may be the whole utterance. A decoder may
        start decoding it in the background; ``feed`` and ``finish`` must not wait for that
        unless ``finish`` comes with no audio fed since."""

    def resume(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Speech came back after ``pause``: what it started is stale."""

    def abandon(self) -> None:
        """Drop the utterance in progress without a transcript (its stream went away).
        By default it is finished and the transcript thrown away; decoders whose ``finish``
        costs a whole decode override this."""
        self.finish()


@dataclass(frozen=True, slots=True)
class DecoderPoolStats:
    """What an STT engine's decoder pool holds right now (for metrics and tests)."""

    busy: int  # decoders lent to streams
    idle: int  # decoders waiting in the pool, warm
    streams: int  # streams admitted (each holds at most one decoder)
    max_streams: int | None  # the admission cap; None: unbounded


class STTEngine(ABC):
    """Speech → text. Decoders are pooled by the engine; ``acquire`` may block while loading.

    A decoder can hold a lot of memory (pocketsphinx: ~95 MB), so streams are admitted against
    a cap (``max_streams``) before they may acquire one: ``admit_stream`` refuses past it with
    ``Busy`` at once (a quick "try again" beats a queue of streams that each wait for a
    decoder), and ``leave_stream`` gives the place back. An admitted stream holds at most one
    decoder, so the cap bounds the decoders too.
    """

    name: str
    sample_rate: int  # the only rate the decoders accept
    language: str

    def __init__(self, *, max_streams: int | None = None) -> None:
        if max_streams is not None and max_streams < 1:
            raise ValueError("max_streams must be at least 1 (or None: unbounded)")
        self._max_streams = max_streams
        self._streams = 0
        self._streams_lock = threading.Lock()

    def admit_stream(self) -> None:
        """Count one more open stream. Cheap and non-blocking: safe on the event loop.

        Raises:
            Busy: ``max_streams`` streams are open already.
        """
        with self._streams_lock:
            if self._max_streams is not None and self._streams >= self._max_streams:
                raise Busy(
                    f"all {self._max_streams} speech recognizers are busy; try again shortly",
                    details={"max_streams": self._max_streams},
                )
            self._streams += 1

    def hears(self, language: str | None) -> bool:
        """Whether streams may ask this engine for speech in ``language`` (BCP-47 or ISO
        639-1; any region of a language counts: "en-GB" is English). None, no preference,
        always. The one answer to "can it hear that?" for streams, transports and catalogs;
        multilingual engines override it with their own list."""
        return language is None or primary_language(language) == primary_language(self.language)

    def leave_stream(self) -> None:
        """An admitted stream has ended (whether or not it ever acquired a decoder)."""
        with self._streams_lock:
            self._streams = max(0, self._streams - 1)

    def pool_stats(self) -> DecoderPoolStats:
        """Engines that pool decoders report busy and idle ones; the default knows streams."""
        with self._streams_lock:
            return DecoderPoolStats(0, 0, self._streams, self._max_streams)

    @abstractmethod
    def acquire(self) -> STTDecoder:
        """Blocking: a ready decoder for exclusive use."""

    @abstractmethod
    def release(self, decoder: STTDecoder, *, learn: bool = True) -> None:
        """Give a decoder back to the pool (after ``finish``).

        ``learn``: what the decoder adapted to in this stream may inform the next streams
        (False for audio unlike the usual traffic, such as a phone line's narrowband).
        """

    def warm_up(self) -> None:  # noqa: B027 - optional hook, empty by default on purpose
        """Blocking: load models so the first request pays no start-up cost."""


def primary_language(tag: str) -> str:
    """A language tag's primary subtag, lower-case: "en-US", "en_us", "EN" → "en"."""
    return re.split(r"[-_]", tag.strip(), maxsplit=1)[0].lower()


class VADState(ABC):  # noqa: B024 - a marker type; each model keeps its own recurrent state
    """Per-stream recurrent state of a VAD model."""


class VADModel(ABC):
    """Frame-level speech probability."""

    sample_rate: int
    window_samples: int  # exact number of samples ``speech_probability`` takes

    @abstractmethod
    def new_state(self) -> VADState: ...

    @abstractmethod
    def speech_probability(self, state: VADState, window: npt.NDArray[np.float32]) -> float:
        """Blocking: probability in [0, 1] that ``window`` (float32 in [-1, 1]) is speech."""
