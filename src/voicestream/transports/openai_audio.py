"""OpenAI's audio REST API under ``/openai/v1``: speech, transcriptions, translations, models.

Point the official SDK at ``base_url="http://HOST:PORT/openai/v1"`` with a voicestream API key.
The handlers reuse the native pipelines (``TTSStream`` + ``encode_stream``, the VAD-segmented
STT stream); ``protocols.openai_audio`` holds the wire shapes. Errors on these routes come out in
OpenAI's shape, so the SDK raises its own exception classes.

``speed`` is spoken by the engine as far as it can pace itself (a Piper voice: its
``length_scale`` divided by ``speed``, from 0.5 to 1.5 times); FFmpeg's ``atempo`` filter
(chained for factors outside 0.5–2) does the rest, changing the audio's duration without
changing its pitch. ``instructions`` is
accepted and ignored: the embedded engines have no style control; so are a transcription's
``prompt`` and ``temperature``.
Transcription ``stream=true`` sends one ``transcript.text.delta`` per VAD segment as soon as it is
decoded, then ``transcript.text.done``. Any model name is accepted and mapped onto the best
installed engine. Translations (speech in another language → English text) need a multilingual
Whisper model in the models directory; without one they get a ``model_not_installed`` 400 that
says how to add one.

A ``wav`` response that is one clause long has its real sizes in the header; a longer one
streams, and its header says "until EOF" (0xFFFFFFFF), as streaming writers do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

from aiohttp import web

from ..engines.base import STTEngine
from ..engines.stt_stream import STTEvent
from ..engines.tts_stream import TTSStream
from ..engines.whisper_stt import WhisperSTT
from ..engines.windowed_transcription import WINDOW_SECONDS, transcribe_windows
from ..errors import (
    BadRequest,
    InvalidAudio,
    ModelNotInstalled,
    PayloadTooLarge,
    VoiceStreamError,
)
from ..identity import quotas
from ..media.decode import decode_audio
from ..media.formats import AudioFormat, parse_format
from ..media.pauses import windows_at_pauses
from ..media.subtitles import cues_from_words, to_srt, to_vtt
from ..protocols import openai_audio as oa
from ..rest.bodies import read_json_object
from ..rest.multipart import read_form
from ..rest.resources import (
    MEDIA_EXECUTOR,
    METRICS,
    REGISTRY,
    SETTINGS,
    STT_EXECUTOR,
    TTS_EXECUTORS,
    USAGE,
)
from .context import principal_of
from .stt_common import open_recording_stream
from .tts_output import encode_stream

__all__ = ["add_openai_audio_routes"]

log = logging.getLogger(__name__)

PREFIX = "/openai/v1"
_FEED_SECONDS = 1.0
_MAX_SPEECH_CHARS = 4096  # OpenAI's own limit; the server's limit applies when lower

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _openai_errors(handler: Handler) -> Handler:
    """Report VoiceStreamErrors raised before the response started in OpenAI's error shape."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except VoiceStreamError as err:
            request.app[METRICS].errors.labels(err.code).inc()
            return web.json_response(oa.error_body(err), status=oa.error_status(err))

    return wrapped


def add_openai_audio_routes(app: web.Application) -> None:
    """Mount the OpenAI-compatible audio routes under ``/openai/v1``."""
    app.router.add_post(f"{PREFIX}/audio/speech", _openai_errors(post_speech))
    app.router.add_post(f"{PREFIX}/audio/transcriptions", _openai_errors(post_transcriptions))
    app.router.add_post(f"{PREFIX}/audio/translations", _openai_errors(post_translations))
    app.router.add_get(f"{PREFIX}/models", _openai_errors(get_models))
    app.router.add_get(f"{PREFIX}/models/{{model}}", _openai_errors(get_model))


# ---------------------------------------------------------------------------- models


async def get_models(request: web.Request) -> web.Response:
    installed = request.app[REGISTRY].stt_model_names()
    return web.json_response(oa.model_list(installed))


async def get_model(request: web.Request) -> web.Response:
    installed = request.app[REGISTRY].stt_model_names()
    return web.json_response(oa.model_object(request.match_info["model"], installed))


