"""ElevenLabs' REST API under ``/elevenlabs``, so the official SDK works against this server.

``ElevenLabs(base_url="http://host:port/elevenlabs", api_key=key)``: text-to-speech (binary,
streamed, with timestamps, streamed with timestamps), speech-to-text, voices, models, user and
subscription. Shapes and validation live in ``protocols/elevenlabs.py``; synthesis, encoding and
transcription are the native pipeline's. Errors are answered in ElevenLabs' shape (``detail``),
so the SDK raises ``ApiError`` with the status.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..billing.subscription_view import subscription_view
from ..engines.tts_stream import TTSStream
from ..errors import (
    InvalidAudio,
    PayloadTooLarge,
    ValidationFailed,
)
from ..identity import quotas
from ..identity.compliance import COMPLIANCE
from ..media.decode import decode_audio, decode_raw
from ..media.formats import AudioFormat, Codec, parse_format
from ..protocols import elevenlabs as el
from ..rest.bodies import read_model
from ..rest.multipart import read_form
from ..rest.resources import (
    HISTORY,
    MEDIA_EXECUTOR,
    METRICS,
    POOL,
    REGISTRY,
    SETTINGS,
    TTS_EXECUTORS,
    USAGE,
)
from ..store.history import NewHistoryItem, new_history_id
from .context import principal_of
from .elevenlabs_http import enable_logging, stream_out
from .elevenlabs_sockets import Handler, elevenlabs_errors
from .http_stt import transcribe_pcm
from .tts_output import EncodedChunk, as_file, encode_stream

__all__ = ["PREFIX", "add_elevenlabs_routes"]

PREFIX = "/elevenlabs"


def add_elevenlabs_routes(app: web.Application) -> None:
    """Mount the ElevenLabs-compatible REST API under ``/elevenlabs``."""
    routes: list[tuple[str, str, Handler]] = [
        ("POST", "/v1/text-to-speech/{voice_id}", tts_convert),
        ("POST", "/v1/text-to-speech/{voice_id}/stream", tts_convert),
        ("POST", "/v1/text-to-speech/{voice_id}/with-timestamps", tts_with_timestamps),
        ("POST", "/v1/text-to-speech/{voice_id}/stream/with-timestamps", tts_stream_timestamps),
        ("POST", "/v1/speech-to-text", speech_to_text),
        ("GET", "/v1/voices", list_voices),
        ("GET", "/v1/voices/settings/default", default_voice_settings),
        ("GET", "/v1/voices/{voice_id}", get_voice),
        ("GET", "/v1/voices/{voice_id}/settings", voice_settings),
        ("GET", "/v2/voices", search_voices),
        ("GET", "/v1/models", list_models),
        ("GET", "/v1/user", get_user),
        ("GET", "/v1/user/subscription", get_subscription),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, PREFIX + path, elevenlabs_errors(handler))


# --- text to speech ------------------------------------------------------------------------


async def _start_tts(
    request: web.Request,
) -> tuple[web.Application, el.TTSBody, AudioFormat, TTSStream, quotas.Charge]:
    """Validate everything and charge the characters before any audio is made, so bad input
    or a used-up quota or balance is a clean 4xx."""
    rt = request.app
    fmt = parse_format(request.query.get("output_format", el.DEFAULT_OUTPUT_FORMAT))
    enable_logging(request)
    engine, voice = rt[REGISTRY].voice(request.match_info["voice_id"])
    body = el.check_tts_body(
        await read_model(request, el.TTSBody), max_text_chars=rt[SETTINGS].max_text_chars
    )
    charge = await quotas.charge(
        rt[USAGE], rt[SETTINGS], principal_of(request), "tts_characters", len(body.text)
    )
    speed = body.voice_settings.speed if body.voice_settings is not None else None
    # voice_settings.speed is spoken by engines that pace themselves (Piper) and ignored by the
    # others: a tempo filter would put the character timestamps out of step with the audio.
    stream = TTSStream(engine, voice, rt[TTS_EXECUTORS][engine.name], speed=speed or 1.0)
    stream.push_text(body.text)
    stream.end_input()
    return rt, body, fmt, stream, charge


async def _encoded(
    rt: web.Application, stream: TTSStream, fmt: AudioFormat
) -> AsyncIterator[EncodedChunk]:
    rt[METRICS].active_streams.labels("tts_elevenlabs").inc()
    try:
        async for out in encode_stream(
            stream, fmt, rt[METRICS], transport="http", executor=rt[MEDIA_EXECUTOR]
        ):
            yield out
    finally:
        rt[METRICS].active_streams.labels("tts_elevenlabs").dec()


async def tts_convert(request: web.Request) -> web.StreamResponse:
    """``/v1/text-to-speech/{voice_id}[/stream]``: the audio bytes, streamed per clause.

    WAV from the non-streaming path comes whole, so its header has the real sizes; ``/stream``
    sends it as it is made, its header saying "until EOF" (unless it is one clause long).
    """
    rt, body, fmt, stream, charge = await _start_tts(request)
    history = await _History.open(request, body, fmt, stream)
    whole_file = fmt.codec is Codec.WAV and not request.path.endswith("/stream")

    async def pieces() -> AsyncIterator[bytes]:
        audio = bytearray()
        async for out in _encoded(rt, stream, fmt):
            history.add(out.data)
            if whole_file:
                audio += out.data
            else:
                yield out.data
        if whole_file:
            yield as_file(fmt, bytes(audio))

    headers = {**_tts_headers(stream, fmt), **history.headers()}
    return await stream_out(request, fmt.content_type, pieces(), headers, charge, history)


class _History:
    """A generation's ``/v1/history`` item: the id is made up front for the response headers,
    the row (with the audio collected here) is written only once all the audio was sent."""

    def __init__(
        self, request: web.Request, body: el.TTSBody, fmt: AudioFormat, stream: TTSStream
    ) -> None:
        self._request = request
        self._body = body
        self._fmt = fmt
        self._voice = stream.voice
        self.enabled = enable_logging(request)
        self.item_id = new_history_id()
        self._audio = bytearray()

    @classmethod
    async def open(
        cls, request: web.Request, body: el.TTSBody, fmt: AudioFormat, stream: TTSStream
    ) -> _History:
        history = cls(request, body, fmt, stream)
        if history.enabled:
            # A HIPAA workspace keeps no TTS history unless it says so (identity/compliance.py).
            rules = request.config_dict[COMPLIANCE]
            history.enabled = await rules.keeps_tts_history(principal_of(request).workspace_id)
        return history

    def headers(self) -> dict[str, str]:
        return {"history-item-id": self.item_id} if self.enabled else {}

    def add(self, data: bytes | bytearray) -> None:
        if self.enabled:
            self._audio += data

    async def record(self) -> None:
        if not self.enabled:
            return
        settings = self._body.voice_settings
        await self._request.app[HISTORY].add(
            principal_of(self._request),
            NewHistoryItem(
                id=self.item_id,
                voice_id=self._voice.id,
                voice_name=self._voice.name,
                voice_category="premade",  # every catalog voice is (see el.voice_object)
                model_id=self._body.model_id or el.DEFAULT_TTS_MODEL,
                text=self._body.text,
                output_format=self._fmt.name,
                content_type=self._fmt.content_type,
                settings=settings.model_dump(exclude_none=True) if settings else None,
            ),
            as_file(self._fmt, bytes(self._audio)),
        )


def _tts_headers(stream: TTSStream, fmt: AudioFormat) -> dict[str, str]:
    return {"X-Voice-Id": stream.voice.id, "X-Audio-Format": fmt.name}


async def _timed_chunks(
    rt: web.Application, stream: TTSStream, fmt: AudioFormat, text: str
) -> AsyncIterator[tuple[bytes, el.CharTiming | None]]:
    """Encoded audio per clause with its alignment; the last carries the uncovered rest."""
    builder = el.AlignmentBuilder(text)
    async for out in _encoded(rt, stream, fmt):
        if out.chunk is None:
            yield out.data, builder.rest()
            return
        c = out.chunk
        yield (
            out.data,
            builder.clause(c.text, c.text_offset, c.audio_offset, c.duration, c.alignment),
        )
    rest = builder.rest()  # no encoder tail (nothing speakable, or a raw format)
    if rest is not None:
        yield b"", rest


def _timestamps_json(data: bytes, timing: el.CharTiming | None) -> dict[str, Any]:
    alignment = timing.to_json() if timing is not None else None
    return {
        "audio_base64": base64.b64encode(data).decode("ascii"),
        "alignment": alignment,
        "normalized_alignment": alignment,  # we speak the text as written
    }


async def tts_with_timestamps(request: web.Request) -> web.StreamResponse:
    """``/with-timestamps``: all the audio in base64 plus the alignment of the whole text."""
    rt, body, fmt, stream, charge = await _start_tts(request)
    history = await _History.open(request, body, fmt, stream)
    audio = bytearray()
    timings: list[el.CharTiming] = []
    async with charge.covering(principal_of(request).workspace_id):
        async for data, timing in _timed_chunks(rt, stream, fmt, body.text):
            audio += data
            if timing is not None:
                timings.append(timing)
    history.add(audio)
    await history.record()
    result = _timestamps_json(as_file(fmt, bytes(audio)), el.merge_timings(timings))
    headers = {**_tts_headers(stream, fmt), **history.headers()}
    return web.json_response(result, headers=headers)


async def tts_stream_timestamps(request: web.Request) -> web.StreamResponse:
    """``/stream/with-timestamps``: one JSON line per clause; times from the audio's start."""
    rt, body, fmt, stream, charge = await _start_tts(request)
    history = await _History.open(request, body, fmt, stream)

    async def lines() -> AsyncIterator[bytes]:
        async for data, timing in _timed_chunks(rt, stream, fmt, body.text):
            history.add(data)
            line = json.dumps(_timestamps_json(data, timing), separators=(",", ":"))
            yield line.encode() + b"\n"

    headers = {**_tts_headers(stream, fmt), **history.headers()}
    return await stream_out(request, "application/x-ndjson", lines(), headers, charge, history)


