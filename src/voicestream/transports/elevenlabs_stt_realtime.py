"""``WS /elevenlabs/v1/speech-to-text/realtime``: ElevenLabs' "Scribe realtime" socket.

Audio arrives as base64 in JSON messages (``audio_format`` from the query: ``pcm_<rate>``,
resampled to the recognizer's rate, or ``ulaw_8000``) and goes into a streaming recognizer
(``stt_common.open_stt_stream``). The VAD cuts utterances either way; the commit strategy
decides what becomes a committed transcript:

* ``vad``: every utterance, as soon as the VAD hears it end.
* ``manual`` (ElevenLabs' default): everything since the previous commit, when the client
  sends ``commit: true`` (or after ``_AUTO_COMMIT_S`` of audio without one, as ElevenLabs does).
  Partials show the whole uncommitted segment so far.

A commit always gets an answer: an empty ``committed_transcript`` when there was no speech.
Errors the client can put right with its next message (bad JSON, bad base64, a wrong field)
are reported as events and the session goes on; a missing or bad key, the session length
limit and recognizer failures end it with a close code.
"""

from __future__ import annotations

import logging
import uuid

from aiohttp import web

from ..engines.stt_stream import STTEvent, STTStream
from ..errors import BadRequest, ProtocolError, ValidationFailed, VoiceStreamError
from ..media.decode import RawStreamDecoder
from ..protocols import elevenlabs_stt_realtime as srt
from ..rest.resources import METRICS, REGISTRY, SETTINGS, USAGE
from .elevenlabs_sockets import SocketAuth
from .socket_registry import use_socket_closer
from .stt_common import open_stt_stream, parse_raw_format
from .ws_common import close_with_error, open_websocket, read_messages, run_socket_tasks

__all__ = ["stt_realtime"]

log = logging.getLogger(__name__)

# ElevenLabs commits a manual segment by itself after this much audio.
_AUTO_COMMIT_S = 90.0


async def stt_realtime(request: web.Request) -> web.StreamResponse:
    rt = request.app
    # Validate before upgrading: a bad query is a plain 4xx the SDK's connect() raises.
    config = srt.parse_realtime_query(request.query.items())
    stt_language = rt[REGISTRY].stt.language
    if config.language_code is not None and not srt.language_matches(
        config.language_code, stt_language
    ):
        raise ValidationFailed(
            f"language_code {config.language_code!r} is not supported; this server transcribes "
            f"{stt_language}",
            details={"fields": [{"field": "language_code", "message": "unsupported language"}]},
        )
    auth = SocketAuth(request)
    ws = await open_websocket(request, rt[SETTINGS])
    session = _ScribeSession(rt, ws, config)
    use_socket_closer(request, session.close_with_error)  # key revoked: Scribe's error shape
    rt[METRICS].active_streams.labels("stt_elevenlabs_ws").inc()
    try:
        await session.run(auth)
    finally:
        rt[METRICS].active_streams.labels("stt_elevenlabs_ws").dec()
        await auth.release()
        await session.stream.aclose()
        seconds = session.audio_seconds
        if seconds:
            rt[METRICS].audio_seconds.labels("transcribed").inc(seconds)
            if auth.principal is not None:
                await rt[USAGE].record(auth.principal, "stt_seconds", seconds)
    return ws