# ---------------------------------------------------------------------------- speech


async def _speech_audio(
    rt: web.Application, stream: TTSStream, fmt: AudioFormat
) -> AsyncIterator[tuple[bytes, float]]:
    """Encoded audio as it is synthesized, with the seconds of audio each piece carries."""
    tempo = stream.tempo  # 1.0 when the engine spoke at the asked speed itself
    async for out in encode_stream(
        stream,
        fmt,
        rt[METRICS],
        transport="openai_http",
        executor=rt[MEDIA_EXECUTOR],
        speed=tempo,
    ):
        # The tempo filter makes each clause 1/tempo as long, give or take a frame.
        yield out.data, out.chunk.duration / tempo if out.chunk is not None else 0.0


async def post_speech(request: web.Request) -> web.StreamResponse:
    rt = request.app
    data = await read_json_object(request)
    req = oa.parse_speech_request(
        data,
        max_chars=min(rt[SETTINGS].max_text_chars, _MAX_SPEECH_CHARS),
        catalog=rt[REGISTRY].voices(),
        default_voice=rt[SETTINGS].default_voice,
    )
    engine, voice = rt[REGISTRY].voice(req.voice)
    fmt = parse_format(req.output_format)
    principal = principal_of(request)
    # Charged before any synthesis (a used-up quota or balance is refused here, as JSON);
    # given back if synthesis fails.
    charge = await quotas.charge(
        rt[USAGE], rt[SETTINGS], principal, "tts_characters", len(req.input)
    )
    stream = TTSStream(engine, voice, rt[TTS_EXECUTORS][engine.name], speed=req.speed)
    stream.push_text(req.input)
    stream.end_input()
    content_type = "text/event-stream" if req.sse else fmt.content_type

    response: web.StreamResponse | None = None
    audio_seconds = 0.0
    client_gone = False
    rt[METRICS].active_streams.labels("openai_speech").inc()
    try:
        async with charge.covering(principal.workspace_id):
            async for audio, seconds in _speech_audio(rt, stream, fmt):
                audio_seconds += seconds
                if response is None:
                    # Headers leave with the first audio, so a failure before it is a JSON error.
                    response = web.StreamResponse(
                        headers={"Content-Type": content_type, "X-Voice-Id": voice.id}
                    )
                    response.enable_chunked_encoding()
                    await response.prepare(request)
                if audio:
                    sent = oa.sse(oa.speech_delta_event(audio)) if req.sse else audio
                    await response.write(sent)
    except ConnectionError:
        log.debug("openai speech client went away after %.2f s of audio", audio_seconds)
        client_gone = True
    except VoiceStreamError as err:
        if response is None:
            raise
        log.warning("openai speech stream aborted after audio started: %s", err)
        raise ConnectionResetError("synthesis failed mid-stream") from err
    finally:
        rt[METRICS].active_streams.labels("openai_speech").dec()
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
    rt: web.Application,
    engine: STTEngine,
    pcm: bytes,
    on_segment: Callable[[oa.TranscriptSegment], Awaitable[None]],
    language: str | None = None,
) -> list[oa.TranscriptSegment]:
    stream = await open_recording_stream(rt, pcm, engine=engine, language=language)
    step = int(_FEED_SECONDS * engine.sample_rate) * 2
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


def _uploaded(audio: bytes | None) -> bytes:
    if audio is None:
        raise InvalidAudio("multipart body has no 'file' part")
    if not audio:
        raise InvalidAudio("the uploaded file is empty")
    return audio


async def _decode_upload(rt: web.Application, audio: bytes, rate: int) -> bytes:
    """The uploaded file as mono s16le at ``rate``, decoded off the loop."""
    limit = rt[SETTINGS].max_stream_seconds
    return await rt[MEDIA_EXECUTOR].run(lambda: decode_audio(audio, rate, limit))


