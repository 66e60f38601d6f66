"""``POST /v1/tts``: text in, audio streamed out as it is synthesized."""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..engines.tts_stream import TTSStream
from ..errors import EmptyText, TextTooLong, VoiceStreamError
from ..identity import quotas
from ..media.formats import parse_format
from ..rest.bodies import read_model
from ..rest.resources import MEDIA_EXECUTOR, METRICS, REGISTRY, SETTINGS, TTS_EXECUTORS, USAGE
from .context import principal_of
from .tts_output import encode_stream

__all__ = ["DEFAULT_HTTP_FORMAT", "TTSRequest", "post_tts"]

log = logging.getLogger(__name__)

# ElevenLabs' default, so clients that omit the format get what they would get there.
DEFAULT_HTTP_FORMAT = "mp3_44100_128"


class TTSRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    voice: str | None = None
    format: str = Field(DEFAULT_HTTP_FORMAT)


async def post_tts(request: web.Request) -> web.StreamResponse:
    rt = request.app
    body = await read_model(request, TTSRequest)
    text = body.text
    if not text.strip():
        raise EmptyText("text is empty")
    if len(text) > rt[SETTINGS].max_text_chars:
        raise TextTooLong(
            f"text has {len(text)} characters; the limit is {rt[SETTINGS].max_text_chars}"
        )
    fmt = parse_format(body.format)
    engine, voice = rt[REGISTRY].voice(body.voice or rt[SETTINGS].default_voice)
    principal = principal_of(request)
    # Charged before any synthesis, within the workspace's quota; taken back if it fails.
    charge = await quotas.charge(rt[USAGE], rt[SETTINGS], principal, "tts_characters", len(text))
    stream = TTSStream(engine, voice, rt[TTS_EXECUTORS][engine.name])
    stream.push_text(text)
    stream.end_input()

    response: web.StreamResponse | None = None
    audio_seconds = 0.0
    client_gone = False
    rt[METRICS].active_streams.labels("tts_http").inc()
    try:
        async with charge.covering(principal.workspace_id):
            async for out in encode_stream(
                stream, fmt, rt[METRICS], transport="http", executor=rt[MEDIA_EXECUTOR]
            ):
                if out.chunk is not None:
                    audio_seconds += out.chunk.duration
                if response is None:
                    # Headers go out with the first audio, so an engine failure before any
                    # audio still becomes a proper JSON error instead of a truncated 200.
                    response = web.StreamResponse(
                        headers={
                            "Content-Type": fmt.content_type,
                            "X-Voice-Id": voice.id,
                            "X-Audio-Format": fmt.name,
                        }
                    )
                    response.enable_chunked_encoding()
                    await response.prepare(request)
                if out.data:
                    await response.write(out.data)
    except ConnectionError:
        # The client hung up mid-stream; what was synthesized is still billed.
        log.debug("tts client went away after %.2f s of audio", audio_seconds)
        client_gone = True
    except VoiceStreamError as err:
        if response is None:
            raise
        log.warning("tts stream aborted after audio started: %s", err)
        raise ConnectionResetError("synthesis failed mid-stream") from err
    finally:
        rt[METRICS].active_streams.labels("tts_http").dec()
    if client_gone:
        assert response is not None
        return response  # aiohttp finishes a response whose peer is gone quietly
    if response is None:
        # Nothing speakable (e.g. only punctuation): an empty but valid stream.
        response = web.StreamResponse(headers={"Content-Type": fmt.content_type})
        await response.prepare(request)
    await response.write_eof()
    return response
