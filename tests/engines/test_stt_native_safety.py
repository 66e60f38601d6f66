"""Native decoders are safe against any caller: a decoder given back or freed raises instead of
reaching C (where it crashed the server), and one stream's jobs never drive its decoder from two
threads at once, even when a cancelled caller leaves a job running and the stream is closed."""

from __future__ import annotations

import asyncio
import threading

import pytest
from engine_audio import SpeechFactory, silence

from fakes.scripted_engines import EnergyVAD, ScriptedSTT
from fakes.scripted_engines import speech as loud_noise
from server.waiting import eventually
from voicestream.engines._pocketsphinx_ffi import DecoderGone
from voicestream.engines.base import DecoderPoolStats, STTDecoder, Transcript
from voicestream.engines.executor import InferenceExecutor
from voicestream.engines.pocketsphinx_stt import PocketsphinxSTT
from voicestream.engines.stt_stream import STTStream


def test_a_decoder_given_back_never_reaches_c(speech: SpeechFactory) -> None:
    engine = PocketsphinxSTT(min_decoders=0)
    try:
        loan = engine.acquire()
        loan.start()
        loan.feed(silence(0.2) + speech("Good morning."))
        engine.release(loan)
        for use in (
            loan.start,
            lambda: loan.feed(silence(0.1)),
            loan.get_cmn,
            lambda: loan.calibrate(silence(0.5)),
        ):
            with pytest.raises(DecoderGone):
                use()
        # Given back twice, it would sit in the pool twice and be lent to two streams at once.
        with pytest.raises(DecoderGone):
            engine.release(loan)
        assert engine.pool_stats() == DecoderPoolStats(0, 1, 0, None)
        # Its successor is the same native decoder, and works.
        again = engine.acquire()
        assert again.pooled is loan.pooled
        again.start()
        again.feed(silence(0.2) + speech("Good morning.") + silence(0.3))
        assert "morning" in again.finish().text
        engine.release(again)
    finally:
        engine.close()


def test_a_freed_decoder_never_reaches_c() -> None:
    engine = PocketsphinxSTT(min_decoders=0, idle_release_seconds=0.01)
    try:
        loan = engine.acquire()
        engine.release(loan)
        assert engine.release_idle(now=float("inf")) == 1  # the pool frees it
        assert loan.pooled.native.freed
        with pytest.raises(DecoderGone, match="freed"):
            loan.pooled.native.start_utt(None)
        # A decoder still lent when the engine shuts down is freed when it comes back.
        held = engine.acquire()
        engine.close()
        engine.release(held)
        assert held.pooled.native.freed and engine.decoders_alive == 0
    finally:
        engine.close()


class _WatchedDecoder(STTDecoder):
    """Records whether two threads were ever inside it at once; ``hold`` parks the next
    non-empty feed until ``go`` is set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inside = 0
        self.overlaps = 0
        self.finished = threading.Event()
        self.hold = False
        self.held = threading.Event()
        self.go = threading.Event()

    def _enter(self) -> None:
        with self._lock:
            self.inside += 1
            self.overlaps += self.inside > 1

    def _leave(self) -> None:
        with self._lock:
            self.inside -= 1

    def start(self) -> None:
        self._enter()
        self._leave()

    def feed(self, pcm: bytes) -> str:
        self._enter()
        try:
            if pcm and self.hold:
                self.hold = False
                self.held.set()
                self.go.wait(10)
        finally:
            self._leave()
        return ""

    def finish(self) -> Transcript:
        self._enter()
        self.finished.set()
        self._leave()
        return Transcript("")


class _WatchedSTT(ScriptedSTT):
    def __init__(self) -> None:
        super().__init__()
        self.decoder = _WatchedDecoder()
        self.returned = 0

    def acquire(self) -> STTDecoder:
        return self.decoder

    def release(self, decoder: STTDecoder, *, learn: bool = True) -> None:
        self.returned += 1


async def test_closing_a_stream_waits_for_the_job_a_cancelled_caller_left_running() -> None:
    """The crash: a socket's reader was cancelled while its audio was being decoded, and the
    close that followed gave the decoder back from a second executor thread meanwhile."""
    engine = _WatchedSTT()
    ex = InferenceExecutor("stt-two", 2)
    try:
        stream = STTStream(engine, EnergyVAD(), ex)
        await stream.feed(loud_noise(500))  # in an utterance: the stream holds the decoder
        engine.decoder.hold = True
        feeding = asyncio.ensure_future(stream.feed(loud_noise(300)))
        await eventually(engine.decoder.held.is_set, what="the audio is being decoded")
        feeding.cancel()  # the reader goes away; its job runs on
        closing = asyncio.ensure_future(stream.aclose())
        # The release has a thread of its own: without a stream-wide lock it would finish
        # the utterance right now, beside the feed.
        await eventually(
            lambda: ex.busy == 2 or engine.decoder.finished.is_set(),
            what="the release is running",
        )
        engine.decoder.go.set()
        await asyncio.wait_for(closing, 5)
        assert engine.decoder.overlaps == 0
        assert engine.decoder.finished.is_set() and engine.returned == 1
        assert engine.pool_stats().streams == 0
    finally:
        engine.decoder.go.set()
        ex.shutdown()
