"""Turning a TTS stream into what a transport sends: encoded audio plus alignment, with the
figures (time to first audio, real-time factor) recorded on the way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial

from ..engines.executor import InferenceExecutor
from ..engines.tts_stream import SpeechChunk, TTSStream
from ..media.encode import StreamEncoder, make_encoder
from ..media.formats import AudioFormat, Codec
from ..media.wav import complete_wav
from ..observability.metrics import Metrics

__all__ = ["EncodedChunk", "as_file", "encode_stream"]


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    chunk: SpeechChunk | None  # None for the encoder's final flush
    data: bytes


async def encode_stream(
    stream: TTSStream,
    fmt: AudioFormat,
    metrics: Metrics,
    *,
    transport: str,
    executor: InferenceExecutor | None = None,
    speed: float = 1.0,
) -> AsyncIterator[EncodedChunk]:
    """Yield each clause's encoded audio as soon as it is synthesized, then the encoder's tail.

    Compressed formats, and any audio whose tempo changes (``speed``), are encoded on
    ``executor``: MP3 costs ~0.4 ms per 20 ms of audio, so a two-second clause would hold the
    event loop for 40 ms. Raw formats (a resample and at most a G.711 table lookup) stay
    inline.

    A WAV stream's header leaves with its first clause, before the length is known, so it says
    "until EOF". When that first clause turns out to be the whole stream (the text was one
    clause and nothing more can come), the chunk carries the encoder's tail too and the header
    has the real sizes.
    """
    encoder: StreamEncoder | None = None
    offload = executor is not None and (not fmt.is_raw or speed != 1.0)
    first = True

    async def run(job: Callable[[], bytes]) -> bytes:
        if offload:
            assert executor is not None
            return await executor.run(job)
        return job()

    async for chunk, whole in _chunks(stream, peek_first=fmt.codec is Codec.WAV):
        enc = encoder = encoder or make_encoder(fmt, chunk.sample_rate, speed=speed)
        if whole:
            data = complete_wav(await run(partial(_encode_all, enc, chunk.pcm)))
        else:
            data = await run(partial(enc.encode, chunk.pcm))
        if first and stream.first_clause_at is not None:
            metrics.time_to_first_audio.labels(transport).observe(
                time.monotonic() - stream.first_clause_at
            )
            stream.mark_first_audio()
            first = False
        if chunk.duration > 0:
            metrics.engine_rtf.labels(stream.engine_name).observe(
                chunk.synth_seconds / chunk.duration
            )
            metrics.engine_queue_seconds.labels(stream.engine_name).observe(chunk.queued_seconds)
            metrics.audio_seconds.labels("synthesized").inc(chunk.duration)
        yield EncodedChunk(chunk, data)
    if encoder is not None:
        tail = await run(encoder.finish)
        if tail:
            yield EncodedChunk(None, tail)


def as_file(fmt: AudioFormat, audio: bytes) -> bytes:
    """A whole stream's encoded audio as a file: a WAV stream gets its real sizes."""
    if fmt.codec is Codec.WAV and audio:
        return complete_wav(audio)
    return audio


def _encode_all(encoder: StreamEncoder, pcm: bytes) -> bytes:
    return encoder.encode(pcm) + encoder.finish()


async def _chunks(
    stream: TTSStream, *, peek_first: bool
) -> AsyncIterator[tuple[SpeechChunk, bool]]:
    """The stream's chunks, each with whether it is known to be the whole stream.

    With ``peek_first``, the second chunk is asked for as soon as the first is here. A stream
    that has already ended answers within one turn of the loop; otherwise that request runs on
    (the next clause's synthesis is queued a little earlier) and is awaited for the next chunk,
    so the first chunk never waits for the peek.
    """
    chunks = aiter(stream)
    pending: asyncio.Future[SpeechChunk] | None = None
    try:
        if peek_first:
            try:
                first = await anext(chunks)
            except StopAsyncIteration:
                return
            pending = asyncio.ensure_future(anext(chunks))
            await asyncio.sleep(0)  # the one turn an ended stream needs to say so
            if pending.done() and isinstance(pending.exception(), StopAsyncIteration):
                pending = None
                yield first, True
                return
            yield first, False
            try:
                second = await pending
            except StopAsyncIteration:
                return
            finally:
                pending = None
            yield second, False
        async for chunk in chunks:
            yield chunk, False
    finally:
        if pending is not None:  # the consumer left while the peek was still running
            pending.cancel()
            await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # retrieved: the consumer has gone and needs no error
        if isinstance(chunks, AsyncGenerator):
            await chunks.aclose()
