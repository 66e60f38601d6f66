"""Wyoming (Home Assistant's voice protocol) on an optional TCP port.

With ``VOICESTREAM_WYOMING_PORT`` set, the server also listens on plain TCP for Wyoming clients
such as Home Assistant's Wyoming integration: ``describe`` → ``info``; ``synthesize`` (or the
streaming ``synthesize-start``/``-chunk``/``-stop``) → audio at the voice's own rate, 16-bit
mono; ``transcribe`` + ``audio-start``/``-chunk``/``-stop`` → ``transcript`` (with the streaming
``transcript-start``/``-chunk``/``-stop`` around it).

Wyoming has no authentication, by design: the listener binds ``VOICESTREAM_WYOMING_HOST``
(127.0.0.1 unless set), and exposing it to a network is the operator's decision. Usage is
recorded under a fixed ``wyoming`` workspace, since there is no key to attribute it to.

Errors follow one rule, because Wyoming has no request ids and Home Assistant ignores ``error``
events while it waits for audio or a transcript:

- an event type we do not serve gets an ``error`` event and the connection stays usable;
- anything else that goes wrong (broken framing, a bad field, an unknown voice, unusable audio,
  an engine failure) gets an ``error`` event and then the connection is closed, so a waiting
  client learns at once that its request failed (rhasspy's own servers do the same).

Bounds, as on the WebSockets: at most ``VOICESTREAM_WYOMING_MAX_CONNECTIONS`` connections (one
more gets ``rate_limited`` and is closed unread); a connection that sends no whole event for
``VOICESTREAM_WYOMING_IDLE_TIMEOUT_SECONDS`` gets ``request_timeout``; a send the client does
not take within ``VOICESTREAM_WS_SEND_TIMEOUT_SECONDS`` (it stopped reading) ends the
connection with ``client_too_slow``, and the error event then gets only a short grace before
the connection is cut. What a connection buffers is bounded by the codec's limits on a header,
its data and its payload, and by the STT cap (``rate_limited`` past it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

import numpy as np
from aiohttp import web

from ..engines.base import STTEngine, TTSEngine, Voice
from ..engines.stt_stream import STTEvent, STTStream
from ..engines.tts_stream import TEXT_SCREEN, TTSStream
from ..errors import (
    Busy,
    ClientTooSlow,
    EmptyText,
    InvalidAudio,
    PayloadTooLarge,
    ProtocolError,
    TextTooLong,
    UnsupportedFormat,
    ValidationFailed,
    VoiceStreamError,
)
from ..media.formats import PCM_RATES, parse_format
from ..media.resample import Resampler
from ..protocols import wyoming as wy
from ..rest.moderation import MODERATOR
from ..rest.resources import MEDIA_EXECUTOR, METRICS, POOL, REGISTRY, SETTINGS, TTS_EXECUTORS, USAGE
from ..store.workspaces import ensure_workspace
from .stream_admission import stream_slot
from .stt_common import TranscriptBuilder, open_stt_stream
from .tts_output import encode_stream
from .wyoming_offer import ASR_PROGRAM, TTS_PROGRAM, build_info, choose_stt, resolve_voice

__all__ = ["WYOMING", "WyomingListener", "wyoming_server"]

log = logging.getLogger(__name__)

USAGE_WORKSPACE = "wyoming"
_READ_BYTES = 64 * 1024
# How long the last words (an error event) to a client that stopped reading, or that is
# refused, may wait before its connection is cut.
_LAST_WORDS_S = 1.0
# Audio goes out in chunks of 1024 samples, as Wyoming's own TTS servers send it.
_SAMPLES_PER_CHUNK = 1024


@dataclass(frozen=True, slots=True)
class WyomingListener:
    """Where the Wyoming listener is bound (the real port when 0 was asked for)."""

    host: str
    port: int


WYOMING: web.AppKey[WyomingListener] = web.AppKey("voicestream_wyoming", WyomingListener)


async def wyoming_server(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: serve Wyoming while the app runs, when a port is configured."""
    rt = app
    settings = rt[SETTINGS]
    if settings.wyoming_port is None:
        yield
        return
    async with rt[POOL].acquire() as conn:
        workspace_id = await ensure_workspace(conn, USAGE_WORKSPACE)
    info = build_info(rt)
    connections: set[asyncio.Task[None]] = set()
    open_connections = rt[METRICS].active_streams.labels("wyoming_connection")

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            if len(connections) >= settings.wyoming_max_connections:
                await _refuse(rt, reader, writer)
                return
            connections.add(task)
            open_connections.inc()
            try:
                # A connection is one stream of the Wyoming workspace's cap (all processes).
                slot = contextlib.AsyncExitStack()
                try:
                    await slot.enter_async_context(stream_slot(app, workspace_id))
                except Busy as err:
                    await _refuse(rt, reader, writer, err)
                    return
                # What it speaks meets the Wyoming workspace's content policy (this task's).
                TEXT_SCREEN.set(rt[MODERATOR].screen_for(workspace_id))
                async with slot:
                    await _Connection(rt, reader, writer, info, workspace_id).run()
            finally:
                connections.discard(task)
                open_connections.dec()
        except asyncio.CancelledError:
            # Shutdown cancels connections. The task must still end normally: the stream
            # server's done-callback (Python 3.11) calls task.exception(), which raises on a
            # cancelled task and gets logged as an unhandled error.
            pass

    server = await asyncio.start_server(
        on_connect, settings.wyoming_host, settings.wyoming_port, limit=_READ_BYTES
    )
    bound = [sock.getsockname() for sock in server.sockets]
    host, port = bound[0][0], bound[0][1]
    app[WYOMING] = WyomingListener(host, port)
    log.info(
        "Wyoming (Home Assistant) listening on %s (no authentication: expose it only to "
        "trusted networks)",
        ", ".join(f"tcp://{a[0]}:{a[1]}" for a in bound),
    )
    try:
        yield
    finally:
        server.close()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()


