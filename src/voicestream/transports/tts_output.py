"""Turning a TTS stream into what a transport sends: encoded audio plus alignment, with the
figures (time to first audio, real-time factor) recorded on the way."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

from ..engines.executor import InferenceExecutor
from ..engines.tts_stream import SpeechChunk, TTSStream
from ..media.encode import StreamEncoder, make_encoder
from ..media.formats import AudioFormat
from ..observability.metrics import Metrics

__all__ = ["EncodedChunk", "encode_stream"]


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
) -> AsyncIterator[EncodedChunk]:
    """Yield each clause's encoded audio as soon as it is synthesized, then the encoder's tail.

    Compressed formats are encoded on ``executor``: MP3 costs ~0.4 ms per 20 ms of audio, so a
    two-second clause would hold the event loop for 40 ms. Raw formats (a resample and at most a
    G.711 table lookup) stay inline.
    """
    encoder: StreamEncoder | None = None
    offload = executor is not None and not fmt.is_raw
    first = True
    async for chunk in stream:
        enc = encoder = encoder or make_encoder(fmt, chunk.sample_rate)
        pcm = chunk.pcm
        if offload:
            assert executor is not None
            data = await executor.run(partial(enc.encode, pcm))
        else:
            data = enc.encode(pcm)
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
        tail = await executor.run(encoder.finish) if offload and executor else encoder.finish()
        if tail:
            yield EncodedChunk(None, tail)
