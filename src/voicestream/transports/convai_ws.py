"""``WS /v1/convai/stream?agent_id=…``: a voice conversation over one socket.

Four tasks per socket: the reader (user audio and control messages into the session), the event
sender, the audio sender (agent frames paced at playback speed, a short lead ahead, so a
barge-in leaves the client almost nothing to play), and a pinger.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from ..errors import BadRequest, ProtocolError, VoiceStreamError
from ..media.decode import RawStreamDecoder
from ..media.encode import make_encoder
from ..media.formats import AudioFormat
from ..pipeline.session import SAMPLE_RATE, ConversationSession
from ..protocols import convai
from ..rest.resources import METRICS, SETTINGS
from .convai_common import ConversationLease, apply_turn_message, open_conversation
from .stt_common import parse_raw_format
from .ws_common import close_with_error, open_websocket, read_messages, run_socket_tasks

__all__ = ["ws_convai"]

log = logging.getLogger(__name__)

# How far ahead of playback the sender may run: enough to ride out network jitter, small enough
# that an interrupted agent goes quiet at once.
_PLAYBACK_LEAD_S = 0.1
_PING_EVERY_S = 10.0


async def ws_convai(request: web.Request) -> web.StreamResponse:
    rt = request.app
    q = request.query
    in_fmt = parse_raw_format(q.get("input_format", "pcm_16000"))
    out_fmt = parse_raw_format(q.get("output_format", "pcm_16000"))
    # Agent, key and resumable session are all checked before the upgrade: plain 4xx on error.
    lease = await open_conversation(
        request,
        agent_id=q.get("agent_id", ""),
        session_id=q.get("session_id"),
        end_user_id=q.get("end_user_id"),
        transport="websocket",
        ready=lambda: _require_upgrade(request),
    )
    try:
        ws = await open_websocket(request, rt[SETTINGS])
    except BaseException:
        await lease.close(ended=False)
        raise
    socket = _ConvaiSocket(rt, ws, lease, in_fmt, out_fmt)
    rt[METRICS].active_streams.labels("convai_ws").inc()
    try:
        await socket.run()
    finally:
        rt[METRICS].active_streams.labels("convai_ws").dec()
        await lease.close(ended=socket.ended)
    return ws


def _require_upgrade(request: web.Request) -> None:
    # A plain GET (a link preview, a prefetch) must not use up a ticket or open a conversation.
    if not web.WebSocketResponse().can_prepare(request).ok:
        raise BadRequest("this is a WebSocket endpoint: connect with an Upgrade: websocket request")


class _ConvaiSocket:
    def __init__(
        self,
        rt: web.Application,
        ws: web.WebSocketResponse,
        lease: ConversationLease,
        in_fmt: AudioFormat,
        out_fmt: AudioFormat,
    ) -> None:
        self.rt = rt
        self.ws = ws
        self.lease = lease
        self.session: ConversationSession = lease.session
        self.decoder = RawStreamDecoder(in_fmt, SAMPLE_RATE)
        self.session.set_input_rate(in_fmt.sample_rate)
        self.out_fmt = out_fmt
        self.encoder = make_encoder(out_fmt, SAMPLE_RATE)
        self.ended = False
        self._first_message = True

    async def run(self) -> None:
        await self.ws.send_str(convai.dump(self.lease.session_event()))
        if not self.lease.resumed:
            await self.session.greet()
        await run_socket_tasks(
            self.ws,
            {
                "convai-read": self._read(),
                "convai-events": self._send_events(),
                "convai-audio": self._send_audio(),
                "convai-ping": self._ping(),
            },
            self._fail,
        )

    async def _fail(self, err: VoiceStreamError) -> None:
        self.rt[METRICS].errors.labels(err.code).inc()
        await close_with_error(self.ws, err)

    async def _read(self) -> None:
        # A peer that closes without "end" leaves the session resumable: nothing to do here.
        await read_messages(self.ws, self.rt[SETTINGS].max_ws_message_bytes, self._on_message)

    async def _on_message(self, data: str | bytes) -> bool:
        """Audio into the session, or a control message; True when the client hung up."""
        if isinstance(data, bytes):
            self._first_message = False
            await self.session.push_audio(self.decoder.decode(data))
            return False
        return await self._control(convai.parse_client_message(data))

    async def _control(self, msg: convai.ClientMessage) -> bool:
        """Apply one control message; True when the client hung up."""
        first, self._first_message = self._first_message, False
        match msg:
            case convai.Config():
                if not first:
                    raise ProtocolError("config is only accepted as the first message")
                if msg.input_format:
                    in_fmt = parse_raw_format(msg.input_format)
                    self.decoder = RawStreamDecoder(in_fmt, SAMPLE_RATE)
                    self.session.set_input_rate(in_fmt.sample_rate)
                if msg.output_format:
                    self.out_fmt = parse_raw_format(msg.output_format)
                    self.encoder = make_encoder(self.out_fmt, SAMPLE_RATE)
                if msg.end_user_id:
                    self.lease.claim_end_user(msg.end_user_id)
                self.session.configure(
                    vad_threshold=msg.vad_threshold,
                    vad_min_silence_ms=msg.vad_min_silence_ms,
                    vad_min_speech_ms=msg.vad_min_speech_ms,
                    silence_timeout_s=msg.silence_timeout_s,
                )
            case _:
                if await apply_turn_message(self.session, msg):
                    self.ended = True
                    return True
        return False

    async def _send_events(self) -> None:
        while True:
            event = await self.session.next_event()
            await self.ws.send_str(convai.dump(event))
            if event["type"] == "session_end":
                self.ended = True
                return  # the session hung up (silence): a normal close follows

    async def _send_audio(self) -> None:
        playhead = 0.0  # when the client will have played everything sent so far
        while True:
            frame = await self.session.speaker.get()
            now = time.monotonic()
            playhead = max(playhead, now)
            if playhead - now > _PLAYBACK_LEAD_S:
                await asyncio.sleep(playhead - now - _PLAYBACK_LEAD_S)
            data = self.encoder.encode(frame)
            if data:
                await self.ws.send_bytes(data)
            playhead += len(frame) / 2 / SAMPLE_RATE

    async def _ping(self) -> None:
        event_id = 0
        while True:
            await asyncio.sleep(_PING_EVERY_S)
            event_id += 1
            await self.ws.send_str(convai.dump({"type": "ping", "event_id": event_id}))
