"""``POST /v1/stt``: an audio file (or raw PCM) in, a transcript out."""

from __future__ import annotations

import time

from aiohttp import web
from pydantic import BaseModel, Field

from ..engines.base import STTEngine
from ..errors import InvalidAudio, PayloadTooLarge, ValidationFailed
from ..media.decode import decode_audio, decode_raw
from ..media.subtitles import cues_from_words, to_srt, to_vtt
from ..rest.multipart import read_form
from ..rest.resources import MEDIA_EXECUTOR, METRICS, REGISTRY, SETTINGS, USAGE
from .context import principal_of
from .stt_common import TranscriptBuilder, open_recording_stream, parse_raw_format

__all__ = ["Transcript", "TranscriptWord", "post_stt", "transcribe_pcm"]

_RESPONSE_FORMATS = ("json", "text", "srt", "vtt")
# Feed the decoder a second at a time: each job is short, so other streams' work interleaves.
_FEED_SECONDS = 1.0


class TranscriptWord(BaseModel):
    text: str
    start: float = Field(description="Seconds from the start of the audio.")
    end: float


class Transcript(BaseModel):
    """``response_format=json``: the transcript with each word's timing."""

    text: str
    language: str = Field(description="The language code, e.g. `en`.")
    duration: float = Field(description="The audio's length in seconds.")
    words: list[TranscriptWord]


async def post_stt(request: web.Request) -> web.StreamResponse:
    rt = request.app
    response_format = request.query.get("response_format", "json")
    if response_format not in _RESPONSE_FORMATS:
        raise ValidationFailed(
            f"response_format must be one of {', '.join(_RESPONSE_FORMATS)}; "
            f"got {response_format!r}"
        )
    raw_fmt = parse_raw_format(request.query["format"]) if "format" in request.query else None
    data = await _read_upload(request, rt[SETTINGS].max_upload_bytes)
    if not data:
        raise InvalidAudio("no audio: the request body is empty")
    rate = rt[REGISTRY].stt.sample_rate
    if raw_fmt is not None:
        fmt = raw_fmt
        pcm = await rt[MEDIA_EXECUTOR].run(lambda: decode_raw(data, fmt, rate))
    else:
        limit = rt[SETTINGS].max_stream_seconds
        pcm = await rt[MEDIA_EXECUTOR].run(lambda: decode_audio(data, rate, limit))
    duration = len(pcm) / 2 / rate
    t0 = time.monotonic()
    transcript = await transcribe_pcm(rt, pcm, source_rate=raw_fmt.sample_rate if raw_fmt else None)
    rt[METRICS].engine_rtf.labels(rt[REGISTRY].stt.name).observe(
        (time.monotonic() - t0) / max(duration, 1e-3)
    )
    rt[METRICS].audio_seconds.labels("transcribed").inc(duration)
    await rt[USAGE].record(principal_of(request), "stt_seconds", duration)

    cues_words = [(w.text, w.start, w.end) for w in transcript.words]
    match response_format:
        case "text":
            return web.Response(text=transcript.text + "\n", content_type="text/plain")
        case "srt":
            return web.Response(text=to_srt(cues_from_words(cues_words)), content_type="text/plain")
        case "vtt":
            return web.Response(text=to_vtt(cues_from_words(cues_words)), content_type="text/vtt")
    body = Transcript(
        text=transcript.text,
        language=rt[REGISTRY].stt.language.split("-")[0],
        duration=round(duration, 3),
        words=[
            TranscriptWord(text=w.text, start=round(w.start, 3), end=round(w.end, 3))
            for w in transcript.words
        ],
    )
    return web.json_response(text=body.model_dump_json())


async def transcribe_pcm(
    rt: web.Application,
    pcm: bytes,
    *,
    source_rate: int | None = None,
    engine: STTEngine | None = None,
    language: str | None = None,
) -> TranscriptBuilder:
    """A whole recording through the streaming pipeline (VAD-segmented), as one transcript;
    ``engine``: one picked by model name (``registry.stt_for``), else the default;
    ``language``: what the client says is spoken (None: the engine's own or detected)."""
    engine = engine or rt[REGISTRY].stt
    stream = await open_recording_stream(
        rt, pcm, source_rate=source_rate, engine=engine, language=language
    )
    step = int(_FEED_SECONDS * engine.sample_rate) * 2
    out = TranscriptBuilder()
    try:
        for i in range(0, len(pcm), step):
            out.add(await stream.feed(pcm[i : i + step]))
        out.add(await stream.end())
    finally:
        await stream.aclose()
    return out


async def _read_upload(request: web.Request, limit: int) -> bytes:
    """The audio bytes: the whole body, or the ``file`` part of a multipart form."""
    too_large = PayloadTooLarge(
        f"upload exceeds {limit} bytes; send a shorter file or use the stream"
    )
    if not request.content_type.startswith("multipart/"):
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_large from None
    form = await read_form(request, file_limit=limit, too_large=too_large)
    if form.file is None:
        raise InvalidAudio('multipart body has no "file" part')
    return form.file.data
