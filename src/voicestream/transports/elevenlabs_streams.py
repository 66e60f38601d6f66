"""ElevenLabs' streaming sockets under ``/elevenlabs``.

``stream-input`` (text in as it comes, audio out per clause) and ``multi-stream-input`` (the same
for several contexts over one socket, each context its own ``TTSStream``); the realtime STT
socket lives in ``elevenlabs_stt_realtime.py`` and is mounted here. Message shapes are in
``protocols/elevenlabs_ws.py``; keys are checked by ``elevenlabs_sockets.SocketAuth``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import web

from ..engines.base import TTSEngine, Voice
from ..engines.tts_stream import TTSStream
from ..errors import ProtocolError, TextTooLong, VoiceStreamError
from ..media.formats import AudioFormat, parse_format
from ..protocols import elevenlabs as el
from ..protocols import elevenlabs_ws as ews
from ..rest.resources import MEDIA_EXECUTOR, METRICS, REGISTRY, SETTINGS, TTS_EXECUTORS, USAGE
from .elevenlabs_rest import PREFIX
from .elevenlabs_sockets import Handler, SocketAuth, elevenlabs_errors
from .elevenlabs_stt_realtime import stt_realtime
from .socket_registry import use_socket_closer
from .tts_output import encode_stream
from .ws_common import (
    cancel_tasks,
    close_with_error,
    open_websocket,
    receive_message,
    run_socket_tasks,
)

__all__ = ["add_elevenlabs_stream_routes", "tts_multi_stream_input", "tts_stream_input"]

log = logging.getLogger(__name__)


def add_elevenlabs_stream_routes(app: web.Application) -> None:
    """Mount the ElevenLabs TTS sockets and the realtime STT socket."""
    routes: list[tuple[str, Handler]] = [
        ("/v1/text-to-speech/{voice_id}/stream-input", tts_stream_input),
        ("/v1/text-to-speech/{voice_id}/multi-stream-input", tts_multi_stream_input),
        ("/v1/speech-to-text/realtime", stt_realtime),
    ]
    for path, handler in routes:
        app.router.add_get(PREFIX + path, elevenlabs_errors(handler))


@dataclass(frozen=True, slots=True)
class _Socket:
    """What the socket's URL asked for, validated before upgrading."""

    engine: TTSEngine
    voice: Voice
    fmt: AudioFormat
    inactivity_s: int
    sync_alignment: bool  # alignment times from the stream's (context's) start, not the message's


def _open(request: web.Request) -> tuple[web.Application, _Socket]:
    """Validate before upgrading, so a bad voice, format or query is a plain 4xx response."""
    rt = request.app
    fmt = parse_format(request.query.get("output_format", el.DEFAULT_OUTPUT_FORMAT))
    engine, voice = rt[REGISTRY].voice(request.match_info["voice_id"])
    inactivity = ews.parse_stream_query(request.query)
    sync = ews.parse_sync_alignment(request.query)
    return rt, _Socket(engine, voice, fmt, inactivity, sync)


async def _receive_text(ws: web.WebSocketResponse, limit: int, within: float) -> str:
    """The next text message (``receive_message``, which bounds its size and maps a close).

    Raises:
        TimeoutError: nothing within ``within`` seconds. ConnectionResetError: the peer closed.
        ProtocolError: a binary message. PayloadTooLarge: a message over ``limit`` bytes.
    """
    data = await receive_message(ws, limit, within=within)
    if isinstance(data, bytes):
        raise ProtocolError("binary messages are not accepted; send JSON text messages")
    return data


async def _speak(
    rt: web.Application,
    ws: web.WebSocketResponse,
    stream: TTSStream,
    sock: _Socket,
    alignment: el.AlignmentBuilder,
    context_id: str | None = None,
) -> None:
    """Send a stream's audio as AudioOutput messages, each clause with its alignment."""

    def origin(message_start: float) -> float:
        return 0.0 if sock.sync_alignment else message_start

    async for out in encode_stream(
        stream, sock.fmt, rt[METRICS], transport="ws", executor=rt[MEDIA_EXECUTOR]
    ):
        c = out.chunk
        if c is None:
            rest = alignment.rest()
            if out.data or rest is not None:
                at = origin(_start_of(rest))
                await ws.send_str(
                    ews.audio_output(out.data, rest, audio_offset=at, context_id=context_id)
                )
            return
        timing = alignment.clause(c.text, c.text_offset, c.audio_offset, c.duration, c.alignment)
        message = ews.audio_output(
            out.data, timing, audio_offset=origin(c.audio_offset), context_id=context_id
        )
        await ws.send_str(message)
    rest = alignment.rest()  # no encoder tail (a raw format, or nothing speakable)
    if rest is not None:
        at = origin(_start_of(rest))
        await ws.send_str(ews.audio_output(b"", rest, audio_offset=at, context_id=context_id))


