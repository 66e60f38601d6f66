"""Dubbing test material: tiny media made here (PyAV, the server's own voices) and dubs stored
directly (a plan and an output, no job run) for the route and policy tests.

A stored dub's job is a row no worker runs (its type is not one), so the dub stays as stored.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import av
import numpy as np

from server.idle_jobs import insert_idle_job
from voicestream.dubbing.model import DubOptions, DubPlan, DubSegment, DubSpeaker
from voicestream.engines.catalog import EngineRegistry
from voicestream.media.resample import resample
from voicestream.rest.files import FILES
from voicestream.rest.resources import POOL
from voicestream.store.dubs import DubStore, NewDub

RATE = 16000
SEGMENTS = ((0.5, 1.5, "Good morning."), (2.0, 3.2, "The garden is open today."))
OUTPUT_BYTES = b"dubbed media bytes"


def speech(registry: EngineRegistry, text: str, voice: str = "slt") -> np.ndarray:
    """Blocking: ``text`` spoken by ``voice``, mono int16 at RATE."""
    engine, found = registry.voice(voice)
    spoken = engine.synthesize(text, found)
    return np.frombuffer(resample(spoken.pcm, spoken.sample_rate, RATE), dtype="<i2")


def make_mp4(audio: np.ndarray | None, seconds: float, *, video: bool = True) -> bytes:
    """Blocking: an MP4 of ``seconds``: 64x64 @ 10 fps frames of changing grey (when
    ``video``) and ``audio`` as AAC (when given)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10) if video else None
        if stream is not None:
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        sound = container.add_stream("aac", rate=RATE) if audio is not None else None
        if sound is not None:
            sound.codec_context.layout = "mono"
        if stream is not None:
            for i in range(int(seconds * 10)):
                shade = np.full((64, 64, 3), (i * 9) % 255, np.uint8)
                frame = av.VideoFrame.from_ndarray(shade, format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, 10)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        if sound is not None and audio is not None:
            block = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="s16", layout="mono")
            block.sample_rate, block.pts, block.time_base = RATE, 0, Fraction(1, RATE)
            container.mux(sound.encode(block))
            container.mux(sound.encode(None))
    return buffer.getvalue()


def spoken_mp4(registry: EngineRegistry, text: str, *, lead: float = 0.5) -> bytes:
    """Blocking: ``text`` spoken after ``lead`` seconds of silence, under a tiny video."""
    voice = speech(registry, text)
    silence = np.zeros(int(lead * RATE), np.int16)
    audio = np.concatenate([silence, voice, silence])
    return make_mp4(audio, audio.size / RATE)


def plan(language: str = "en") -> DubPlan:
    return DubPlan(
        source_language="en",
        duration=3.5,
        has_video=True,
        segments=[
            DubSegment(
                id=f"seg_{i:04d}",
                start=start,
                end=end,
                speaker_id="speaker_0",
                text=text,
                translations={language: text},
            )
            for i, (start, end, text) in enumerate(SEGMENTS)
        ],
        speakers=[DubSpeaker(id="speaker_0", voices={language: "slt"})],
        notes=["stored by the test"],
    )


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def stored_dub(server: Any, workspace_id: str | uuid.UUID, language: str = "en") -> str:
    """A dubbed dub of ``workspace_id`` (its plan and a ``language`` output), stored directly."""
    ws = uuid.UUID(str(workspace_id))
    files = server.app[FILES]
    source = await files.upload(
        ws, name="source.mp4", content_type="video/mp4", chunks=_chunks(b"source bytes")
    )
    output = await files.upload(
        ws, name="dubbed.mp4", content_type="video/mp4", chunks=_chunks(OUTPUT_BYTES)
    )
    pool = server.app[POOL]
    dubs = DubStore(pool)
    dub_id = uuid.uuid4()
    options = DubOptions(source_language="en", target_languages=[language])
    async with pool.acquire() as conn, conn.transaction():
        job = await insert_idle_job(conn, ws, "test.dub")
        new = NewDub(
            id=dub_id,
            workspace_id=ws,
            name="stored.mp4",
            source_file_id=source.id,
            owns_source=True,
            options=options.model_dump(mode="json"),
            supplied={},
            media={"content_type": "video/mp4", "duration": 3.5, "has_video": True},
        )
        await dubs.insert(conn, new, job.id)
    await dubs.set_plan(ws, dub_id, plan(language).model_dump(mode="json"))
    srt = "1\n00:00:00,500 --> 00:00:01,500\nGood morning.\n"
    vtt = "WEBVTT\n\n00:00:00.500 --> 00:00:01.500\nGood morning.\n"
    outputs = {
        language: {
            "file_id": str(output.id),
            "format": "mp4",
            "content_type": "video/mp4",
            "duration": 3.5,
            "bytes": len(OUTPUT_BYTES),
            "srt": srt,
            "vtt": vtt,
        }
    }
    await dubs.finish(ws, dub_id, job.id, outputs)
    return str(dub_id)
