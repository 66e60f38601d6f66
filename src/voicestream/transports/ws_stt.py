"""``WS /v1/stt/stream``: binary audio in; partial and final transcripts out."""

from __future__ import annotations

import logging

from aiohttp import web

from ..engines.stt_stream import STTEvent, STTStream
from ..errors import PayloadTooLarge, VoiceStreamError
from ..media.decode import RawStreamDecoder
from ..protocols import native
from ..rest.resources import METRICS, REGISTRY, SETTINGS, USAGE
from .context import principal_of
from .stt_common import TranscriptBuilder, open_stt_stream, parse_raw_format
from .ws_common import close_with_error, open_websocket, read_messages

__all__ = ["ws_stt"]

log = logging.getLogger(__name__)


async def ws_stt(request: web.Request) -> web.StreamResponse:
    rt = request.app
    fmt = parse_raw_format(request.query.get("format", "pcm_16000"))
    decoder = RawStreamDecoder(fmt, rt[REGISTRY].stt.sample_rate)
    ws = await open_websocket(request, rt[SETTINGS])
    try:
        # After the upgrade: a client told "busy" by an error event and close 1013 knows to
        # retry, where a bare HTTP 429 on the handshake reads as a failed connection.
        stream = open_stt_stream(rt, source_rate=fmt.sample_rate)
    except VoiceStreamError as err:
        rt[METRICS].errors.labels(err.code).inc()
        await close_with_error(ws, err)
        return ws
    transcript = TranscriptBuilder()
    rt[METRICS].active_streams.labels("stt_ws").inc()
    try:
        await _serve(rt, ws, stream, decoder, transcript)
    except VoiceStreamError as err:
        rt[METRICS].errors.labels(err.code).inc()
        await close_with_error(ws, err)
    except ConnectionError:
        log.debug("stt socket closed by peer")
    finally:
        rt[METRICS].active_streams.labels("stt_ws").dec()
        await stream.aclose()
        seconds = stream.audio_seconds
        if seconds:
            rt[METRICS].audio_seconds.labels("transcribed").inc(seconds)
            await rt[USAGE].record(principal_of(request), "stt_seconds", seconds)
    return ws


async def _serve(
    rt: web.Application,
    ws: web.WebSocketResponse,
    stream: STTStream,
    decoder: RawStreamDecoder,
    transcript: TranscriptBuilder,
) -> None:
    async def handle(data: str | bytes) -> bool:
        """Audio is transcribed as it comes; the one text message ("end") finishes."""
        if isinstance(data, bytes):
            pcm = decoder.decode(data)
            if stream.audio_seconds + len(pcm) / 2 / rt[REGISTRY].stt.sample_rate > (
                rt[SETTINGS].max_stream_seconds
            ):
                raise PayloadTooLarge(
                    f"stream passed {rt[SETTINGS].max_stream_seconds:.0f} s of audio"
                )
            await _send(rt, ws, await stream.feed(pcm), transcript)
            return False
        native.parse_stt_message(data)
        await _send(rt, ws, await stream.end(), transcript)
        await ws.send_str(
            native.done_event(text=transcript.text, audio_seconds=round(stream.audio_seconds, 3))
        )
        return True

    if await read_messages(ws, rt[SETTINGS].max_ws_message_bytes, handle):
        await ws.close()


async def _send(
    rt: web.Application, ws: web.WebSocketResponse, events: list[STTEvent], out: TranscriptBuilder
) -> None:
    out.add(events)
    for ev in events:
        if ev.kind == "partial":
            await ws.send_str(native.partial_event(ev.text))
        elif ev.kind == "final":
            rt[METRICS].stt_final_latency.labels("ws").observe(ev.decode_seconds)
            await ws.send_str(
                native.final_event(
                    ev.text, [(w.text, w.start, w.end) for w in ev.words], ev.start, ev.end
                )
            )
