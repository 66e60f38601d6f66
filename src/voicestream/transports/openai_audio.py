"""OpenAI's audio REST API under ``/openai/v1``: speech, transcriptions and models.

Point the official SDK at ``base_url="http://HOST:PORT/openai/v1"`` with a voicestream API key.
The handlers reuse the native pipelines (``TTSStream`` + ``encode_stream``, the VAD-segmented
STT stream); ``protocols.openai_audio`` holds the wire shapes. Errors on these routes come out in
OpenAI's shape, so the SDK raises its own exception classes.

``speed`` is applied with FFmpeg's ``atempo`` filter (chained for factors outside 0.5–2), which
changes duration without changing pitch. ``instructions`` is accepted and ignored: the embedded
engines have no style control; so are a transcription's ``prompt`` and ``temperature``.
Transcription ``stream=true`` sends one ``transcript.text.delta`` per VAD segment as soon as it is
decoded, then ``transcript.text.done``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

from aiohttp import web

from ..engines.stt_stream import STTEvent
from ..engines.tts_stream import TTSStream
from ..errors import BadRequest, InvalidAudio, PayloadTooLarge, VoiceStreamError
from ..media.decode import decode_audio
from ..media.encode import make_encoder
from ..media.formats import AudioFormat, parse_format
from ..media.subtitles import cues_from_words, to_srt, to_vtt
from ..media.tempo import Tempo
from ..protocols import openai_audio as oa
from .context import RUNTIME, Runtime, principal_of
from .http_common import read_json_object
from .multipart_form import read_form
from .stt_common import open_recording_stream
from .tts_output import encode_stream

__all__ = ["add_openai_audio_routes"]

log = logging.getLogger(__name__)

PREFIX = "/openai/v1"
# With speed != 1 the audio goes through the tempo filter at this rate, then the encoder.
_TEMPO_RATE = 24000
_FEED_SECONDS = 1.0
_MAX_SPEECH_CHARS = 4096  # OpenAI's own limit; the server's limit applies when lower

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _openai_errors(handler: Handler) -> Handler:
    """Report VoiceStreamErrors raised before the response started in OpenAI's error shape."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except VoiceStreamError as err:
            request.app[RUNTIME].metrics.errors.labels(err.code).inc()
            return web.json_response(oa.error_body(err), status=oa.error_status(err))

    return wrapped


def add_openai_audio_routes(app: web.Application) -> None:
    """Mount the OpenAI-compatible audio routes under ``/openai/v1``."""
    app.router.add_post(f"{PREFIX}/audio/speech", _openai_errors(post_speech))
    app.router.add_post(f"{PREFIX}/audio/transcriptions", _openai_errors(post_transcriptions))
    app.router.add_get(f"{PREFIX}/models", _openai_errors(get_models))
    app.router.add_get(f"{PREFIX}/models/{{model}}", _openai_errors(get_model))


# ---------------------------------------------------------------------------- models


async def get_models(request: web.Request) -> web.Response:
    return web.json_response(oa.model_list())


async def get_model(request: web.Request) -> web.Response:
    return web.json_response(oa.model_object(request.match_info["model"]))


# ---------------------------------------------------------------------------- speech


async def _speech_audio(
    rt: Runtime, stream: TTSStream, fmt: AudioFormat, speed: float
) -> AsyncIterator[tuple[bytes, float]]:
    """Encoded audio as it is synthesized, with the seconds of audio each piece carries."""
    if speed == 1.0:
        async for out in encode_stream(
            stream, fmt, rt.metrics, transport="openai_http", executor=rt.media_executor
        ):
            yield out.data, out.chunk.duration if out.chunk is not None else 0.0
        return
    # Synthesized audio → PCM at a fixed rate → tempo filter → the requested encoder.
    tempo = Tempo(_TEMPO_RATE, speed)
    encoder = make_encoder(fmt, _TEMPO_RATE)
    pcm_fmt = parse_format(f"pcm_{_TEMPO_RATE}")

    def step(pcm: bytes) -> tuple[bytes, float]:  # filter + encode: off the loop
        out = tempo.process(pcm)
        return encoder.encode(out), len(out) / 2 / _TEMPO_RATE

    def tail() -> tuple[bytes, float]:
        out = tempo.flush()
        return encoder.encode(out) + encoder.finish(), len(out) / 2 / _TEMPO_RATE

    async for out in encode_stream(stream, pcm_fmt, rt.metrics, transport="openai_http"):
        yield await rt.media_executor.run(partial(step, out.data))
    yield await rt.media_executor.run(tail)


