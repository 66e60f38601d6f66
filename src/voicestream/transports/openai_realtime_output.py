"""The sending half of an OpenAI Realtime socket: one writer for every server event.

The reader (``openai_realtime``) queues its events here with ``emit``; the session's events
become ``response.*`` events; agent frames leave as audio deltas at playback pace with a short
lead. The writer sends the reader's events first, then the session's, then audio: the session
emits a turn's events before it queues the turn's frames, so every frame goes out after the
events that announce it.

Responses. Each ``ConversationSession.push_text`` starts one agent turn, announced by a final
``user_transcript`` event: that opens the response planned for it. The turn's audio start,
text (``agent_response``) and end follow; an ``interruption`` (barge-in, ``response.cancel``)
cancels it, and a session ``error`` fails it. A greeting, which no user turn announces, opens
its response with its text or its first audio, whichever comes first; so does an unprompted
turn (``response.create`` with no user input), which takes the response planned for it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Literal

from aiohttp import web

from ..errors import EngineError, Overloaded
from ..media.encode import StreamEncoder, make_encoder
from ..observability.metrics import Metrics
from ..pipeline.session import SAMPLE_RATE, ConversationSession
from ..protocols import openai_realtime as oa
from ..protocols.openai_realtime_events import ResponseState, ServerEvents, dump
from .stt_common import parse_raw_format

__all__ = ["RealtimeOutput"]

# Ahead of playback the writer may run: rides out jitter, yet a cancel leaves little to play.
_PLAYBACK_LEAD_S: Final = 0.25
_MAX_OUTBOX: Final = 2000  # events the client has not taken yet

Event = dict[str, Any]
Status = Literal["completed", "cancelled", "failed"]


@dataclass(frozen=True, slots=True)
class _Plan:
    """A response asked of the session, until the session starts it."""

    modality: oa.Modality


class RealtimeOutput:
    """Everything one socket sends, in order; ``run`` is the writer task."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        session: ConversationSession,
        events: ServerEvents,
        cfg: oa.SessionConfig,
        conversation_ref: str,
        metrics: Metrics,
    ) -> None:
        self.ws = ws
        self.session = session
        self.events = events
        self.cfg = cfg  # kept current by the reader: formats and modalities of new responses
        self.conversation_ref = conversation_ref
        self.metrics = metrics
        self.last_item_id: str | None = None  # the conversation's newest item
        self.cancel_reason = "turn_detected"  # why the next interruption happens
        self._cancelled = False  # cancelled since the last response was planned
        self.spoken_chars = 0  # agent text given to TTS, for usage
        self._planned: deque[_Plan] = deque()
        self._outbox: deque[Event] = deque()
        self._outbox_ready = asyncio.Event()
        self._stash: deque[Event] = deque()  # session events a wait took off the queue
        self._frame: bytes | None = None  # taken from the speaker, not yet sent
        self._response: ResponseState | None = None
        self._encoder: StreamEncoder | None = None
        self._playhead = 0.0  # when the client will have played everything sent

    # ---- the reader's side ------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        if len(self._outbox) >= _MAX_OUTBOX:
            raise Overloaded("the client is not reading its events")
        self._outbox.append(event)
        self._outbox_ready.set()

    def plan(self, modality: oa.Modality) -> None:
        """The next agent turn the session starts answers with ``modality``."""
        self._planned.append(_Plan(modality))
        self._cancelled = False

    def cancel(self, reason: str) -> None:
        """Stop the agent now (a barge-in); its response ends ``cancelled`` with ``reason``."""
        self.cancel_reason = reason
        self._cancelled = True
        self.session.barge_in()

    async def flush(self) -> None:
        """Send what the reader queued, now (the socket is about to close)."""
        while self._outbox:
            await self._send(self._outbox.popleft())

    @property
    def responding(self) -> bool:
        """A response is asked for, streaming, or playing, and not already being cancelled
        (a client may cancel and ask again at once, before the cancel has played out)."""
        if self._cancelled:
            return False
        return self._response is not None or bool(self._planned) or self.session.agent_active

    @property
    def response_id(self) -> str | None:
        return self._response.id if self._response is not None else None

    # ---- the writer -------------------------------------------------------------------------

    async def run(self) -> None:
        """The only sender: the reader's events first, then the session's, then agent audio."""
        while True:
            while self._outbox:
                await self._send(self._outbox.popleft())
            self._outbox_ready.clear()
            event = self._stash.popleft() if self._stash else self.session.next_event_nowait()
            if event is not None:
                await self._on_session_event(event)
                continue
            # Every event emitted before this frame was queued has been handled by now.
            if self._frame is None:
                self._frame = self.session.speaker.get_nowait()
            if self._frame is None:
                await self._wait_any(None, want_frame=True)
                continue
            delay = self._frame_delay()
            if delay > 0:
                await self._wait_any(delay, want_frame=False)
                continue
            frame, self._frame = self._frame, None
            await self._send_frame(frame)

    async def _wait_any(self, within: float | None, *, want_frame: bool) -> None:
        """Until the reader emits, the session emits, a frame is ready, or ``within`` passes."""
        event_task = asyncio.create_task(self.session.next_event())
        waiters: list[asyncio.Task[Any]] = [
            asyncio.create_task(self._outbox_ready.wait()),
            event_task,
        ]
        frame_task = asyncio.create_task(self.session.speaker.get()) if want_frame else None
        if frame_task is not None:
            waiters.append(frame_task)
        try:
            await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                task.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        # Both getters are safe to cancel, and what one did take is kept: nothing is lost.
        if not event_task.cancelled():
            if (failure := event_task.exception()) is not None:
                raise failure  # the session gave up on this client (``ClientTooSlow``)
            self._stash.append(event_task.result())
        if frame_task is not None and not frame_task.cancelled() and not frame_task.exception():
            self._frame = frame_task.result()

    def _frame_delay(self) -> float:
        r = self._response
        if r is None or r.modality != "audio":
            return 0.0  # not sent at all
        now = time.monotonic()
        self._playhead = max(self._playhead, now)
        return self._playhead - now - _PLAYBACK_LEAD_S

    async def _send_frame(self, frame: bytes) -> None:
        r = self._response
        if r is None or r.modality != "audio" or self._encoder is None:
            return  # a text-only response, or what a cancelled one left behind
        data = self._encoder.encode(frame)
        if data:
            await self._send(self.events.audio_delta(r, data))
        self._playhead += len(frame) / 2 / SAMPLE_RATE

    async def _send(self, event: Event) -> None:
        await self.ws.send_str(dump(event))

    # ---- session events → response events ---------------------------------------------------

    async def _on_session_event(self, event: Event) -> None:
        match event:
            case {"type": "user_transcript", "final": True}:
                # Every push_text starts one agent turn with this event: the planned response.
                plan = self._planned.popleft() if self._planned else None
                if self._response is not None:
                    await self._finish("cancelled")
                await self._start(plan)
            case {"type": "turn", "speaker": "agent", "state": state}:
                await self._agent_turn(state)
            case {"type": "agent_response", "text": str(text)}:
                await self._agent_text(text)
            case {"type": "interruption"}:
                self._frame = None
                await self._finish("cancelled")
            case {"type": "error", "code": str(code), "message": str(message)}:
                err = EngineError(message, details={"openai_code": code})
                self.metrics.errors.labels(err.code).inc()
                await self._send(self.events.error(err))
                await self._finish("failed", {"type": "server_error", "code": code})

    async def _agent_turn(self, state: str) -> None:
        r = self._response
        if state == "start":
            if r is None:  # the greeting, or a turn that no user input announced
                r = await self._start(self._planned.popleft() if self._planned else None)
            r.audio_started = True
        elif r is not None and (r.audio_started or r.text_done):
            # A cancelled turn may report its end after the next one has begun; only an end
            # after the current turn's audio or text belongs to it.
            await self._finish("completed")

    async def _agent_text(self, text: str) -> None:
        r = self._response
        if r is None:  # an unannounced turn, whose text can be ready before its audio
            r = await self._start(self._planned.popleft() if self._planned else None)
        r.transcript = text
        r.text_done = True
        if text:
            await self._send(self.events.text_delta(r, text))
        elif not r.audio_started:
            await self._finish("completed")  # the agent had nothing to say

    async def _start(self, plan: _Plan | None) -> ResponseState:
        modality = plan.modality if plan is not None else self.cfg.output_modalities[0]
        r = ResponseState(
            id=oa.new_id("resp"),
            item_id=oa.new_id("item"),
            conversation_id=self.conversation_ref,
            modality=modality,
            output_format=self.cfg.output_format,
            voice=self.cfg.voice,
        )
        fmt = parse_raw_format(oa.RAW_FORMATS[r.output_format])
        self._encoder = make_encoder(fmt, SAMPLE_RATE)
        self._response = r
        for event in self.events.response_started(r, self.last_item_id):
            await self._send(event)
        self.last_item_id = r.item_id
        return r

    async def _finish(self, status: Status, error: dict[str, Any] | None = None) -> None:
        r, self._response = self._response, None
        encoder, self._encoder = self._encoder, None
        reason, self.cancel_reason = self.cancel_reason, "turn_detected"
        if r is None:
            return
        if status == "completed" and r.modality == "audio" and encoder is not None:
            tail = encoder.finish()  # what the resampler still held
            if tail:
                await self._send(self.events.audio_delta(r, tail))
        self.spoken_chars += len(r.transcript)
        for event in self.events.response_finished(r, status, reason=reason, error=error):
            await self._send(event)
