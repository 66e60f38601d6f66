"""``WS /v1/tts/stream``: text pushed incrementally, audio frames and alignment back.

Two tasks per socket, under the one supervisor (``run_socket_tasks``): the reader feeds text
into the TTS stream as messages arrive; the writer sends audio as soon as each clause is
synthesized. A bad message stops both and closes the socket with an error event and a close code
that says why.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ..engines.tts_stream import SpeechChunk, TTSStream
from ..errors import ProtocolError, VoiceStreamError
from ..media.formats import AudioFormat, parse_format
from ..media.framing import frame_bytes
from ..protocols import native
from ..rest.resources import MEDIA_EXECUTOR, METRICS, REGISTRY, SETTINGS, TTS_EXECUTORS, USAGE
from .context import principal_of
from .tts_output import encode_stream
from .ws_common import close_with_error, open_websocket, read_messages, run_socket_tasks

__all__ = ["DEFAULT_WS_FORMAT", "ws_tts"]

log = logging.getLogger(__name__)

# Raw PCM: a socket client plays it without a decoder, and 20 ms frames map 1:1 onto messages.
DEFAULT_WS_FORMAT = "pcm_16000"


async def ws_tts(request: web.Request) -> web.StreamResponse:
    rt = request.app
    # Validate before upgrading, so a bad voice or format is a plain 4xx JSON response.
    fmt = parse_format(request.query.get("format", DEFAULT_WS_FORMAT))
    engine, voice = rt[REGISTRY].voice(request.query.get("voice") or rt[SETTINGS].default_voice)
    stream = TTSStream(engine, voice, rt[TTS_EXECUTORS][engine.name])
    ws = await open_websocket(request, rt[SETTINGS])
    session = _TTSSession(rt, ws, stream, fmt)
    rt[METRICS].active_streams.labels("tts_ws").inc()
    try:
        await session.run()
    finally:
        rt[METRICS].active_streams.labels("tts_ws").dec()
        if session.characters:
            await rt[USAGE].record(principal_of(request), "tts_characters", session.characters)
    return ws


class _TTSSession:
    def __init__(
        self, rt: web.Application, ws: web.WebSocketResponse, stream: TTSStream, fmt: AudioFormat
    ) -> None:
        self.rt = rt
        self.ws = ws
        self.stream = stream
        self.fmt = fmt
        self.characters = 0
        self.audio_seconds = 0.0
        self.chunks = 0

    async def run(self) -> None:
        await run_socket_tasks(
            self.ws,
            {"tts-ws-read": self._read(), "tts-ws-write": self._write()},
            self._fail,
            until="tts-ws-write",  # the reader ends at "end"; the audio is still going out
            finish=self._send_done,
        )

    async def _fail(self, err: VoiceStreamError) -> None:
        self.rt[METRICS].errors.labels(err.code).inc()
        await close_with_error(self.ws, err)

    async def _send_done(self) -> None:
        await self.ws.send_str(
            native.done_event(
                characters=self.characters,
                audio_seconds=round(self.audio_seconds, 3),
                chunks=self.chunks,
            )
        )

    async def _read(self) -> None:
        limit = self.rt[SETTINGS].max_ws_message_bytes
        if not await read_messages(self.ws, limit, self._on_message):
            # The peer closed (or the transport failed) without "end": nothing more to do.
            raise ConnectionResetError("client closed the TTS stream before end")

    async def _on_message(self, data: str | bytes) -> bool:
        """Apply one message; True at "end"."""
        if isinstance(data, bytes):
            raise ProtocolError("binary messages are not accepted on the TTS stream")
        limit = self.rt[SETTINGS].max_text_chars
        match native.parse_tts_message(data, max_text_chars=limit):
            case native.Text(text):
                self.characters += len(text)
                native.check_total_text(self.characters, limit)
                self.stream.push_text(text)
            case native.Flush():
                self.stream.flush()
            case native.End():
                native.require_text(self.characters)
                self.stream.end_input()
                return True
        return False

    async def _write(self) -> None:
        frame_len = (
            frame_bytes(self.fmt.sample_rate, 20, self.fmt.bytes_per_sample)
            if self.fmt.is_raw
            else 0
        )
        pending = bytearray()
        async for out in encode_stream(
            self.stream,
            self.fmt,
            self.rt[METRICS],
            transport="ws",
            executor=self.rt[MEDIA_EXECUTOR],
        ):
            if out.chunk is not None:
                await self._send_alignment(out.chunk)
            if frame_len:
                pending += out.data
                cut = len(pending) - len(pending) % frame_len
                for i in range(0, cut, frame_len):
                    await self.ws.send_bytes(bytes(pending[i : i + frame_len]))
                del pending[:cut]
            elif out.data:
                await self.ws.send_bytes(out.data)
        if pending:
            await self.ws.send_bytes(bytes(pending))

    async def _send_alignment(self, chunk: SpeechChunk) -> None:
        self.chunks += 1
        self.audio_seconds += chunk.duration
        a = chunk.alignment
        if a is None:
            return
        base_ms = round(chunk.audio_offset * 1000)
        await self.ws.send_str(
            native.alignment_event(
                chunk=chunk.index,
                text=chunk.text,
                offset=chunk.text_offset,
                audio_start=chunk.audio_offset,
                chars=a.chars,
                char_start_ms=[base_ms + s for s in a.char_start_ms],
                char_duration_ms=a.char_duration_ms,
            )
        )
