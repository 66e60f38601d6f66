"""An STT stream gives its decoder and its admission place back however it ends: a cancelled
``aclose``, a decoder that fails to finish, an ``end`` that fails half way."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from fakes.scripted_engines import EnergyVAD, ScriptedSTT, speech
from server.waiting import eventually
from voicestream.engines.base import DecoderPoolStats, STTDecoder, Transcript
from voicestream.engines.executor import InferenceExecutor
from voicestream.engines.pocketsphinx_stt import PocketsphinxSTT
from voicestream.engines.silero_vad import SileroVAD
from voicestream.engines.stt_stream import STTStream


class _OneThread:
    """A one-thread executor whose thread a test can keep busy until it opens the gate."""

    def __init__(self) -> None:
        self.executor = InferenceExecutor("stt-release", 1)
        self.gate = threading.Event()
        self._blocker: asyncio.Future[bool] | None = None

    async def occupy(self) -> None:
        self._blocker = asyncio.ensure_future(self.executor.run(self.gate.wait))
        await eventually(lambda: self.executor.busy == 1, what="the blocker holds the thread")

    async def close(self) -> None:
        self.gate.set()
        if self._blocker is not None:
            await self._blocker
        self.executor.shutdown()


@pytest.fixture
async def one_thread() -> AsyncIterator[_OneThread]:
    pool = _OneThread()
    try:
        yield pool
    finally:
        await pool.close()


async def test_a_cancelled_aclose_still_gives_the_decoder_back(
    silero: SileroVAD, one_thread: _OneThread
) -> None:
    engine = PocketsphinxSTT(min_decoders=0, max_streams=1)
    ex = one_thread.executor
    try:
        stream = STTStream(engine, silero, ex)
        await stream.calibrate(bytes(engine.sample_rate))  # borrows a decoder
        await one_thread.occupy()  # from now on the stream's jobs queue behind the blocker
        assert engine.pool_stats() == DecoderPoolStats(1, 0, 1, 1)

        closing = asyncio.ensure_future(stream.aclose())
        await eventually(lambda: ex.queued == 1, what="the release is queued")
        closing.cancel()  # the client's task goes away before the release could start
        one_thread.gate.set()

        await eventually(
            lambda: engine.pool_stats() == DecoderPoolStats(0, 1, 0, 1),
            within=5,
            what="the decoder idle in the pool and the place free",
        )
        assert closing.cancelled()
        assert stream.audio_seconds == 0  # the stream is alive: no collector gave it back
    finally:
        engine.close()


async def test_a_cancelled_aclose_without_a_decoder_gives_the_place_back_at_once(
    silero: SileroVAD, one_thread: _OneThread
) -> None:
    engine = PocketsphinxSTT(min_decoders=0, max_streams=1)
    ex = one_thread.executor
    await one_thread.occupy()  # and stays so: nothing may wait for the executor
    try:
        stream = STTStream(engine, silero, ex)
        closing = asyncio.ensure_future(stream.aclose())
        await asyncio.sleep(0)  # one step of the closing task, then its caller goes away
        closing.cancel()
        await eventually(lambda: engine.pool_stats().streams == 0, within=2, what="place back")
        again = STTStream(engine, silero, ex)  # the cap of one admits a new stream
        await asyncio.wait_for(again.aclose(), 2)
        assert stream.audio_seconds == 0  # still referenced: no collector gave it back
    finally:
        engine.close()


class _DecoderThatFailsToFinish(STTDecoder):
    def start(self) -> None:
        pass

    def feed(self, pcm: bytes) -> str:
        return ""

    def finish(self) -> Transcript:
        raise RuntimeError("decoder failed to finish")


class _FailingSTT(ScriptedSTT):
    """Its decoders fail at the end of an utterance; it counts what comes back."""

    def __init__(self) -> None:
        super().__init__()
        self.lent = 0
        self.returned = 0

    def acquire(self) -> STTDecoder:
        self.lent += 1
        return _DecoderThatFailsToFinish()

    def release(self, decoder: STTDecoder, *, learn: bool = True) -> None:
        self.returned += 1


async def test_aclose_returns_a_decoder_that_fails_to_finish() -> None:
    engine = _FailingSTT()
    ex = InferenceExecutor("stt-failing", 1)
    try:
        stream = STTStream(engine, EnergyVAD(), ex)
        events = await stream.feed(speech(500))
        assert [e.kind for e in events][:1] == ["speech_start"]
        with pytest.raises(RuntimeError, match="failed to finish"):
            await stream.aclose()
        assert (engine.lent, engine.returned) == (1, 1)
        assert engine.pool_stats().streams == 0
    finally:
        ex.shutdown()


async def test_end_returns_a_decoder_that_fails_to_finish() -> None:
    engine = _FailingSTT()
    ex = InferenceExecutor("stt-failing", 1)
    try:
        stream = STTStream(engine, EnergyVAD(), ex)
        await stream.feed(speech(500))
        with pytest.raises(RuntimeError, match="failed to finish"):
            await stream.end()
        assert (engine.lent, engine.returned) == (1, 1)
        assert engine.pool_stats().streams == 0
    finally:
        ex.shutdown()


async def test_audio_still_queued_when_another_task_closes_the_stream_is_dropped_quietly(
    one_thread: _OneThread,
) -> None:
    engine = _FailingSTT()
    stream = STTStream(engine, EnergyVAD(), one_thread.executor)
    await one_thread.occupy()
    feeding = asyncio.ensure_future(stream.feed(speech(500)))
    await eventually(lambda: one_thread.executor.queued == 1, what="the audio is queued")

    await asyncio.wait_for(stream.aclose(), 2)  # the reader's audio is still queued
    assert engine.pool_stats().streams == 0
    one_thread.gate.set()
    assert await asyncio.wait_for(feeding, 5) == []
    assert engine.lent == engine.returned