async def post_speech(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    data = await read_json_object(request)
    req = oa.parse_speech_request(
        data, max_chars=min(rt.settings.max_text_chars, _MAX_SPEECH_CHARS)
    )
    engine, voice = rt.registry.voice(req.voice)
    fmt = parse_format(req.output_format)
    stream = TTSStream(engine, voice, rt.tts_executors[engine.name])
    stream.push_text(req.input)
    stream.end_input()
    content_type = "text/event-stream" if req.sse else fmt.content_type

    response: web.StreamResponse | None = None
    audio_seconds = 0.0
    client_gone = False
    rt.metrics.active_streams.labels("openai_speech").inc()
    try:
        async for audio, seconds in _speech_audio(rt, stream, fmt, req.speed):
            audio_seconds += seconds
            if response is None:
                # Headers leave with the first audio, so a failure before it is a JSON error.
                response = web.StreamResponse(
                    headers={"Content-Type": content_type, "X-Voice-Id": voice.id}
                )
                response.enable_chunked_encoding()
                await response.prepare(request)
            if audio:
                await response.write(oa.sse(oa.speech_delta_event(audio)) if req.sse else audio)
    except ConnectionError:
        log.debug("openai speech client went away after %.2f s of audio", audio_seconds)
        client_gone = True
    except VoiceStreamError as err:
        if response is None:
            raise
        log.warning("openai speech stream aborted after audio started: %s", err)
        raise ConnectionResetError("synthesis failed mid-stream") from err
    finally:
        rt.metrics.active_streams.labels("openai_speech").dec()
    await rt.usage.record(principal_of(request), "tts_characters", len(req.input))
    if client_gone:
        assert response is not None
        return response
    if response is None:
        # Nothing speakable (e.g. only punctuation): an empty but valid stream.
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
    if req.sse:
        usage = oa.speech_usage(len(req.input), audio_seconds)
        await response.write(oa.sse(oa.speech_done_event(usage)))
    await response.write_eof()
    return response


# ---------------------------------------------------------------------------- transcriptions


async def _read_form(request: web.Request, limit: int) -> tuple[bytes | None, dict[str, list[str]]]:
    """The ``file`` part and every other field's values, in order."""
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("send multipart/form-data with a 'file' part", details={"param": "file"})
    too_large = PayloadTooLarge(f"upload exceeds {limit} bytes", details={"param": "file"})
    form = await read_form(request, file_limit=limit, too_large=too_large)
    return (form.file.data if form.file is not None else None), form.fields


async def _transcribe(
    rt: Runtime, pcm: bytes, on_segment: Callable[[oa.TranscriptSegment], Awaitable[None]]
) -> list[oa.TranscriptSegment]:
    stream = await open_recording_stream(rt, pcm)
    step = int(_FEED_SECONDS * rt.registry.stt.sample_rate) * 2
    segments: list[oa.TranscriptSegment] = []

    async def take(events: list[STTEvent]) -> None:
        for ev in events:
            if ev.kind == "final" and ev.text:
                seg = oa.TranscriptSegment(
                    ev.start, ev.end, ev.text, tuple((w.text, w.start, w.end) for w in ev.words)
                )
                segments.append(seg)
                await on_segment(seg)

    try:
        for i in range(0, len(pcm), step):
            await take(await stream.feed(pcm[i : i + step]))
        await take(await stream.end())
    finally:
        await stream.aclose()
    return segments


async def post_transcriptions(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    audio, fields = await _read_form(request, rt.settings.max_upload_bytes)
    opts = oa.parse_transcription_options(fields)
    stt_language = rt.registry.stt.language
    if opts.language and opts.language.lower() != stt_language.split("-")[0].lower():
        raise BadRequest(
            f"language {opts.language!r} is not supported; this server transcribes {stt_language}",
            details={"param": "language"},
        )
    if audio is None:
        raise InvalidAudio("multipart body has no 'file' part")
    if not audio:
        raise InvalidAudio("the uploaded file is empty")
    rate = rt.registry.stt.sample_rate
    limit = rt.settings.max_stream_seconds
    pcm = await rt.media_executor.run(lambda: decode_audio(audio, rate, limit))
    duration = len(pcm) / 2 / rate

    sse_response: web.StreamResponse | None = None
    if opts.stream:
        sse_response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        sse_response.enable_chunked_encoding()
        await sse_response.prepare(request)

    sent = 0

    async def on_segment(seg: oa.TranscriptSegment) -> None:
        nonlocal sent
        if sse_response is not None:
            delta = seg.text if sent == 0 else " " + seg.text
            await sse_response.write(oa.sse(oa.transcript_delta_event(delta)))
            sent += 1

    t0 = time.monotonic()
    segments = await _transcribe(rt, pcm, on_segment)
    rt.metrics.engine_rtf.labels(rt.registry.stt.name).observe(
        (time.monotonic() - t0) / max(duration, 1e-3)
    )
    rt.metrics.audio_seconds.labels("transcribed").inc(duration)
    await rt.usage.record(principal_of(request), "stt_seconds", duration)
    text = " ".join(s.text for s in segments)

    if sse_response is not None:
        await sse_response.write(oa.sse(oa.transcript_done_event(text, duration)))
        await sse_response.write_eof()
        return sse_response
    words = [w for s in segments for w in s.words]
    match opts.response_format:
        case "text":
            return web.Response(text=text + "\n", content_type="text/plain")
        case "srt":
            return web.Response(text=to_srt(cues_from_words(words)), content_type="text/plain")
        case "vtt":
            return web.Response(text=to_vtt(cues_from_words(words)), content_type="text/vtt")
        case "verbose_json":
            body = oa.verbose_transcription(
                segments,
                language=stt_language,
                duration=duration,
                granularities=opts.granularities,
            )
            return web.json_response(body)
    return web.json_response(oa.transcription_json(text, duration))