async def _refuse(
    rt: web.Application,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    err: Busy | None = None,
) -> None:
    """Past a cap (this server's connections, or ``err``'s): the error event, then close,
    without handling the request."""
    limit = rt[SETTINGS].wyoming_max_connections
    err = err or Busy(
        f"all {limit} Wyoming connections are in use; try again shortly",
        details={"max_connections": limit},
    )
    rt[METRICS].errors.labels(err.code).inc()
    log.info("wyoming connection refused: %s", err.message)
    try:
        async with asyncio.timeout(_LAST_WORDS_S):
            writer.write(wy.encode(wy.error(err.message, err.code)))
            writer.write_eof()
            # Closing with the client's request unread would reset the connection, and the
            # reset can destroy the error event before the client reads it: take (and drop)
            # what it sends until it closes its side, for as long as the grace lasts.
            while await reader.read(_READ_BYTES):
                pass
            writer.close()
            await writer.wait_closed()
    except OSError:  # TimeoutError included: the grace is over
        log.debug("refused wyoming client did not take its error event in time")
        writer.transport.abort()


def _split(pcm: bytes) -> list[bytes]:
    step = _SAMPLES_PER_CHUNK * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


class _Connection:
    """One client connection: events are handled in order; streaming TTS output runs beside."""

    def __init__(
        self,
        rt: web.Application,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        info: wy.Event,
        workspace_id: UUID,
    ) -> None:
        self.rt = rt
        self.reader = reader
        self.writer = writer
        self.info = info
        self.workspace_id = workspace_id
        self.closed = False
        self._send_timeout = rt[SETTINGS].ws_send_timeout_seconds
        self._stalled = False  # a send timed out: the client stopped reading
        self._write_lock = asyncio.Lock()
        self._tts: _StreamingSynthesis | None = None
        self._stt: _Transcription | None = None
        # The engine the last ``transcribe`` chose, for the next audio stream only (as
        # wyoming-faster-whisper does); None: the default.
        self._stt_engine: STTEngine | None = None

    async def run(self) -> None:
        parser = wy.FrameParser()
        idle_s = self.rt[SETTINGS].wyoming_idle_timeout_seconds
        loop = asyncio.get_running_loop()
        # The idle clock runs from the last event we finished with, not from the last bytes:
        # a client that trickles a header byte by byte is as idle as a silent one.
        quiet_since = loop.time()
        try:
            while not self.closed:
                try:
                    async with asyncio.timeout_at(quiet_since + idle_s):
                        data = await self.reader.read(_READ_BYTES)
                except TimeoutError:
                    raise wy.IdleTimeout(
                        f"no complete event for {idle_s:g} s; closing the connection"
                    ) from None
                if data:
                    parser.receive_data(data)
                else:
                    parser.receive_eof()
                while not self.closed and (event := parser.next_event()) is not None:
                    await self._handle(event)
                    quiet_since = loop.time()
                if not data:
                    return
        except VoiceStreamError as err:  # broken framing or idle: nothing more will be read
            await self.fail(err)
        except ConnectionError:
            log.debug("wyoming client went away")
        finally:
            await self._end_streams()
            await self._shut()

    async def _shut(self) -> None:
        """Close; a client that does not take what is still queued is cut off after a grace."""
        self.writer.close()
        try:
            async with asyncio.timeout(_LAST_WORDS_S if self._stalled else self._send_timeout):
                await self.writer.wait_closed()
        except TimeoutError:
            self.writer.transport.abort()
        except OSError:
            log.debug("wyoming connection ended with an error", exc_info=True)

    async def send(self, *events: wy.Event) -> None:
        if self.closed:
            raise ConnectionResetError("the wyoming connection is closed")
        await self._write(events)

    async def _write(self, events: tuple[wy.Event, ...]) -> None:
        """Send ``events`` whole, or raise ``ClientTooSlow`` when the client does not take them
        within the send timeout (its window stayed full: it stopped reading)."""
        if self._stalled:
            raise ConnectionResetError("the wyoming client stopped reading")
        data = b"".join(wy.encode(e) for e in events)
        deadline = asyncio.timeout(self._send_timeout)
        try:
            async with deadline:
                # One write per call keeps events whole; the lock keeps drains in order.
                async with self._write_lock:
                    self.writer.write(data)
                    await self.writer.drain()
        except TimeoutError:
            if not deadline.expired():
                raise
            self._stalled = True
            raise ClientTooSlow(
                f"the client read nothing for {self._send_timeout:g} s: it cannot keep up"
            ) from None

    async def fail(self, err: VoiceStreamError) -> None:
        """Tell the client what went wrong, then close (see the module docstring)."""
        if self.closed:
            return
        self.closed = True
        self.rt[METRICS].errors.labels(err.code).inc()
        log.info("wyoming request failed: %s: %s", err.code, err.message)
        try:
            await self._write((wy.error(err.message, err.code),))
        except ClientTooSlow:
            pass
        except ConnectionError:
            if self._stalled and not self.writer.is_closing():
                # Queued behind what the client never read: it gets the reason should it read
                # again within the grace.
                self.writer.write(wy.encode(wy.error(err.message, err.code)))
            else:
                log.debug("wyoming client gone before the error event could be sent")
        if self._stalled:
            # A closing transport waits for its buffer to drain, as long as the client keeps
            # the connection open; the reader stays parked until then, so cut it here.
            asyncio.get_running_loop().call_later(_LAST_WORDS_S, self.writer.transport.abort)
        self.writer.close()

    async def _handle(self, event: wy.Event) -> None:
        try:
            request = wy.parse_request(event)
            if isinstance(request, wy.Unsupported):
                # Nothing waits on an event we do not serve: say so and carry on.
                err = ProtocolError(f"event type {request.type!r} is not supported here")
                self.rt[METRICS].errors.labels(err.code).inc()
                await self.send(wy.error(err.message, err.code))
                return
            await self._dispatch(request)
        except VoiceStreamError as err:
            await self.fail(err)

    async def _dispatch(self, request: wy.Request) -> None:
        match request:
            case wy.Describe():
                await self.send(self.info)
            case wy.Ping(text):
                await self.send(wy.pong(text))
            case wy.SelectProgram(name):
                if name not in (TTS_PROGRAM, ASR_PROGRAM):
                    raise ValidationFailed(
                        f"unknown program {name!r}; there are {TTS_PROGRAM!r} and {ASR_PROGRAM!r}"
                    )
            case (
                wy.Synthesize() | wy.SynthesizeStart() | wy.SynthesizeChunk() | wy.SynthesizeStop()
            ):
                await self._dispatch_tts(request)
            case _:
                await self._dispatch_asr(request)

    async def _dispatch_tts(self, request: wy.Request) -> None:
        match request:
            case wy.Synthesize(text, voice):
                if self._tts is None:  # inside a stream it only repeats the chunks' text
                    await self._synthesize(text, voice)
            case wy.SynthesizeStart(voice):
                if self._tts is not None:
                    raise ProtocolError("synthesize-start while a synthesis stream is open")
                engine, v = resolve_voice(self.rt, voice)
                self._tts = _StreamingSynthesis(self, engine, v)
            case wy.SynthesizeChunk(text):
                if self._tts is None:
                    raise ProtocolError("synthesize-chunk without synthesize-start")
                self._tts.push(text)
            case wy.SynthesizeStop():
                if self._tts is None:
                    raise ProtocolError("synthesize-stop without synthesize-start")
                tts, self._tts = self._tts, None
                await tts.finish()
            case _:  # pragma: no cover - _dispatch sends only the types matched above
                raise AssertionError(request)

    async def _dispatch_asr(self, request: wy.Request) -> None:
        match request:
            case wy.Transcribe(name, language):
                self._stt_engine = choose_stt(self.rt, name, language)
            case wy.AudioStart():
                if self._stt is not None:
                    raise ProtocolError("audio-start while audio is already streaming")
                engine, self._stt_engine = self._stt_engine or self.rt[REGISTRY].stt, None
                self._stt = _Transcription(self, request, engine)
            case wy.AudioChunk():
                if self._stt is None:
                    raise ProtocolError("audio-chunk without audio-start")
                await self._stt.feed(request)
            case wy.AudioStop():
                if self._stt is None:
                    raise ProtocolError("audio-stop without audio-start")
                stt, self._stt = self._stt, None
                await stt.finish()
            case _:  # pragma: no cover - parse_request returns only the types matched above
                raise AssertionError(request)

    async def _synthesize(self, text: str, voice_req: wy.VoiceRequest | None) -> None:
        limit = self.rt[SETTINGS].max_text_chars
        if len(text) > limit:
            raise TextTooLong(f"text of {len(text)} characters exceeds the limit of {limit}")
        if not text.strip():
            raise EmptyText("synthesize needs some text")
        engine, voice = resolve_voice(self.rt, voice_req)
        stream = TTSStream(engine, voice, self.rt[TTS_EXECUTORS][engine.name])
        stream.push_text(text)
        stream.end_input()
        self.rt[METRICS].active_streams.labels("wyoming_tts").inc()
        try:
            rate = await _send_speech(self, stream, voice, per_clause=False)
            if rate is None:  # nothing speakable: still a complete (empty) reply
                await self.send(wy.audio_start(voice.sample_rate), wy.audio_stop())
        finally:
            self.rt[METRICS].active_streams.labels("wyoming_tts").dec()
            await self.record("tts_characters", len(text))

    async def record(self, kind: str, quantity: float) -> None:
        if quantity:
            await self.rt[USAGE].record(self.workspace_id, kind, quantity)

    async def _end_streams(self) -> None:
        tts, self._tts = self._tts, None
        if tts is not None:
            await tts.abandon()
        stt, self._stt = self._stt, None
        if stt is not None:
            await stt.abandon()


