"""A phone call's media stream bridged to a conversation, whichever carrier sends it.

The carrier's socket (Twilio, Telnyx, Vonage) differs only in framing, and each codec's
per-call stream (the carrier base, ``protocols/call_media``) turns its frames into the same
``CallEvent``s and builds the frames going back; a carrier is one configured ``CallFraming``
(its stream, its transport name, where its ticket goes). This module does the rest the same
way for all of them:

* authorization, once the carrier's first frames arrive: a short-lived ticket (from the URL's
  ``ticket=`` or the carrier's custom parameters) or an API key header. Carriers cannot send our
  key, so the answer webhooks (which do need one) hand the socket a ticket.
* caller audio, decoded from the carrier's codec to 16 kHz PCM, into the session;
* agent audio as 20 ms frames at playback pace (a short lead ahead, so a barge-in leaves the
  carrier almost nothing to play), a mark after each agent utterance, a clear on barge-in;
* DTMF to the agent, and the call's end (the carrier's stop, the socket closing, or the session
  hanging up on silence).

Three tasks per call, as in ``convai_ws``: the reader, the event sender and the paced audio
sender. None of these carriers has an error message from the server: a refused or broken call
is closed with a close code and a reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from ..engines.agents.base import AgentConfig
from ..errors import (
    AuthError,
    NotFound,
    ProtocolError,
    ValidationFailed,
    VoiceStreamError,
)
from ..identity.tickets import mint_ticket, verify_ticket
from ..media.decode import RawStreamDecoder
from ..media.encode import make_encoder
from ..pipeline.session import SAMPLE_RATE, ConversationSession
from ..protocols.call_media import (
    CallAudio,
    CallDtmf,
    CallNotice,
    CallStart,
    CallStop,
    CarrierStream,
)
from ..rest.resources import METRICS, SECRET_KEY, SETTINGS
from ..store.keys import Principal
from .context import optional_principal
from .convai_common import ConversationLease, open_conversation
from .socket_registry import use_socket_closer
from .stt_common import parse_raw_format
from .ws_common import close_with_error, open_websocket, read_messages, run_socket_tasks

__all__ = [
    "CallFraming",
    "call_ticket",
    "http_base",
    "serve_call",
    "ws_base",
]


TICKET_TTL_S = 120  # carriers connect within seconds of fetching the answer document
_START_TIMEOUT_S = 10.0
_PLAYBACK_LEAD_S = 0.1  # as convai_ws: jitter cover, yet a barge-in leaves little to play
# Why a call may not open, whatever the error's own close code: the carrier sees 1008 for all.
_REFUSALS = (AuthError, NotFound, ValidationFailed)
log = logging.getLogger(__name__)


# ---- a carrier ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallFraming:
    """One carrier's media socket, configured: its codec's per-call stream and what the bridge
    needs to say about it."""

    transport: str  # the conversation's transport and the metrics label
    ticket_hint: str  # where this carrier's ticket goes, for the refusal's reason
    new_stream: Callable[[], CarrierStream[object, str | bytes]]  # one call's codec state


# ---- answer webhooks -----------------------------------------------------------------------


def ws_base(request: web.Request) -> str:
    """ws(s)://host as the caller reached us, through a proxy if there is one."""
    return http_base(request).replace("http", "ws", 1)


def http_base(request: web.Request) -> str:
    """http(s)://host as the caller reached us, through a proxy if there is one."""
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    secure = proto in ("https", "wss") if proto else request.secure
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    return f"{'https' if secure else 'http'}://{host}"


def call_ticket(rt: web.Application, agent: AgentConfig, principal: Principal | None) -> str:
    """A ticket for one call to ``agent``, for the answer document to hand the socket.

    ``principal``: who made the webhook call, if it came with a key or a session (Twilio's own
    signed webhook has neither); the ticket dies with that key or that member's access."""
    return mint_ticket(
        rt[SECRET_KEY],
        workspace_id=agent.workspace_id,
        agent_id=agent.id,
        end_user_id=None,
        ttl_s=TICKET_TTL_S,
        family="telephony",
        key_id=principal.key_id if principal is not None else None,
        user_id=principal.user_id if principal is not None else None,
    )


# ---- the media socket ----------------------------------------------------------------------


async def serve_call(request: web.Request, framing: CallFraming) -> web.WebSocketResponse:
    """Run one call's media socket to its end."""
    rt = request.app
    ws = await open_websocket(request, rt[SETTINGS])
    # A revoked key's call ends as the carrier expects: no error message, a close code.
    use_socket_closer(request, lambda err: _close(rt, ws, err))
    stream = framing.new_stream()
    try:
        start = await _wait_for_start(ws, stream, rt[SETTINGS].max_ws_message_bytes)
        if start is None:
            return ws  # hung up before starting
        lease = await _open(request, framing, start)
    except _REFUSALS as err:
        await _close(rt, ws, err, code=1008)  # a refused call is a policy violation
        return ws
    except VoiceStreamError as err:
        await _close(rt, ws, err)
        return ws
    call = _Call(rt, ws, lease, framing, stream, start)
    rt[METRICS].active_streams.labels(framing.transport).inc()
    try:
        await call.run()
    finally:
        rt[METRICS].active_streams.labels(framing.transport).dec()
        await lease.close(ended=call.ended)
    return ws