def _start_of(timing: el.CharTiming | None) -> float:
    return timing.starts[0] if timing is not None and timing.starts else 0.0


def _seal(alignment: el.AlignmentBuilder, stream: TTSStream) -> None:
    """A generation ends (flush, close): its alignment ends on a space, as ElevenLabs' does."""
    space = alignment.seal()
    if space:
        stream.push_text(space)


async def _close_with_error(
    rt: web.Application,
    ws: web.WebSocketResponse,
    err: VoiceStreamError,
    context_id: str | None = None,
) -> None:
    rt[METRICS].errors.labels(err.code).inc()
    await close_with_error(ws, err, lambda e: ews.stream_error(e, context_id))


async def _record_usage(rt: web.Application, auth: SocketAuth, characters: int) -> None:
    if characters and auth.principal is not None:
        await rt[USAGE].record(auth.principal, "tts_characters", characters)


# --- stream-input ---------------------------------------------------------------------------


async def tts_stream_input(request: web.Request) -> web.StreamResponse:
    """ElevenLabs' input-streaming TTS socket: text in as it comes, audio out per clause."""
    rt, sock = _open(request)
    auth = SocketAuth(request)
    stream = TTSStream(sock.engine, sock.voice, rt[TTS_EXECUTORS][sock.engine.name])
    ws = await open_websocket(request, rt[SETTINGS])
    use_socket_closer(request, lambda err: _close_with_error(rt, ws, err))  # key revoked
    session = _StreamInputSession(rt, ws, stream, sock, auth)
    rt[METRICS].active_streams.labels("tts_elevenlabs_ws").inc()
    try:
        await session.run()
    finally:
        rt[METRICS].active_streams.labels("tts_elevenlabs_ws").dec()
        await auth.release()
        await _record_usage(rt, auth, session.characters)
    return ws


class _StreamInputSession:
    def __init__(
        self,
        rt: web.Application,
        ws: web.WebSocketResponse,
        stream: TTSStream,
        sock: _Socket,
        auth: SocketAuth,
    ) -> None:
        self.rt = rt
        self.ws = ws
        self.stream = stream
        self.sock = sock
        self.inactivity_s = sock.inactivity_s
        self.auth = auth
        self.characters = 0
        self.alignment = el.AlignmentBuilder()

    async def run(self) -> None:
        await run_socket_tasks(
            self.ws,
            {
                "el-stream-input-read": self._read(),
                "el-stream-input-write": _speak(
                    self.rt, self.ws, self.stream, self.sock, self.alignment
                ),
            },
            lambda err: _close_with_error(self.rt, self.ws, err),
            until="el-stream-input-write",
            # The SDK reads until the socket closes: the normal close follows isFinal at once.
            finish=self._send_final,
        )

    async def _send_final(self) -> None:
        await self.ws.send_str(ews.final_output())

    def _push(self, text: str) -> None:
        if not text:
            return
        self.characters += len(text)
        if self.characters > self.rt[SETTINGS].max_text_chars:
            raise TextTooLong(
                f"the stream's text reached {self.characters} characters; "
                f"limit {self.rt[SETTINGS].max_text_chars}"
            )
        self.alignment.extend(text)
        self.stream.push_text(text)

    async def _read(self) -> None:
        settings = self.rt[SETTINGS]
        # A bad key in the query is refused at once; a missing one may still come in the first
        # message.
        await self.auth.connection()
        first = True
        while True:
            try:
                raw = await _receive_text(self.ws, settings.max_ws_message_bytes, self.inactivity_s)
            except TimeoutError:
                raise ews.InputTimeout(
                    f"no input for {self.inactivity_s} s (inactivity_timeout); closing"
                ) from None
            match ews.parse_stream_input(raw, first=first, max_text_chars=settings.max_text_chars):
                case ews.StreamInit(text, api_key, speed):
                    await self.auth.require(api_key)
                    if speed is not None:
                        self.stream.set_speed(speed)
                    self._push(text)
                case ews.StreamText(text, flush, speed):
                    if speed is not None:
                        self.stream.set_speed(speed)
                    self._push(text)
                    if flush:
                        _seal(self.alignment, self.stream)
                        self.stream.flush()
                case ews.StreamClose():
                    _seal(self.alignment, self.stream)
                    self.stream.end_input()
                    return
            first = False