async def post_transcriptions(request: web.Request) -> web.StreamResponse:
    rt = request.app
    audio, fields = await _read_form(request, rt[SETTINGS].max_upload_bytes)
    opts = oa.parse_transcription_options(fields)
    # Any model name: an installed model's own name picks it, any other the best one here.
    engine = rt[REGISTRY].stt_for(opts.model, language=opts.language)
    if opts.language and not engine.hears(opts.language):
        raise BadRequest(
            f"language {opts.language!r} is not supported; this server transcribes "
            f"{engine.language}",
            details={"param": "language"},
        )
    rate = engine.sample_rate
    pcm = await _decode_upload(rt, _uploaded(audio), rate)
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
    segments = await _transcribe(rt, engine, pcm, on_segment, opts.language)
    rt[METRICS].engine_rtf.labels(engine.name).observe(
        (time.monotonic() - t0) / max(duration, 1e-3)
    )
    rt[METRICS].audio_seconds.labels("transcribed").inc(duration)
    await rt[USAGE].record(principal_of(request), "stt_seconds", duration)

    if sse_response is not None:
        text = " ".join(s.text for s in segments)
        await sse_response.write(oa.sse(oa.transcript_done_event(text, duration)))
        await sse_response.write_eof()
        return sse_response
    return _text_response(
        segments,
        opts.response_format,
        duration=duration,
        language=opts.language or engine.language,
        granularities=opts.granularities,
    )


def _text_response(
    segments: list[oa.TranscriptSegment],
    response_format: str,
    *,
    duration: float,
    language: str,
    granularities: frozenset[str],
    task: str = "transcribe",
) -> web.Response:
    """A transcript (or translation) in the asked ``response_format``."""
    text = " ".join(s.text for s in segments)
    words = [w for s in segments for w in s.words]
    match response_format:
        case "text":
            return web.Response(text=text + "\n", content_type="text/plain")
        case "srt":
            return web.Response(text=to_srt(cues_from_words(words)), content_type="text/plain")
        case "vtt":
            return web.Response(text=to_vtt(cues_from_words(words)), content_type="text/vtt")
        case "verbose_json":
            body = oa.verbose_transcription(
                segments,
                language=language,
                duration=duration,
                granularities=granularities,
                task=task,
            )
            return web.json_response(body)
    return web.json_response(oa.transcription_json(text, duration))


# ---------------------------------------------------------------------------- translations


async def post_translations(request: web.Request) -> web.StreamResponse:
    """Speech in any language the model knows → English text, in the transcription formats.

    Whisper translates whole recordings rather than VAD-segmented speech, so the file goes to it
    in windows of at most 30 s cut at pauses, one executor job each: live streams' jobs queued
    meanwhile run between them. Each window is one segment.
    """
    rt = request.app
    audio, fields = await _read_form(request, rt[SETTINGS].max_upload_bytes)
    opts = oa.parse_translation_options(fields)
    upload = _uploaded(audio)
    engine = rt[REGISTRY].translation_engine()  # ModelNotInstalled: says how to add one
    if not isinstance(engine, WhisperSTT):  # pragma: no cover - only Whisper is multilingual
        raise ModelNotInstalled(
            f"{engine.name} cannot translate; install a multilingual Whisper model",
            details={"param": "model"},
        )
    rate = engine.sample_rate
    pcm = await _decode_upload(rt, upload, rate)
    duration = len(pcm) / 2 / rate
    windows = await rt[MEDIA_EXECUTOR].run(
        partial(windows_at_pauses, pcm, rate, max_seconds=WINDOW_SECONDS)
    )
    engine.admit_stream()
    try:
        t0 = time.monotonic()
        results = await transcribe_windows(engine, pcm, windows, rt[STT_EXECUTOR], task="translate")
    finally:
        engine.leave_stream()
    rt[METRICS].engine_rtf.labels(engine.name).observe(
        (time.monotonic() - t0) / max(duration, 1e-3)
    )
    rt[METRICS].audio_seconds.labels("transcribed").inc(duration)
    await rt[USAGE].record(principal_of(request), "stt_seconds", duration)
    segments = [
        oa.TranscriptSegment(
            round(r.start, 3),
            round(r.end, 3),
            r.transcript.text,
            tuple((w.text, w.start, w.end) for w in r.transcript.words),
        )
        for r in results
        if r.transcript.text
    ]
    return _text_response(
        segments,
        opts.response_format,
        duration=duration,
        language="en",
        granularities=frozenset({"segment"}),
        task="translate",
    )