# --- speech to text ------------------------------------------------------------------------


async def _read_form(request: web.Request, limit: int) -> tuple[dict[str, str], bytes | None]:
    """The text fields (the last value of each) and the ``file`` part of a multipart form."""
    if not request.content_type.startswith("multipart/"):
        raise ValidationFailed("speech-to-text expects multipart/form-data with a file part")
    too_large = PayloadTooLarge(f"upload exceeds {limit} bytes")
    form = await read_form(request, file_limit=limit, too_large=too_large)
    fields = {name: values[-1] for name, values in form.fields.items()}
    return fields, (form.file.data if form.file is not None else None)


async def speech_to_text(request: web.Request) -> web.StreamResponse:
    """``POST /v1/speech-to-text``: a file in, ElevenLabs' transcript (words and spacing) out."""
    rt = request.app
    fields, data = await _read_form(request, rt[SETTINGS].max_upload_bytes)
    form = el.parse_stt_form(fields, rt[REGISTRY].stt_names())
    # scribe_* → the default engine (a multilingual Whisper for a language it cannot hear);
    # an installed model's own name → that model.
    language = el.language_tag(form.language_code) if form.language_code else None
    engine = rt[REGISTRY].stt_for(form.model_id, language=language)
    if not engine.hears(language):
        raise ValidationFailed(
            f"language_code {form.language_code!r} is not supported; this server transcribes "
            f"{engine.language}",
            details={"fields": [{"field": "language_code", "message": "unsupported language"}]},
        )
    if data is None:
        if any(
            fields.get(k) not in (None, "", "null") for k in ("source_url", "cloud_storage_url")
        ):
            raise ValidationFailed("source_url and cloud_storage_url are not supported; send file")
        raise InvalidAudio('multipart body has no "file" part')
    if not data:
        raise InvalidAudio("the uploaded file is empty")
    rate = engine.sample_rate
    if fields.get("file_format") == "pcm_s16le_16":
        raw = parse_format("pcm_16000")
        pcm = await rt[MEDIA_EXECUTOR].run(lambda: decode_raw(data, raw, rate))
    else:
        limit = rt[SETTINGS].max_stream_seconds
        pcm = await rt[MEDIA_EXECUTOR].run(lambda: decode_audio(data, rate, limit))
    duration = len(pcm) / 2 / rate
    t0 = time.monotonic()
    transcript = await transcribe_pcm(rt, pcm, engine=engine, language=language)
    rt[METRICS].engine_rtf.labels(engine.name).observe(
        (time.monotonic() - t0) / max(duration, 1e-3)
    )
    rt[METRICS].audio_seconds.labels("transcribed").inc(duration)
    await rt[USAGE].record(principal_of(request), "stt_seconds", duration)
    return web.json_response(
        el.transcript_response(
            transcript.text,
            [(w.text, w.start, w.end) for w in transcript.words],
            language_code=el.language_code_3(language or engine.language),
            granularity=form.timestamps_granularity,
            duration=duration,
        )
    )