class _ScribeSession:
    def __init__(
        self, rt: web.Application, ws: web.WebSocketResponse, config: srt.RealtimeConfig
    ) -> None:
        self.rt = rt
        self.ws = ws
        self.config = config
        self.fmt = parse_raw_format(config.audio_format)
        self.decoder = RawStreamDecoder(self.fmt, rt[REGISTRY].stt.sample_rate)
        self.vad = srt.vad_settings(
            config,
            threshold=rt[SETTINGS].vad_threshold,
            min_silence_ms=rt[SETTINGS].vad_min_silence_ms,
            min_speech_ms=rt[SETTINGS].vad_min_speech_ms,
        )
        self.language = rt[REGISTRY].stt.language.split("-")[0].lower()
        self.reader = srt.ChunkReader(
            sample_rate=config.sample_rate, max_previous_text_chars=rt[SETTINGS].max_text_chars
        )
        self.manual = config.commit_strategy == "manual"
        self.stream = self._new_stream()
        self.offset = 0.0  # seconds of session audio before the current segment's stream
        self.pending: list[STTEvent] = []  # manual: finals not yet committed

    @property
    def audio_seconds(self) -> float:
        return self.offset + self.stream.audio_seconds

    def _new_stream(self) -> STTStream:
        stream = open_stt_stream(self.rt, source_rate=self.fmt.sample_rate)
        stream.configure_vad(
            threshold=self.vad.threshold,
            min_silence_ms=self.vad.min_silence_ms,
            min_speech_ms=self.vad.min_speech_ms,
        )
        return stream

    async def run(self, auth: SocketAuth) -> None:
        await run_socket_tasks(
            self.ws, {"scribe-realtime-read": self._serve(auth)}, self.close_with_error
        )

    async def close_with_error(self, err: VoiceStreamError) -> None:
        self.rt[METRICS].errors.labels(err.code).inc()
        await close_with_error(self.ws, err, srt.error_message)

    async def _report(self, err: VoiceStreamError) -> None:
        """An error the session survives: the client hears why; nothing else changes."""
        self.rt[METRICS].errors.labels(err.code).inc()
        await self.ws.send_str(srt.error_message(err))

    async def _serve(self, auth: SocketAuth) -> None:
        await auth.require()
        await self.ws.send_str(
            srt.session_started(
                uuid.uuid4().hex, self.config, vad=self.vad, language_code=self.language
            )
        )
        # The client ends a session by closing the socket; until then it reads on, past errors
        # the client can put right with its next message.
        await read_messages(
            self.ws, self.rt[SETTINGS].max_ws_message_bytes, self._on_message, too_large=self._big
        )

    async def _on_message(self, data: str | bytes) -> bool:
        if isinstance(data, bytes):
            await self._report(
                ProtocolError("binary frames are not accepted; send input_audio_chunk JSON")
            )
            return False
        try:
            chunk = self.reader.parse(data)
            pcm = self.decoder.decode(chunk.audio) if chunk.audio else b""
        except (BadRequest, ProtocolError) as err:
            await self._report(err)
            return False
        await self._feed(pcm)
        if chunk.commit:
            await self._commit()
        return False

    async def _big(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self._on_message(data)  # binary is refused as such, whatever its size
            return
        limit = self.rt[SETTINGS].max_ws_message_bytes
        await self._report(
            srt.ChunkSizeExceeded(
                f"message of {len(data)} bytes exceeds the limit of {limit}; send smaller chunks"
            )
        )

    async def _feed(self, pcm: bytes) -> None:
        if not pcm:
            return
        limit = self.rt[SETTINGS].max_stream_seconds
        if self.audio_seconds + len(pcm) / 2 / self.rt[REGISTRY].stt.sample_rate > limit:
            raise srt.SessionTimeLimitExceeded(f"the session passed {limit:.0f} s of audio")
        await self._handle(await self.stream.feed(pcm))
        if self.manual and self.stream.audio_seconds >= _AUTO_COMMIT_S:
            await self._commit()

    async def _handle(self, events: list[STTEvent]) -> None:
        for ev in events:
            if ev.kind == "partial":
                await self.ws.send_str(srt.partial_transcript(self._segment_text(ev)))
            elif ev.kind == "final":
                self.rt[METRICS].stt_final_latency.labels("ws").observe(ev.decode_seconds)
                if not self.manual:
                    if ev.text:
                        await self._send_committed([ev])
                    continue
                self.pending.append(ev)
                if ev.text:
                    await self.ws.send_str(srt.partial_transcript(self._segment_text()))

    def _segment_text(self, partial: STTEvent | None = None) -> str:
        parts = [ev.text for ev in self.pending if ev.text]
        if partial is not None:
            parts.append(partial.text)
        return " ".join(parts)

    async def _commit(self) -> None:
        """End the segment: its transcript goes out, and a fresh stream takes the next audio."""
        finals = [ev for ev in await self.stream.end() if ev.kind == "final"]
        for ev in finals:
            self.rt[METRICS].stt_final_latency.labels("ws").observe(ev.decode_seconds)
        if self.manual:
            finals = [*self.pending, *finals]
            self.pending = []
        spoken = [ev for ev in finals if ev.text]
        if self.manual or not spoken:
            await self._send_committed(spoken)
        else:
            for ev in spoken:
                await self._send_committed([ev])
        self.offset += self.stream.audio_seconds
        self.stream = self._new_stream()

    async def _send_committed(self, finals: list[STTEvent]) -> None:
        text = " ".join(ev.text for ev in finals if ev.text)
        await self.ws.send_str(srt.committed_transcript(text))
        if self.config.include_timestamps:
            words = [
                (w.text, w.start + self.offset, w.end + self.offset)
                for ev in finals
                for w in ev.words
            ]
            await self.ws.send_str(
                srt.committed_transcript_with_timestamps(text, words, language_code=self.language)
            )
