"""One WebRTC peer connection bound to one conversation.

Media: the user's track is decoded by aiortc, converted to 16 kHz mono and pushed into the
session; the agent's voice is an ``AgentAudioTrack`` pulled by aiortc's sender. Events and
control messages travel on a data channel, as JSON in the same protocol as the WebSocket
(``protocols.convai``). The first channel the client opens carries them; if the offer
negotiated SCTP but the client opened none, the server opens ``events`` itself.

Lifetime: the peer closes its conversation lease when the connection closes or fails. A client
that says ``{"type": "end"}``, or closes the connection cleanly (DTLS close), has hung up, and
the conversation ends; a connection lost to ICE failure, a connect deadline or a server
shutdown leaves the conversation resumable with ``session_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import av
from aiohttp import web
from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..errors import PayloadTooLarge, ProtocolError, VoiceStreamError
from ..pipeline import events
from ..pipeline.session import SAMPLE_RATE, ConversationSession
from ..protocols import convai
from ..rest.resources import METRICS, SETTINGS
from .convai_common import ConversationLease, apply_turn_message
from .webrtc_media import AgentAudioTrack, UserAudioConverter

__all__ = ["WebRTCPeer"]

log = logging.getLogger(__name__)

# ICE + DTLS on a LAN take well under a second; a client that has not connected by then has gone.
CONNECT_DEADLINE_S = 30.0
# A client that opened SCTP gets this long to open its own channel before the server opens one.
_SERVER_CHANNEL_AFTER_S = 2.0
# A data channel peer that stops reading: past this much unsent JSON it is cut off.
_MAX_BUFFERED_BYTES = 1 << 20
_MAX_PENDING_MESSAGES = 64
_EVENTS_LABEL = "events"


class WebRTCPeer:
    def __init__(
        self,
        rt: web.Application,
        pc_id: str,
        pc: RTCPeerConnection,
        lease: ConversationLease,
        *,
        on_closed: Callable[[WebRTCPeer], None],
    ) -> None:
        self.rt = rt
        self.pc_id = pc_id
        self.pc = pc
        self.lease = lease
        self.session: ConversationSession = lease.session
        self.agent_track = AgentAudioTrack(self.session.speaker)
        self.ended = False  # the client hung up on purpose
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self._on_closed = on_closed
        self._channel: RTCDataChannel | None = None
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue(_MAX_PENDING_MESSAGES)
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None
        self._started = False
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)

    # ---- wiring, before the answer ---------------------------------------------------------

    def attach_media(self) -> None:
        """Send the agent's voice on the offer's audio m-line, if it has one."""
        if any(t.kind == "audio" for t in self.pc.getTransceivers()):
            self.pc.addTrack(self.agent_track)

    def start(self) -> None:
        """The answer is out: bound the wait for the client to connect, and the call's length."""
        self._spawn(self._watchdog(), "webrtc-watchdog")

    @property
    def closed(self) -> bool:
        return self._closing is not None

    # ---- aiortc callbacks (plain functions: they must never raise into aiortc) ---------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._pump_user_audio(track), "webrtc-user-audio")
        else:
            log.debug("peer %s: ignoring a %s track", self.pc_id, track.kind)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self._channel is not None:
            # Only one channel speaks the protocol; a second one is told so.
            with contextlib.suppress(Exception):  # the channel may already be gone
                channel.send(convai.dump(events.error("protocol_error", _SECOND_CHANNEL)))
            return
        self._bind_channel(channel)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.debug("peer %s: connection %s", self.pc_id, state)
        if state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
            self._connected.set()
            log.debug(
                "peer %s: connected %.0f ms after the offer",
                self.pc_id,
                (self.connected_at - self.created_at) * 1000,
            )
        elif state == "closed" and not self.closed:
            # The client closed the connection (DTLS close_notify): a hang-up.
            self.close_soon(ended=True)
        elif state == "failed":
            self.close_soon(ended=False)

    # ---- data channel -------------------------------------------------------------------

    def _bind_channel(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        channel.on("message", self._on_message)
        channel.on("close", self._on_channel_close)
        if channel.readyState == "open":
            self._begin()
        else:
            channel.on("open", self._begin)

    def _on_message(self, message: str | bytes) -> None:
        try:
            self._inbox.put_nowait(message)
        except asyncio.QueueFull:
            self._send(events.error("overloaded", "too many control messages in flight"))

    def _on_channel_close(self) -> None:
        # Only the peer closes a channel while the connection still works (a lost network
        # fails ICE first, and that close wins): this is a hang-up, as a closing browser tab
        # or ``pc.close()`` resets the channel before the DTLS close arrives.
        self.close_soon(ended=True)

    def _begin(self) -> None:
        """The conversation starts: session event, greeting, then events and control."""
        if self._started or self.closed:
            return
        self._started = True
        self._spawn(self._run_conversation(), "webrtc-conversation")

    async def _run_conversation(self) -> None:
        self._send(self.lease.session_event())
        if not self.lease.resumed:
            await self.session.greet()
        self._spawn(self._read_control(), "webrtc-control")
        await self._send_events()

    async def _send_events(self) -> None:
        while True:
            event = await self.session.next_event()
            if self._channel is not None and self._channel.bufferedAmount > _MAX_BUFFERED_BYTES:
                log.info("peer %s: client stopped reading events; closing", self.pc_id)
                self.close_soon(ended=False)
                return
            self._send(event)
            if event["type"] == "session_end":
                self.ended = True
                self.close_soon(ended=True)  # the session hung up (silence)
                return

    def _send(self, event: dict[str, Any]) -> None:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return  # no channel (audio-only client), or it is going away: events are dropped
        try:
            channel.send(convai.dump(event))
        except Exception as exc:  # aiortc raises InvalidStateError and friends on a dying channel
            log.debug("peer %s: event not sent: %s", self.pc_id, exc)

    async def _read_control(self) -> None:
        limit = self.rt[SETTINGS].max_ws_message_bytes
        while True:
            raw = await self._inbox.get()
            try:
                if isinstance(raw, bytes):
                    raise ProtocolError(
                        "binary messages are not accepted on the data channel; "
                        "audio travels on the media track"
                    )
                if len(raw) > limit:
                    raise PayloadTooLarge(f"message exceeds the limit of {limit} bytes")
                if await self._control(convai.parse_client_message(raw)):
                    return
            except VoiceStreamError as err:
                # A bad message costs the client an error event, never the connection.
                self.rt[METRICS].errors.labels(err.code).inc()
                self._send(events.error(err.code, err.message))

    async def _control(self, msg: convai.ClientMessage) -> bool:
        """Apply one control message; True when the client hung up."""
        match msg:
            case convai.Config():
                if msg.input_format or msg.output_format:
                    raise ProtocolError("on WebRTC the audio formats are negotiated in the SDP")
                if msg.end_user_id:
                    self.lease.claim_end_user(msg.end_user_id)
                if msg.vad_threshold or msg.vad_min_silence_ms or msg.vad_min_speech_ms:
                    # Audio flows from the moment ICE connects, before the channel opens.
                    raise ProtocolError("on WebRTC the VAD settings are the server's")
                self.session.configure(silence_timeout_s=msg.silence_timeout_s)
            case _:
                if await apply_turn_message(self.session, msg):
                    self.ended = True
                    self.close_soon(ended=True)
                    return True
        return False

    # ---- media and lifetime -------------------------------------------------------------

    async def _pump_user_audio(self, track: MediaStreamTrack) -> None:
        converter = UserAudioConverter(SAMPLE_RATE)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return  # the track ended with the connection
            if not isinstance(frame, av.AudioFrame):
                continue  # aiortc hands audio tracks decoded frames; a packet is not audio
            pcm = converter.convert(frame)
            if pcm:
                await self.session.push_audio(pcm)

    async def _watchdog(self) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), CONNECT_DEADLINE_S)
        except TimeoutError:
            log.info("peer %s: not connected after %.0f s; closing", self.pc_id, CONNECT_DEADLINE_S)
            self.close_soon(ended=False)
            return
        if self._channel is None and self.pc.sctp is not None:
            await asyncio.sleep(_SERVER_CHANNEL_AFTER_S)
            if self._channel is None and not self.closed:
                self._bind_channel(self.pc.createDataChannel(_EVENTS_LABEL))
        elif self.pc.sctp is None:
            self._begin()  # audio only: greet and drain events nobody will see
        await asyncio.sleep(self.rt[SETTINGS].max_stream_seconds)
        log.info(
            "peer %s: call reached the %.0f s limit",
            self.pc_id,
            self.rt[SETTINGS].max_stream_seconds,
        )
        self._send(events.error("stream_limit", "the call reached the server's time limit"))
        self.close_soon(ended=True)

    def close_soon(self, *, ended: bool) -> None:
        """From a callback: close in the background (the first caller's ``ended`` wins)."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(ended), name="webrtc-close")
            self._closing.add_done_callback(self._close_done)

    def _close_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("peer %s: close failed", self.pc_id, exc_info=exc)

    async def close(self, *, ended: bool) -> None:
        self.close_soon(ended=ended)
        assert self._closing is not None
        await asyncio.shield(self._closing)

    async def _close(self, ended: bool) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)  # waits without raising what the tasks raised
        for task in tasks:
            # Cancelled by us is the expected end; a task that failed before the cancel
            # reached it is reported, since ``_task_done`` stays quiet once we are closing.
            if task.cancelled() or (exc := task.exception()) is None:
                continue
            if isinstance(exc, VoiceStreamError):
                log.warning("peer %s: %s failed: %s", self.pc_id, task.get_name(), exc)
            else:
                log.error("peer %s: %s failed", self.pc_id, task.get_name(), exc_info=exc)
        self.agent_track.stop()
        try:
            await asyncio.to_thread(_stop_decoder_threads, self.pc)
            await self.pc.close()
        finally:
            try:
                await self.lease.close(ended=ended or self.ended)
            finally:
                self._on_closed(self)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or self.closed:
            return
        if isinstance(exc, VoiceStreamError):
            # An engine or protocol failure the client can be told about, as on the WebSocket.
            log.warning("peer %s: %s failed: %s", self.pc_id, task.get_name(), exc)
            self._send(events.error(exc.code, exc.message))
        else:
            log.error("peer %s: %s failed", self.pc_id, task.get_name(), exc_info=exc)
        self.close_soon(ended=False)


def _stop_decoder_threads(pc: RTCPeerConnection) -> None:
    """Off the loop: end aiortc's decoder threads, which ``pc.close()`` would otherwise join
    on the event loop (a blocking wait, short but real). Private API, hence the getattr: if
    aiortc renames it, ``pc.close()`` simply does the join itself, as before."""
    for transceiver in pc.getTransceivers():
        stop = getattr(transceiver.receiver, "_RTCRtpReceiver__stop_decoder", None)
        if stop is not None:
            stop()


_SECOND_CHANNEL = f"only one data channel carries the protocol; use {_EVENTS_LABEL!r}"