# --- multi-stream-input ---------------------------------------------------------------------


async def tts_multi_stream_input(request: web.Request) -> web.StreamResponse:
    """ElevenLabs' multi-context TTS socket: several independent streams over one socket."""
    rt, sock = _open(request)
    auth = SocketAuth(request)
    ws = await open_websocket(request, rt[SETTINGS])
    use_socket_closer(request, lambda err: _close_with_error(rt, ws, err))  # key revoked
    session = _MultiStreamSession(rt, ws, sock, auth)
    rt[METRICS].active_streams.labels("tts_elevenlabs_multi_ws").inc()
    try:
        await session.run()
    finally:
        rt[METRICS].active_streams.labels("tts_elevenlabs_multi_ws").dec()
        await auth.release()
        await _record_usage(rt, auth, session.characters)
    return ws


class _Context:
    """One context: its stream, the text it was sent, and when it last heard from the client."""

    def __init__(self, context_id: str, stream: TTSStream) -> None:
        self.id = context_id
        self.stream = stream
        self.alignment = el.AlignmentBuilder()
        self.characters = 0
        self.last_input = time.monotonic()


class _ContextFailed(Exception):
    """A context's speaker failed; carries the error and the context, for the client."""

    def __init__(self, err: VoiceStreamError, context_id: str) -> None:
        super().__init__(err.message)
        self.err = err
        self.context_id = context_id


