"""pocketsphinx (CMU Sphinx) US English speech recognition with a pool of decoders.

A decoder holds its own copy of the acoustic and language models (~95 MB, ~0.25 s to create), so
decoders are pooled: a stream borrows one for its lifetime and gives it back. Streams are
admitted against a cap first (``STTEngine.admit_stream``), and decoders left idle after a burst
are freed after a while, down to the warm spares (``min_decoders``). Decoders adapt
their cepstral mean (CMN) as they hear audio; the pool starts each stream from an average of
what recent streams ended with (see ``release``). A whole recording instead starts from its
own mean (``calibrate``), so the same file always gives the same transcript.

What a stream borrows is a loan (``PocketsphinxDecoder``), not the native decoder: given back,
the loan is dead, so a job of the stream still running late can never touch a decoder that
another stream now holds or that the pool has freed (see ``_pocketsphinx_ffi``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import threading
import time
from typing import Any

from voicestream.engines._pocketsphinx_ffi import (
    DecoderGone,
    NativeDecoder,
    load_pocketsphinx,
)
from voicestream.engines.base import DecoderPoolStats, STTDecoder, STTEngine, Transcript, Word
from voicestream.errors import Overloaded

__all__ = ["PocketsphinxDecoder", "PocketsphinxSTT"]

_FRAME_RATE = 100  # pocketsphinx's default -frate: one frame per 10 ms
_ALTERNATE = re.compile(r"\(\d+\)$")  # "to(2)": the second pronunciation of "to"


def _is_filler(word: str) -> bool:
    # <s>, </s>, <sil> and the noise words [NOISE], [SPEECH], ++GARBAGE++ are not speech.
    return not word or word[0] in "<[+"


class _Pooled:
    """A native decoder in the pool, with the cepstral mean its model starts from."""

    __slots__ = ("initial_cmn", "native")

    def __init__(self, native: NativeDecoder) -> None:
        self.native = native
        self.initial_cmn = native.get_cmn(None)  # the model's own starting estimate


class PocketsphinxDecoder(STTDecoder):
    """One loan of a pooled decoder, from ``acquire`` until ``release``.

    Each loan is a new object that the native decoder knows as its holder: once given back,
    every call on it raises ``DecoderGone`` (an ``EngineError``) instead of touching the
    decoder, which may be another stream's by then, or freed.
    """

    def __init__(self, engine: PocketsphinxSTT, pooled: _Pooled) -> None:
        self.engine = engine
        self.pooled = pooled
        self._native = pooled.native
        self._frame_rate = engine.frame_rate
        self._in_utterance = False
        self._carry = b""  # an odd trailing byte waiting for its other half
        self._native.lend(self)

    def start(self) -> None:
        if self._in_utterance:
            self._native.end_utt(self)  # abandon the previous utterance
        self._native.start_utt(self)
        self._in_utterance = True
        self._carry = b""

    def feed(self, pcm: bytes) -> str:
        if not self._in_utterance:
            self.start()
        data = self._carry + pcm
        usable = len(data) - (len(data) % 2)
        self._carry = data[usable:]
        if usable:
            self._native.process_raw(self, data[:usable])
        return self._native.hyp(self)

    def finish(self) -> Transcript:
        if not self._in_utterance:
            return Transcript("")
        self._native.end_utt(self)
        self._in_utterance = False
        words = tuple(
            Word(
                _ALTERNATE.sub("", seg.word),
                seg.start_frame / self._frame_rate,
                (seg.end_frame + 1) / self._frame_rate,  # end_frame is inclusive
            )
            for seg in self._native.segments(self)
            if not _is_filler(seg.word)
        )
        return Transcript(" ".join(w.text for w in words), words)

    def reset(self) -> None:
        """Drop any utterance in progress (when a stream returns the decoder mid-utterance)."""
        if self._in_utterance:
            self._native.end_utt(self)
            self._in_utterance = False
        self._carry = b""

    def calibrate(self, pcm: bytes) -> None:
        """Start from ``pcm``'s own mean cepstrum: on flite speech as accurate as a prior
        learned from earlier traffic (5-7 % WER against 4-13 % from the model's default), and
        it depends on nothing but the recording. Costs one front-end pass, no search."""
        self._native.reset_noise(self)
        mean = self._native.cepstral_mean(self, pcm)
        self._native.reset_noise(self)  # the pass above moved the noise estimate
        self.set_cmn(mean or self.pooled.initial_cmn)

    def reset_noise(self) -> None:
        self._native.reset_noise(self)

    def get_cmn(self) -> bytes:
        return self._native.get_cmn(self)

    def set_cmn(self, cmn: bytes) -> None:
        if cmn:
            self._native.set_cmn(self, cmn)


class PocketsphinxSTT(STTEngine):
    """Pooled pocketsphinx decoders with the bundled en-us model.

    Args:
        min_decoders: how many decoders ``warm_up`` creates ahead of demand, and how many idle
            ones the pool keeps warm for good.
        max_decoders: upper bound on decoders alive at once (None: unbounded). When all are
            borrowed, ``acquire`` waits up to ``acquire_timeout`` seconds, then raises
            ``Overloaded``.
        max_streams: streams admitted at once (``admit_stream``; None: unbounded).
        idle_release_seconds: an idle decoder beyond the ``min_decoders`` spares is freed
            after this long unused, so a burst's memory comes back.
        options: extra pocketsphinx configuration (e.g. ``{"lw": 7.0}``), merged over ours.
    """

    name = "pocketsphinx"
    sample_rate = 16000
    language = "en-US"

    def __init__(
        self,
        *,
        min_decoders: int = 1,
        max_decoders: int | None = None,
        acquire_timeout: float = 30.0,
        max_streams: int | None = None,
        idle_release_seconds: float = 30.0,
        options: dict[str, Any] | None = None,
    ) -> None:
        if min_decoders < 0 or (max_decoders is not None and max_decoders < max(1, min_decoders)):
            raise ValueError("need 0 <= min_decoders <= max_decoders and max_decoders >= 1")
        if idle_release_seconds <= 0:
            raise ValueError("idle_release_seconds must be positive")
        super().__init__(max_streams=max_streams)
        self._lib = load_pocketsphinx()
        model = self._lib.model_dir
        # pocketsphinx 5's own search defaults: on flite slt speech they give 6.9 % WER over the
        # tests/data corpus and ~9 % over 50 sentences; tuning -lw (7-8) or wider beams moved it
        # only within noise. FATAL silences the INFO lines it would print to stderr per utterance.
        self._options: dict[str, Any] = {
            "hmm": str(model / "en-us"),
            "lm": str(model / "en-us.lm.bin"),
            "dict": str(model / "cmudict-en-us.dict"),
            "samprate": self.sample_rate,
            "loglevel": "FATAL",
            **(options or {}),
        }
        self.frame_rate = float(self._options.get("frate", _FRAME_RATE))
        self._min = min_decoders
        self._max = max_decoders
        self._timeout = acquire_timeout
        self._idle_s = idle_release_seconds
        # Idle decoders with the monotonic time each came back; the newest is lent first, so
        # the oldest age out after a burst.
        self._free: list[tuple[float, _Pooled]] = []
        self._alive = 0  # decoders created (free + borrowed + being created)
        self._cond = threading.Condition()
        self._trimmer: threading.Timer | None = None  # pending idle release, when any
        self._closed = False
        # The cepstral mean the last learning stream ended with (b"": the model's own).
        self._prior_cmn = b""

    @property
    def decoders_alive(self) -> int:
        with self._cond:
            return self._alive

    def pool_stats(self) -> DecoderPoolStats:
        streams = super().pool_stats()
        with self._cond:
            idle = len(self._free)
            busy = self._alive - idle
        return DecoderPoolStats(busy, idle, streams.streams, streams.max_streams)

    def warm_up(self) -> None:
        while True:
            with self._cond:
                if self._alive >= self._min:
                    return
                self._alive += 1
            self._release_created(self._create())

    def acquire(self) -> PocketsphinxDecoder:
        with self._cond:
            if not self._free and self._max is not None and self._alive >= self._max:
                if not self._cond.wait_for(lambda: bool(self._free), timeout=self._timeout):
                    raise Overloaded("no speech recognizer free; try again shortly")
            pooled = self._free.pop()[1] if self._free else None
            prior = self._prior_cmn
            if pooled is None:
                self._alive += 1
        if pooled is None:
            # Create outside the lock: it takes a quarter second and others may release meanwhile.
            pooled = self._create()
        decoder = PocketsphinxDecoder(self, pooled)
        try:
            # The noise estimate belongs to the last borrower's line, not to this one.
            decoder.reset_noise()
            decoder.set_cmn(prior)
        except BaseException:
            # Nobody holds this loan yet, so nobody would give it back: without this the
            # decoder stays counted alive for good, and enough of them refuse every stream.
            # One that failed in C is in no state to lend again.
            pooled.native.take_back(decoder)
            self._discard(pooled)
            raise
        return decoder

    def release(self, decoder: STTDecoder, *, learn: bool = True) -> None:
        """Back to the pool. Live decoding adapts its cepstral mean (the channel: microphone,
        codec) as it hears a stream; starting the next stream from that estimate instead of the
        model's generic one halves the first utterance's error rate (14 % → 6 % on flite
        speech). Streams unlike the usual traffic (``learn=False``: a phone line) must not
        set the prior, or the next wideband caller's first words come out garbled.

        Raises:
            DecoderGone: this loan was given back already (the pool is left as it was).
        """
        if not isinstance(decoder, PocketsphinxDecoder) or decoder.engine is not self:
            raise TypeError("not a decoder of this pocketsphinx engine")
        pooled = decoder.pooled
        try:
            decoder.reset()
            cmn = decoder.get_cmn() if learn else b""
        except DecoderGone:
            raise  # given back before: the decoder is not this caller's to return
        except BaseException:
            # A decoder that failed in C is in no state to lend again.
            pooled.native.take_back(decoder)
            self._discard(pooled)
            raise
        pooled.native.take_back(decoder)
        if cmn:
            with self._cond:
                self._prior_cmn = _blend(self._prior_cmn, cmn)
        self._release_created(pooled)

    def close(self) -> None:
        """Free every idle decoder now, and each borrowed one when it comes back."""
        with self._cond:
            idle, self._free = self._free, []
            self._alive -= len(idle)
            self._closed = True
            trimmer, self._trimmer = self._trimmer, None
        if trimmer is not None:
            trimmer.cancel()
        for _, pooled in idle:
            pooled.native.free()

    def release_idle(self, now: float | None = None) -> int:
        """Free decoders idle for ``idle_release_seconds``, keeping ``min_decoders`` warm.

        Runs by itself on a timer after decoders come back; returns how many it freed.
        """
        now = time.monotonic() if now is None else now
        with self._cond:
            surplus = len(self._free) - self._min
            # The list is in return order: the stalest idle decoders are at its head.
            stale = 0
            while stale < surplus and now - self._free[stale][0] >= self._idle_s:
                stale += 1
            freed = [pooled for _, pooled in self._free[:stale]]
            del self._free[:stale]
            self._alive -= stale
        for pooled in freed:
            pooled.native.free()
        if freed:
            _return_freed_memory()
        return len(freed)

    def _create(self) -> _Pooled:
        try:
            return _Pooled(self._lib.new_decoder(self._options))
        except BaseException:
            with self._cond:
                self._alive -= 1
                self._cond.notify()
            raise

    def _discard(self, pooled: _Pooled) -> None:
        pooled.native.free()
        with self._cond:
            self._alive -= 1
            self._cond.notify()

    def _release_created(self, pooled: _Pooled) -> None:
        with self._cond:
            if not self._closed:
                self._free.append((time.monotonic(), pooled))
                self._cond.notify()
                self._schedule_trim_locked()
                return
        self._discard(pooled)  # the engine is shut: nobody will borrow it again

    def _schedule_trim_locked(self) -> None:
        """One timer at a time, due when the stalest surplus decoder has idled long enough."""
        if self._closed or self._trimmer is not None or len(self._free) <= self._min:
            return
        due = self._free[0][0] + self._idle_s - time.monotonic()
        self._trimmer = threading.Timer(max(0.0, due), self._trim_on_timer)
        self._trimmer.name = "pocketsphinx-idle-release"
        self._trimmer.daemon = True  # never keeps the process alive at exit
        self._trimmer.start()

    def _trim_on_timer(self) -> None:
        self.release_idle()
        with self._cond:
            self._trimmer = None
            self._schedule_trim_locked()


def _load_malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc: its allocator returns memory its own way
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _return_freed_memory() -> None:
    """A decoder is thousands of small allocations; glibc keeps freed ones in its heap unless
    asked to give them back, so without this the process's RSS never comes down."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


# Each learning stream moves the shared prior this far toward its own estimate: the prior
# follows the usual traffic without one odd stream (a tone, a noisy line) taking it over.
_PRIOR_WEIGHT_OF_NEW = 0.3


def _blend(prior: bytes, new: bytes) -> bytes:
    """Exponential average of two cepstral-mean vectors in pocketsphinx's "a,b,c" form."""
    try:
        new_v = [float(x) for x in new.split(b",")]
        if not prior:
            return new
        old_v = [float(x) for x in prior.split(b",")]
    except ValueError:
        return prior  # not what we expect from pocketsphinx: keep what we had
    if len(old_v) != len(new_v):
        return new
    mixed = [o + _PRIOR_WEIGHT_OF_NEW * (n - o) for o, n in zip(old_v, new_v, strict=True)]
    return ",".join(f"{x:.6g}" for x in mixed).encode()