async def _wait_for_start(
    ws: web.WebSocketResponse, stream: CarrierStream[object, str | bytes], limit: int
) -> CallStart | None:
    """The carrier's start; None when it hung up first. Frames before it (Twilio's
    "connected") only move the codec's state on."""
    started: list[CallStart] = []

    async def handle(frame: str | bytes) -> bool:
        event = stream.call_event(frame)
        if isinstance(event, CallStart):
            started.append(event)
            return True
        return False

    try:
        async with asyncio.timeout(_START_TIMEOUT_S):
            await read_messages(ws, limit, handle)
    except TimeoutError:
        raise ProtocolError(
            f"the stream did not start within {_START_TIMEOUT_S:g} seconds"
        ) from None
    return started[0] if started else None


async def _open(request: web.Request, framing: CallFraming, start: CallStart) -> ConversationLease:
    """Check the ticket (or key), then open the conversation."""
    rt = request.app
    agent_id = request.query.get("agent_id", "")
    token = start.parameters.get("ticket") or request.query.get("ticket")
    if token:
        # A widget's or an ElevenLabs client's ticket never opens a phone call.
        claims = verify_ticket(rt[SECRET_KEY], token, family="telephony")
        agent_id = agent_id or claims.agent_id
        if claims.agent_id != agent_id:
            raise AuthError("the ticket was issued for another agent")
    elif optional_principal(request) is None:
        # No public-agent fallback here, unlike the widget: a phone number is not a web page.
        raise AuthError(f"missing ticket: {framing.ticket_hint}")
    return await open_conversation(
        request,
        agent_id=agent_id,
        session_id=None,
        end_user_id=None,
        transport=framing.transport,
        ticket=token,
    )


async def _close(
    rt: web.Application,
    ws: web.WebSocketResponse,
    err: VoiceStreamError,
    *,
    code: int | None = None,
) -> None:
    # The carriers' protocols have no error message from the server: the close code and reason
    # carry it.
    rt[METRICS].errors.labels(err.code).inc()
    await close_with_error(ws, err, None, code=code, reason=f"{err.code}: {err.message}")


class _Call:
    def __init__(
        self,
        rt: web.Application,
        ws: web.WebSocketResponse,
        lease: ConversationLease,
        framing: CallFraming,
        stream: CarrierStream[object, str | bytes],
        start: CallStart,
    ) -> None:
        self.rt = rt
        self.ws = ws
        self.lease = lease
        self.framing = framing
        self.out = stream
        self.session: ConversationSession = lease.session
        wire = parse_raw_format(start.wire_format)
        self.session.set_input_rate(wire.sample_rate)  # a phone line's 8 kHz, or wideband
        self.decoder = RawStreamDecoder(wire, SAMPLE_RATE)
        self.encoder = make_encoder(wire, SAMPLE_RATE)
        self.ended = False
        self._unmarked = False  # agent audio sent since the last mark or clear
        self._clears = 0  # clears sent so far: a frame taken before the latest one is stale
        self._idle = asyncio.Event()  # the audio sender holds no frame

    async def run(self) -> None:
        await self.session.greet()
        name = self.framing.transport
        await run_socket_tasks(
            self.ws,
            {
                f"{name}-read": self._read(),
                f"{name}-events": self._send_events(),
                f"{name}-audio": self._send_audio(),
            },
            lambda err: _close(self.rt, self.ws, err),
        )

    async def _send(self, messages: Sequence[str | bytes]) -> None:
        for message in messages:
            if isinstance(message, str):
                await self.ws.send_str(message)
            else:
                await self.ws.send_bytes(message)

    async def _read(self) -> None:
        limit = self.rt[SETTINGS].max_ws_message_bytes
        if not await read_messages(self.ws, limit, self._on_frame):
            self.ended = self.out.ends_on_close  # the carrier closed without a stop

    async def _on_frame(self, frame: str | bytes) -> bool:
        """One frame of the call; True at the carrier's stop."""
        match self.out.call_event(frame):
            case CallAudio(payload):
                await self.session.push_audio(self.decoder.decode(payload))
            case CallDtmf(digits):
                await self.session.push_dtmf(digits)
            case CallStop():
                self.ended = True
                return True
            case CallStart():
                raise ProtocolError("the stream started twice")
            case CallNotice(message):
                log.warning("%s call: %s", self.framing.transport, message)
            case None:
                pass
        return False

    async def _send_events(self) -> None:
        while True:
            event = await self.session.next_event()
            match event:
                case {"type": "interruption"}:
                    self._unmarked = False
                    self._clears += 1
                    await self.ws.send_str(self.out.clear())
                case {"type": "turn", "speaker": "agent", "state": "end"}:
                    # The turn ends once its frames are handed out; the last may still be in
                    # the sender's hands, so wait for it before marking the end.
                    await self._idle.wait()
                    if self._unmarked:
                        self._unmarked = False
                        await self._send(self.out.flush_audio())
                        await self.ws.send_str(self.out.mark())
                case {"type": "session_end"}:
                    self.ended = True
                    return  # the session hung up (silence): closing the socket ends the call

    async def _send_audio(self) -> None:
        playhead = 0.0  # when the carrier will have played everything sent so far
        while True:
            self._idle.set()
            frame = await self.session.speaker.get()
            self._idle.clear()
            clears = self._clears
            now = time.monotonic()
            playhead = max(playhead, now)
            if playhead - now > _PLAYBACK_LEAD_S:
                await asyncio.sleep(playhead - now - _PLAYBACK_LEAD_S)
            if clears != self._clears:
                # A barge-in while this frame waited for its time: the carrier has been told
                # to clear the utterance, so neither the frame nor a mark for it may follow.
                continue
            await self._send(self.out.audio(self.encoder.encode(frame)))
            # A frame sent just before a clear is cleared too: it leaves nothing to mark.
            self._unmarked = clears == self._clears
            playhead += len(frame) / 2 / SAMPLE_RATE