# --- voices, models, user ------------------------------------------------------------------


async def list_voices(request: web.Request) -> web.StreamResponse:
    voices = request.app[REGISTRY].voices()
    return web.json_response({"voices": [el.voice_object(v) for v in voices]})


async def get_voice(request: web.Request) -> web.StreamResponse:
    _, voice = request.app[REGISTRY].voice(request.match_info["voice_id"])
    return web.json_response(el.voice_object(voice))


async def voice_settings(request: web.Request) -> web.StreamResponse:
    voice_id = request.match_info["voice_id"]
    request.app[REGISTRY].voice(voice_id)  # 404 for an unknown voice
    return web.json_response(el.default_settings())


async def default_voice_settings(request: web.Request) -> web.StreamResponse:
    return web.json_response(el.default_settings())


def _int_query(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed(
            f"{name} must be an integer; got {raw!r}",
            details={"fields": [{"field": name, "message": "not an integer"}]},
        ) from None


async def search_voices(request: web.Request) -> web.StreamResponse:
    q = request.query
    page = el.voices_page(
        request.app[REGISTRY].voices(),
        search=q.get("search") or None,
        voice_ids=q.getall("voice_ids", []),
        category=q.get("category") or None,
        voice_type=q.get("voice_type") or None,
        sort=q.get("sort") or None,
        sort_direction=q.get("sort_direction") or None,
        page_size=_int_query(request, "page_size", 10),
        next_page_token=q.get("next_page_token") or None,
        include_total_count=q.get("include_total_count", "true").lower() != "false",
    )
    return web.json_response(page)


async def list_models(request: web.Request) -> web.StreamResponse:
    return web.json_response(el.model_list(request.app[SETTINGS].max_text_chars))


async def _characters_used(request: web.Request) -> int:
    rt = request.app
    totals = await rt[USAGE].totals(principal_of(request).workspace_id)
    return int(totals.get("tts_characters", 0))


async def get_user(request: web.Request) -> web.StreamResponse:
    principal = principal_of(request)
    return web.json_response(
        el.user(
            user_id=str(principal.workspace_id),
            name=principal.workspace_name,
            characters=await _characters_used(request),
            voices=len(request.app[REGISTRY].voices()),
        )
    )


async def get_subscription(request: web.Request) -> web.StreamResponse:
    rt = request.app
    voices = len(rt[REGISTRY].voices())
    view = await subscription_view(rt[POOL], rt[SETTINGS], principal_of(request).workspace_id)
    if view is None:  # no billing: the self-hosted figures
        return web.json_response(
            el.subscription(characters=await _characters_used(request), voices=voices)
        )
    return web.json_response(
        el.subscription(
            characters=view.credits_used,
            voices=voices,
            tier=view.tier,
            character_limit=view.credits_included,
            next_reset_unix=int(view.resets_at.timestamp()),
            status=view.status,
            currency=view.currency,
        )
    )
