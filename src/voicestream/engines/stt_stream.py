"""Streaming STT: VAD-segmented utterances, partial hypotheses while audio arrives.

Audio enters as mono s16le at the engine's rate. The VAD decides where utterances start and end;
an utterance's audio (with a short pre-roll, so the first phone is not clipped) goes to a pooled
decoder, which yields partial hypotheses as it goes and a final transcript with word timings at
the end of the utterance. All blocking work for one stream runs on the STT executor, one job at
a time: a lock held for each whole job (``_jobs``) keeps it so even when a cancelled caller
leaves its job running and the next starts on another thread, and a short one (``_lock``)
guards handing the decoder back between ``aclose`` on the loop and such a late job. Work a
decoder starts by itself (Whisper's speculative finals) runs on its engine's own threads, on
a copy of the audio, never on this stream's state.

Decoders that are slow to finish (Whisper: a fixed 30 s encoder window) get a head start: when
the VAD first hears a short pause inside an utterance, the stream tells the decoder
(``STTDecoder.pause``), which may decode what it has in the background; if speech resumes first,
``resume`` makes that work stale. Such decoders are fed only the audio the VAD has judged to
belong to the utterance, so a speculation that nothing overtook covers the same audio the final
would, and ``finish`` returns it at once.

A stream is admitted by its engine when it is created (``STTEngine.admit_stream``: ``Busy``
past the cap) and leaves when it ends or is closed, whether or not it ever needed a decoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ..errors import UnsupportedLanguage
from .base import STTDecoder, STTEngine, VADModel, Word
from .executor import InferenceExecutor
from .vad import VoiceActivityDetector

__all__ = ["STTEvent", "STTStream"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_PRE_ROLL_S = 0.3
# pocketsphinx's search slows down on very long utterances; cut them even if nobody pauses.
_MAX_UTTERANCE_S = 25.0
# Partials cost a search-lattice walk; one every this much audio is plenty for captions.
_PARTIAL_EVERY_S = 0.2
# Silence inside an utterance after which a speculating decoder starts on its final. Shorter
# wastes decodes on gaps between words; longer eats into the head start the VAD's min_silence
# window gives. Measured over six sentences with commas (Silero): speculations thrown away at
# 0-60 ms 8 (flite) and 9 (Piper), at 120 ms 2 and 8 (Piper pauses 150-300 ms at commas), at
# 200 ms 0 and 5. 120 ms leaves 280 ms of a 400 ms window, about one tiny.en decode.
_SPECULATE_AFTER_MS = 120


@dataclass(frozen=True, slots=True)
class STTEvent:
    kind: Literal["speech_start", "partial", "final"]
    text: str = ""
    start: float = 0.0  # seconds of stream audio
    end: float = 0.0
    words: tuple[Word, ...] = field(default_factory=tuple)
    # Wall-clock moment the stream's audio that ended this utterance had arrived; lets the
    # caller measure end of speech → final.
    decode_seconds: float = 0.0


class STTStream:
    """One transcription stream; ``feed`` and ``end`` are coroutines, called in order.

    Raises (on creation):
        UnsupportedLanguage: the engine does not hear the language asked for.
        Busy: the engine already serves as many streams as it admits.
    """

    def __init__(
        self,
        engine: STTEngine,
        vad_model: VADModel,
        executor: InferenceExecutor,
        *,
        vad_threshold: float = 0.5,
        min_silence_ms: int = 400,
        min_speech_ms: int = 100,
        word_times: bool = True,
        language: str | None = None,
    ) -> None:
        """``word_times``: whether finals carry word timings (see ``STTDecoder.word_times``);
        ``language``: what the speaker speaks (BCP-47 or ISO 639-1), None: the engine's choice
        (a multilingual model detects it per utterance).

        Raises:
            UnsupportedLanguage: the engine does not hear ``language`` (``STTEngine.hears``).
        """
        if vad_model.sample_rate != engine.sample_rate:
            raise ValueError("VAD and STT must share a sample rate")
        if not engine.hears(language):
            raise UnsupportedLanguage(
                f"the speech-to-text engine {engine.name} does not hear the language "
                f"{language!r}; it hears {engine.language}",
                details={"language": language, "engine": engine.name},
            )
        self._engine = engine
        self._executor = executor
        self._rate = engine.sample_rate
        self._vad_model = vad_model
        self._vad = _detector(vad_model, vad_threshold, min_silence_ms, min_speech_ms)
        self._word_times = word_times
        self._language = language
        self._decoder: STTDecoder | None = None
        self._pending = bytearray()  # audio not yet given to the decoder
        self._pending_start = 0  # stream sample index of _pending[0]
        self._in_utt = False
        # Stream sample index of the decoder's time 0 (before 0 when the pre-roll was padded).
        self._utt_start = 0
        self._fed_since_partial = 0
        self._last_partial = ""
        self._closed = False
        # Guards the hand-over of ``_decoder`` and ``_closed`` between the loop (``aclose``) and
        # an executor job a cancelled caller left running; held only for a few instructions.
        self._lock = threading.Lock()
        # Held for the whole of each executor job. A caller cancelled while its job runs
        # leaves that job running, and the next one (aclose's release) may start on another
        # executor thread: without this, both would drive one native decoder at once.
        self._jobs = threading.Lock()
        # Audio unlike the usual traffic (a phone line) must not teach the decoder pool.
        self.narrowband = False
        # Last, so nothing after it can fail and strand the place. A stream its owner forgets
        # to close still gives its place back when it is collected.
        engine.admit_stream()
        self._admission = weakref.finalize(self, _forgotten_stream, engine)
        self._admission.atexit = False

    def configure_vad(self, *, threshold: float, min_silence_ms: int, min_speech_ms: int) -> None:
        """New VAD settings; only before any audio (a detector mid-stream keeps its own)."""
        if self._pending_start or self._pending:
            raise RuntimeError("the VAD can only be configured before audio arrives")
        self._vad = _detector(self._vad_model, threshold, min_silence_ms, min_speech_ms)

    @property
    def audio_seconds(self) -> float:
        return (self._pending_start + len(self._pending) // 2) / self._rate

    async def calibrate(self, recording: bytes) -> None:
        """Before feeding a whole recording: let the decoder adapt to it first (see
        ``STTDecoder.calibrate``), so the transcript does not depend on earlier traffic."""
        if self._pending_start or self._pending:
            raise RuntimeError("calibrate before any audio is fed")
        await self._executor.run(lambda: self._one_at_a_time(self._calibrate, recording))

    async def feed(self, pcm: bytes) -> list[STTEvent]:
        return await self._executor.run(lambda: self._one_at_a_time(self._process, pcm))

    async def end(self) -> list[STTEvent]:
        """No more audio: finish any open utterance and give the decoder back."""
        return await self._executor.run(lambda: self._one_at_a_time(self._finish_stream))

    async def aclose(self) -> None:
        """Give the decoder back without a transcript (client went away).

        Cancelling the caller does not stop the decoder from coming back: the release runs to
        completion on the executor anyway.
        """
        with self._lock:
            if self._closed:
                return
            holds_decoder = self._decoder is not None
            if not holds_decoder:
                self._closed = True
        if not holds_decoder:
            # Nothing to hand back on a thread: the place returns now, not after the queue.
            self._leave()
            return
        released = self._executor.submit(lambda: self._one_at_a_time(self._release))
        try:
            await asyncio.shield(released)
        except asyncio.CancelledError:
            released.add_done_callback(_report_late_release_failure)
            raise

    # Everything below runs on an executor thread.

    def _one_at_a_time(self, job: Callable[..., _T], *args: Any) -> _T:
        with self._jobs:
            return job(*args)

    def _process(self, pcm: bytes) -> list[STTEvent]:
        try:
            return self._process_open(pcm)
        except _StreamClosed:
            # aclose() overtook audio still on its way (another task closed the stream): the
            # stream is over, so that audio has no transcript to give, not an error.
            return []

    def _process_open(self, pcm: bytes) -> list[STTEvent]:
        if self._closed:
            raise _StreamClosed
        self._pending += pcm
        out: list[STTEvent] = []
        for ev in self._vad.process(pcm):
            at = ev.sample
            if ev.kind == "start" and not self._in_utt:
                self._begin_utterance(at)
                out.append(STTEvent("speech_start", start=at / self._rate))
            elif ev.kind == "end" and self._in_utt:
                self._feed_until(at)
                out.append(self._end_utterance(at))
            elif ev.kind in ("pause", "resume") and self._in_utt:
                self._speculate(ev.kind, at)
        if self._in_utt:
            self._feed_until(self._feed_limit())
            partial = self._maybe_partial()
            if partial is not None:
                out.append(partial)
            if (self._pending_start - max(0, self._utt_start)) / self._rate > _MAX_UTTERANCE_S:
                cut = self._pending_start
                out.append(self._end_utterance(cut))
                if self._vad.in_speech:
                    # Still talking: the rest is the next utterance, not audio thrown away
                    # until the speaker pauses.
                    self._continue_utterance(cut)
        else:
            self._trim_pre_roll()
        return out

    def _calibrate(self, recording: bytes) -> None:
        with contextlib.suppress(_StreamClosed):  # closed meanwhile: nothing left to adapt
            self._borrow().calibrate(recording)

    def _finish_stream(self) -> list[STTEvent]:
        out: list[STTEvent] = []
        try:
            for ev in self._vad.flush():
                if ev.kind == "end" and self._in_utt:
                    at = ev.sample
                    self._feed_until(at)
                    out.append(self._end_utterance(at))
            if self._in_utt:
                at = self._pending_start + len(self._pending) // 2
                self._feed_until(at)
                out.append(self._end_utterance(at))
        finally:
            self._release()
        return out

    def _borrow(self) -> STTDecoder:
        if self._decoder is not None:
            return self._decoder
        decoder = self._engine.acquire()  # may wait for the pool: outside the lock
        with self._lock:
            if not self._closed:
                decoder.word_times = self._word_times
                decoder.language = self._language
                self._decoder = decoder
                return decoder
        # aclose() ran while we waited for the pool; nobody will ever release this one.
        self._engine.release(decoder, learn=False)
        raise _StreamClosed

    def _release(self) -> None:
        with self._lock:
            decoder, self._decoder = self._decoder, None
            self._closed = True
        learn = not self.narrowband
        try:
            if decoder is not None and self._in_utt:
                self._in_utt = False
                learn = False  # a decoder that fails to finish has nothing worth teaching
                decoder.abandon()
                learn = not self.narrowband
        finally:
            try:
                if decoder is not None:
                    self._engine.release(decoder, learn=learn)
            finally:
                self._leave()

    def _leave(self) -> None:
        # detach() answers once, so the place is given back once whoever gets here first.
        if self._admission.detach() is not None:
            self._engine.leave_stream()

    def _begin_utterance(self, at: int) -> None:
        decoder = self._borrow()
        pre_roll = int(_PRE_ROLL_S * self._rate)
        start = max(self._pending_start, at - pre_roll)
        self._drop_until(start)
        # Speech right at the start of the audio (a trimmed clip) has too little silence before
        # it for the decoder's noise and cepstral-mean estimates, and its first word is lost:
        # pad the pre-roll with silence. Decoder time 0 is then before stream time 0.
        pad = max(0, pre_roll - (at - start))
        self._continue_utterance(start - pad)
        if pad:
            decoder.feed(bytes(pad * 2))

    def _speculate(self, kind: Literal["pause", "resume"], at: int) -> None:
        decoder = self._decoder
        assert decoder is not None
        if not decoder.speculates:
            return  # fed as before, so decoders that ignore pauses see no change at all
        if kind == "pause":
            self._feed_until(at)
            decoder.pause()
        else:
            decoder.resume()

    def _continue_utterance(self, at: int) -> None:
        """The decoder starts a new utterance whose time 0 is stream sample ``at``."""
        assert self._decoder is not None
        self._decoder.start()
        self._in_utt = True
        self._utt_start = at
        self._fed_since_partial = 0
        self._last_partial = ""

    def _feed_limit(self) -> int:
        """How far the decoder may be fed: everything received, except that a speculating
        decoder never gets a silence that may yet end the utterance (see the module doc)."""
        received = self._pending_start + len(self._pending) // 2
        assert self._decoder is not None
        if self._decoder.speculates:
            return min(received, self._vad.judged_until)
        return received

    def _feed_until(self, sample: int) -> None:
        assert self._decoder is not None
        n = max(0, min(sample - self._pending_start, len(self._pending) // 2))
        if n:
            self._decoder.feed(bytes(self._pending[: n * 2]))
            self._fed_since_partial += n
            self._drop_until(self._pending_start + n)

    def _maybe_partial(self) -> STTEvent | None:
        if self._fed_since_partial < _PARTIAL_EVERY_S * self._rate:
            return None
        assert self._decoder is not None
        self._fed_since_partial = 0
        text = self._decoder.feed(b"")
        if not text or text == self._last_partial:
            return None
        self._last_partial = text
        return STTEvent("partial", text=text, start=max(0.0, self._utt_start) / self._rate)

    def _end_utterance(self, at: int) -> STTEvent:
        assert self._decoder is not None
        t0 = time.monotonic()
        transcript = self._decoder.finish()
        self._in_utt = False
        offset = self._utt_start / self._rate
        words = tuple(
            Word(w.text, max(0.0, w.start + offset), max(0.0, w.end + offset))
            for w in transcript.words
        )
        return STTEvent(
            "final",
            text=transcript.text,
            start=max(0.0, offset),
            end=max(at, self._utt_start) / self._rate,
            words=words,
            decode_seconds=time.monotonic() - t0,
        )

    def _drop_until(self, sample: int) -> None:
        n = sample - self._pending_start
        if n > 0:
            del self._pending[: n * 2]
            self._pending_start = sample

    def _trim_pre_roll(self) -> None:
        keep = int(_PRE_ROLL_S * self._rate)
        total = len(self._pending) // 2
        if total > keep:
            self._drop_until(self._pending_start + total - keep)


def _detector(
    model: VADModel, threshold: float, min_silence_ms: int, min_speech_ms: int
) -> VoiceActivityDetector:
    # A pause no shorter than the silence that ends an utterance would give no head start.
    pause_ms = _SPECULATE_AFTER_MS if _SPECULATE_AFTER_MS < min_silence_ms else None
    return VoiceActivityDetector(
        model,
        threshold=threshold,
        min_silence_ms=min_silence_ms,
        min_speech_ms=min_speech_ms,
        pause_ms=pause_ms,
    )


class _StreamClosed(Exception):
    """aclose() ran while a job of this stream was on its way; never leaves the module."""


def _report_late_release_failure(released: asyncio.Future[None]) -> None:
    # The caller was cancelled, so nobody else will see this failure.
    if not released.cancelled() and (exc := released.exception()) is not None:
        log.error("giving an STT decoder back failed", exc_info=exc)


def _forgotten_stream(engine: STTEngine) -> None:
    log.warning("an STT stream was dropped without end() or aclose(); its place is given back")
    engine.leave_stream()