async def _send_speech(
    conn: _Connection, stream: TTSStream, voice: Voice, *, per_clause: bool
) -> int | None:
    """Send the stream's audio: one audio-start/stop group, or one per clause (streaming).

    Returns the rate of the audio sent, None if there was none.
    """
    # Raw PCM at the voice's own rate, so nothing is resampled on the way.
    rate = voice.sample_rate if voice.sample_rate in PCM_RATES else 16000
    fmt = parse_format(f"pcm_{rate}")
    started = False
    async for out in encode_stream(
        stream, fmt, conn.rt[METRICS], transport="wyoming", executor=conn.rt[MEDIA_EXECUTOR]
    ):
        if not out.data:
            continue
        events = [wy.audio_chunk(piece, rate) for piece in _split(out.data)]
        if not started or per_clause:
            events.insert(0, wy.audio_start(rate))
            started = True
        if per_clause:
            events.append(wy.audio_stop())
        await conn.send(*events)
    if started and not per_clause:
        await conn.send(wy.audio_stop())
    return rate if started else None


class _StreamingSynthesis:
    """``synthesize-start`` … ``synthesize-stop``: text in as it comes, audio out per clause."""

    def __init__(self, conn: _Connection, engine: TTSEngine, voice: Voice) -> None:
        self.conn = conn
        self.voice = voice
        self.characters = 0
        self.stream = TTSStream(engine, voice, conn.rt[TTS_EXECUTORS][engine.name])
        self._closed = False
        conn.rt[METRICS].active_streams.labels("wyoming_tts").inc()
        self.task = asyncio.create_task(self._output(), name="wyoming-tts-out")

    def push(self, text: str) -> None:
        limit = self.conn.rt[SETTINGS].max_text_chars
        self.characters += len(text)
        if self.characters > limit:
            raise TextTooLong(f"the stream passed the limit of {limit} characters")
        self.stream.push_text(text)

    async def _output(self) -> None:
        try:
            await _send_speech(self.conn, self.stream, self.voice, per_clause=True)
        except VoiceStreamError as err:
            await self.conn.fail(err)
        except ConnectionError:
            log.debug("wyoming client went away during synthesis")

    async def finish(self) -> None:
        self.stream.end_input()
        try:
            await self.task
        finally:
            await self._close()
        if not self.conn.closed:
            await self.conn.send(wy.synthesize_stopped())

    async def abandon(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self._close()

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.conn.rt[METRICS].active_streams.labels("wyoming_tts").dec()
        await self.conn.record("tts_characters", self.characters)


class _Transcription:
    """``audio-start`` … ``audio-stop``: any rate, 16-bit, mono or stereo → 16 kHz mono STT."""

    def __init__(self, conn: _Connection, start: wy.AudioStart, engine: STTEngine) -> None:
        if start.width != 2:
            raise UnsupportedFormat(
                f"audio of width {start.width} is not supported; send 16-bit PCM (width 2)"
            )
        if start.channels not in (1, 2):
            raise UnsupportedFormat(
                f"audio with {start.channels} channels is not supported; send mono or stereo"
            )
        self.conn = conn
        self.format = (start.rate, start.width, start.channels)
        rt = conn.rt
        self.rate = engine.sample_rate
        self.resampler = Resampler(start.rate, self.rate)
        self.stream: STTStream = open_stt_stream(rt, source_rate=start.rate, engine=engine)
        self.transcript = TranscriptBuilder()
        self.streaming = False  # transcript-start sent
        self._closed = False
        rt[METRICS].active_streams.labels("wyoming_stt").inc()

    async def feed(self, chunk: wy.AudioChunk) -> None:
        rate, width, channels = self.format
        if (chunk.rate, chunk.width, chunk.channels) != self.format:
            raise UnsupportedFormat(
                f"audio-chunk is {chunk.rate} Hz, width {chunk.width}, {chunk.channels} "
                f"channel(s), but audio-start said {rate} Hz, width {width}, {channels}"
            )
        if len(chunk.audio) % (width * channels):
            raise InvalidAudio(
                f"audio-chunk of {len(chunk.audio)} bytes is not whole {width * channels}-byte "
                "frames"
            )
        pcm = self.resampler.process(_to_mono(chunk.audio, channels))
        rt = self.conn.rt
        if self.stream.audio_seconds + len(pcm) / 2 / self.rate > rt[SETTINGS].max_stream_seconds:
            raise PayloadTooLarge(f"audio passed {rt[SETTINGS].max_stream_seconds:.0f} s")
        await self._send_chunks(await self.stream.feed(pcm))

    async def finish(self) -> None:
        try:
            events = await self.stream.feed(self.resampler.flush())
            events += await self.stream.end()
            await self._send_chunks(events)
            start = [] if self.streaming else [wy.transcript_start()]
            await self.conn.send(*start, wy.transcript(self.transcript.text), wy.transcript_stop())
        finally:
            await self.abandon()

    async def abandon(self) -> None:
        """Release the decoder (a no-op after ``end``) and account for the audio, once."""
        if self._closed:
            return
        self._closed = True
        await self.stream.aclose()
        rt = self.conn.rt
        seconds = self.stream.audio_seconds
        try:
            if seconds:
                rt[METRICS].audio_seconds.labels("transcribed").inc(seconds)
                await self.conn.record("stt_seconds", seconds)
        finally:
            # Last: once the gauge says the stream is gone, its usage is on record.
            rt[METRICS].active_streams.labels("wyoming_stt").dec()

    async def _send_chunks(self, events: list[STTEvent]) -> None:
        before = len(self.transcript.texts)
        self.transcript.add(events)
        for ev in events:
            if ev.kind == "final":
                self.conn.rt[METRICS].stt_final_latency.labels("wyoming").observe(ev.decode_seconds)
        new = self.transcript.texts[before:]
        if not new:
            return
        out: list[wy.Event] = []
        if not self.streaming:
            out.append(wy.transcript_start())
            self.streaming = True
        # Chunks concatenate into the transcript, so every one after the first leads with a
        # space.
        out += [wy.transcript_chunk(t if i + before == 0 else " " + t) for i, t in enumerate(new)]
        await self.conn.send(*out)


def _to_mono(pcm: bytes, channels: int) -> bytes:
    if channels == 1:
        return pcm
    frames = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)
    mono: bytes = frames.mean(axis=1).round().astype("<i2").tobytes()
    return mono