class _MultiStreamSession:
    """Reads messages and routes them to contexts; each context speaks in its own task.

    A context stays counted against ``MAX_CONTEXTS`` until its last audio and ``isFinal`` are
    out, so closed contexts still speaking cannot pile up. A context id reused after a close
    opens a new context whose audio follows the old one's, so the client never sees two
    streams interleaved under one id.
    """

    def __init__(
        self,
        rt: web.Application,
        ws: web.WebSocketResponse,
        sock: _Socket,
        auth: SocketAuth,
    ) -> None:
        self.rt = rt
        self.ws = ws
        self.sock = sock
        self.inactivity_s = sock.inactivity_s
        self.auth = auth
        self.characters = 0
        self.open: dict[str, _Context] = {}  # contexts still taking text
        self.speakers: dict[str, asyncio.Task[None]] = {}  # latest speaker per id
        self.live: set[asyncio.Task[None]] = set()  # every speaker not yet done
        self.last_activity = time.monotonic()
        self.failure: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.failed_context: str | None = None  # the context whose failure ended the socket

    async def run(self) -> None:
        try:
            await run_socket_tasks(
                self.ws,
                {
                    "el-multi-read": self._read_then_drain(),
                    "el-multi-speakers": self._speaker_failure(),
                },
                lambda err: _close_with_error(self.rt, self.ws, err, self.failed_context),
                until="el-multi-read",
            )
        finally:
            # Speakers are the session's own tasks, outside the supervisor's two.
            await cancel_tasks(list(self.live))
            if self.failure.done() and not self.failure.cancelled():
                self.failure.exception()  # seen: a second failure during shutdown is moot
            else:
                self.failure.cancel()

    async def _read_then_drain(self) -> None:
        await self.auth.connection()
        await self._read()
        # close_socket: every context ends; the socket closes once all audio is out.
        for ctx in list(self.open.values()):
            self._end(ctx)
        while self.live:
            await asyncio.wait(set(self.live))

    async def _speaker_failure(self) -> None:
        """Ends (raising it) when a context's speaker fails; the socket ends with it."""
        try:
            # Shielded: the supervisor cancels this watcher, which must not cancel the future
            # a speaker may still report to.
            await asyncio.shield(self.failure)
        except _ContextFailed as failed:
            self.failed_context = failed.context_id
            raise failed.err from None

    async def _read(self) -> None:
        limit = self.rt[SETTINGS].max_text_chars
        while True:
            raw = await self._receive()
            self.last_activity = time.monotonic()
            message = ews.parse_multi_input(raw, max_text_chars=limit)
            if self.auth.principal is None:
                key = message.api_key if isinstance(message, ews.ContextText) else None
                await self.auth.require(key)
            match message:
                case ews.ContextText(context_id, text, flush, _, speed):
                    ctx = self.open.get(context_id) or self._start(context_id)
                    ctx.last_input = self.last_activity
                    if speed is not None:
                        ctx.stream.set_speed(speed)
                    self._push(ctx, text)
                    if flush:
                        _seal(ctx.alignment, ctx.stream)
                        ctx.stream.flush()
                case ews.KeepAlive(context_id):
                    if context_id is not None and context_id in self.open:
                        self.open[context_id].last_input = self.last_activity
                case ews.CloseContext(context_id):
                    # Closing a context that already ended (or timed out) changes nothing.
                    if context_id in self.open:
                        self._end(self.open[context_id])
                case ews.CloseSocket():
                    return

    async def _receive(self) -> str:
        """The next message; contexts idle for ``inactivity_timeout`` end on the way.

        The socket itself times out only when no context is open or speaking.
        """
        while True:
            deadline = min(
                [c.last_input for c in self.open.values()] + [self.last_activity]
            ) + float(self.inactivity_s)
            try:
                return await _receive_text(
                    self.ws,
                    self.rt[SETTINGS].max_ws_message_bytes,
                    max(0.05, deadline - time.monotonic()),
                )
            except TimeoutError:
                now = time.monotonic()
                for ctx in list(self.open.values()):
                    if now - ctx.last_input >= self.inactivity_s:
                        self._end(ctx)
                if self.open or self.live:
                    if now - self.last_activity >= self.inactivity_s:
                        self.last_activity = now  # audio still going out: the socket is busy
                    continue
                if now - self.last_activity >= self.inactivity_s:
                    raise ews.InputTimeout(
                        f"no input for {self.inactivity_s} s (inactivity_timeout); closing"
                    ) from None

    def _start(self, context_id: str) -> _Context:
        if len(self.live) >= ews.MAX_CONTEXTS:
            raise ews.TooManyContexts(
                f"at most {ews.MAX_CONTEXTS} contexts may be open or speaking at once; "
                "close one (close_context) before opening another"
            )
        engine = self.sock.engine
        stream = TTSStream(engine, self.sock.voice, self.rt[TTS_EXECUTORS][engine.name])
        ctx = _Context(context_id, stream)
        previous = self.speakers.get(context_id)
        task = asyncio.create_task(
            self._speak_context(ctx, previous), name=f"el-multi-{context_id}"
        )
        self.open[context_id] = ctx
        self.speakers[context_id] = task
        self.live.add(task)
        task.add_done_callback(lambda t: self._forget(context_id, t))
        return ctx

    def _forget(self, context_id: str, task: asyncio.Task[None]) -> None:
        self.live.discard(task)
        if self.speakers.get(context_id) is task:
            del self.speakers[context_id]

    def _end(self, ctx: _Context) -> None:
        """No more text for the context: what it has is spoken, then its isFinal goes out."""
        _seal(ctx.alignment, ctx.stream)
        ctx.stream.end_input()
        del self.open[ctx.id]

    def _push(self, ctx: _Context, text: str) -> None:
        if not text:
            return
        ctx.characters += len(text)
        self.characters += len(text)
        if ctx.characters > self.rt[SETTINGS].max_text_chars:
            raise TextTooLong(
                f"context {ctx.id!r} reached {ctx.characters} characters; "
                f"limit {self.rt[SETTINGS].max_text_chars}"
            )
        ctx.alignment.extend(text)
        ctx.stream.push_text(text)

    async def _speak_context(self, ctx: _Context, previous: asyncio.Task[None] | None) -> None:
        try:
            if previous is not None:
                await asyncio.wait({previous})
            await _speak(self.rt, self.ws, ctx.stream, self.sock, ctx.alignment, ctx.id)
            await self.ws.send_str(ews.final_output(ctx.id))
        except VoiceStreamError as err:
            self._fail(_ContextFailed(err, ctx.id))
        except Exception as exc:  # the supervisor reports it: a vanished peer, or a bug
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if not self.failure.done():
            self.failure.set_exception(exc)
