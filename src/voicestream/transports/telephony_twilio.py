"""Phone calls through Twilio Media Streams, bridged to a conversation.

``POST /v1/telephony/twilio/voice`` (with an API key; Twilio's voice webhook) answers with TwiML
that connects the call to ``WS /v1/telephony/twilio?agent_id=…`` and hands it a short-lived
ticket as a ``<Parameter>``: Twilio cannot send our key on the upgrade, so the socket opens
without one and checks the ticket from ``start.customParameters`` before it touches any audio.

On the socket: caller μ-law 8 kHz → 16 kHz PCM → the session; agent audio → 20 ms μ-law
``media`` frames at playback pace, a ``mark`` after each agent utterance, ``clear`` on
barge-in, DTMF digits to the agent, ``stop`` ends the call. Three tasks, as in ``convai_ws``:
the reader, the event sender and the paced audio sender.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlencode
from xml.sax.saxutils import quoteattr

from aiohttp import WSMsgType, web

from ..errors import (
    AuthError,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    ValidationFailed,
    VoiceStreamError,
)
from ..media.decode import RawStreamDecoder
from ..media.encode import make_encoder
from ..pipeline.session import SAMPLE_RATE, ConversationSession
from ..protocols import twilio_media as twilio
from .context import RUNTIME, Runtime, principal_of
from .convai_common import ConversationLease, open_conversation
from .stt_common import parse_raw_format
from .tickets import mint_ticket, verify_ticket
from .ws_common import open_websocket, run_socket_tasks

__all__ = ["STREAM_PATH", "VOICE_PATH", "add_twilio_routes", "post_twilio_voice", "ws_twilio"]

log = logging.getLogger(__name__)

STREAM_PATH = "/v1/telephony/twilio"
VOICE_PATH = "/v1/telephony/twilio/voice"
_TICKET_TTL_S = 120  # Twilio connects within seconds of fetching the TwiML
_START_TIMEOUT_S = 10.0
_PLAYBACK_LEAD_S = 0.1  # as convai_ws: jitter cover, yet a barge-in leaves little to play
_ULAW = parse_raw_format("ulaw_8000")
# Why a call may not open, whatever the error's own close code: Twilio sees 1008 for all.
_REFUSALS = (AuthError, NotFound, ValidationFailed)


def add_twilio_routes(app: web.Application) -> None:
    app.router.add_get(STREAM_PATH, ws_twilio)
    app.router.add_post(VOICE_PATH, post_twilio_voice)


# ---- TwiML ---------------------------------------------------------------------------------


async def post_twilio_voice(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    form = await request.post()
    agent_id = request.query.get("agent_id") or form.get("agent_id")
    if not isinstance(agent_id, str) or not agent_id:
        raise ValidationFailed("agent_id is required (query or form field)")
    # The agent must be in the caller's workspace: a ticket never reaches across tenants.
    agent = await rt.agents.get_config(str(principal_of(request).workspace_id), agent_id)
    ticket = mint_ticket(
        rt.secret_key,
        workspace_id=agent.workspace_id,
        agent_id=agent.id,
        end_user_id=None,
        ttl_s=_TICKET_TTL_S,
    )
    url = f"{_ws_base(request)}{STREAM_PATH}?{urlencode({'agent_id': agent.id})}"
    twiml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={quoteattr(url)}>"
        f'<Parameter name="ticket" value={quoteattr(ticket)}/>'
        "</Stream></Connect></Response>"
    )
    return web.Response(text=twiml, content_type="text/xml")


def _ws_base(request: web.Request) -> str:
    """ws(s)://host as the caller reached us, through a proxy if there is one."""
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    secure = proto in ("https", "wss") if proto else request.secure
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    return f"{'wss' if secure else 'ws'}://{host}"


# ---- the media socket ----------------------------------------------------------------------


async def ws_twilio(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    ws = await open_websocket(request, rt.settings)
    stream = twilio.TwilioStream()
    try:
        start = await _wait_for_start(ws, stream, rt.settings.max_ws_message_bytes)
        if start is None:
            return ws  # hung up before starting
        lease = await _open(request, start)
    except _REFUSALS as err:
        await _close(rt, ws, err, code=1008)  # a refused call is a policy violation
        return ws
    except VoiceStreamError as err:
        await _close(rt, ws, err)
        return ws
    socket = _TwilioSocket(rt, ws, lease, stream)
    rt.metrics.active_streams.labels("twilio").inc()
    try:
        await socket.run()
    finally:
        rt.metrics.active_streams.labels("twilio").dec()
        await lease.close(ended=socket.ended)
    return ws


async def _wait_for_start(
    ws: web.WebSocketResponse, stream: twilio.TwilioStream, limit: int
) -> twilio.Start | None:
    try:
        async with asyncio.timeout(_START_TIMEOUT_S):
            async for msg in ws:
                text = _text_of(msg, limit)
                if text is None:
                    return None
                event = stream.receive(text)
                if isinstance(event, twilio.Start):
                    return event
    except TimeoutError:
        raise ProtocolError(f'no "start" within {_START_TIMEOUT_S:g} seconds') from None
    return None


async def _open(request: web.Request, start: twilio.Start) -> ConversationLease:
    """Check the ticket, then open the conversation."""
    rt = request.app[RUNTIME]
    agent_id = request.query.get("agent_id", "")
    token = start.custom_parameters.get("ticket")
    if not token:
        raise AuthError('missing ticket: the TwiML <Parameter name="ticket"> is required')
    claims = verify_ticket(rt.secret_key, token)
    agent_id = agent_id or claims.agent_id
    if claims.agent_id != agent_id:
        raise AuthError("the ticket was issued for another agent")
    return await open_conversation(
        request,
        agent_id=agent_id,
        session_id=None,
        end_user_id=None,
        transport="twilio",
        ticket=token,
    )


def _text_of(msg: object, limit: int) -> str | None:
    """A frame's text; None when the peer closed. Twilio sends JSON text frames only."""
    kind = getattr(msg, "type", None)
    data = getattr(msg, "data", None)
    if kind not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return None
    if isinstance(data, str | bytes) and len(data) > limit:
        raise PayloadTooLarge(f"message exceeds the limit of {limit} bytes")
    if kind == WSMsgType.BINARY or not isinstance(data, str):
        raise ProtocolError("Twilio Media Streams frames are JSON text, not binary")
    return data


async def _close(
    rt: Runtime, ws: web.WebSocketResponse, err: VoiceStreamError, *, code: int | None = None
) -> None:
    # Twilio's protocol has no error message from the server: the close code and reason carry it.
    rt.metrics.errors.labels(err.code).inc()
    if not ws.closed:
        reason = f"{err.code}: {err.message}".encode()[:120]
        await ws.close(code=code or err.ws_close_code, message=reason)


class _TwilioSocket:
    def __init__(
        self,
        rt: Runtime,
        ws: web.WebSocketResponse,
        lease: ConversationLease,
        stream: twilio.TwilioStream,
    ) -> None:
        self.rt = rt
        self.ws = ws
        self.lease = lease
        self.session: ConversationSession = lease.session
        self.session.set_input_rate(8000)  # a phone line
        self.stream = stream
        self.decoder = RawStreamDecoder(_ULAW, SAMPLE_RATE)
        self.encoder = make_encoder(_ULAW, SAMPLE_RATE)
        self.ended = False
        self._unmarked = False  # agent audio sent since the last mark or clear
        self._idle = asyncio.Event()  # the audio sender holds no frame

    async def run(self) -> None:
        await self.session.greet()
        await run_socket_tasks(
            self.ws,
            {
                "twilio-read": self._read(),
                "twilio-events": self._send_events(),
                "twilio-audio": self._send_audio(),
            },
            lambda err: _close(self.rt, self.ws, err),
        )

    async def _read(self) -> None:
        limit = self.rt.settings.max_ws_message_bytes
        async for msg in self.ws:
            text = _text_of(msg, limit)
            if text is None:
                return
            match self.stream.receive(text):
                case twilio.Media(payload=payload, track=track) if track in (None, "inbound"):
                    await self.session.push_audio(self.decoder.decode(payload))
                case twilio.Dtmf(digit=digit):
                    await self.session.push_dtmf(digit)
                case twilio.Stop():
                    self.ended = True
                    return
                case _:
                    pass  # marks are booked by the stream; other tracks are not ours

    async def _send_events(self) -> None:
        while True:
            event = await self.session.next_event()
            match event:
                case {"type": "interruption"}:
                    self._unmarked = False
                    await self.ws.send_str(self.stream.clear())
                case {"type": "turn", "speaker": "agent", "state": "end"}:
                    # The turn ends once its frames are handed out; the last may still be in
                    # the sender's hands, so wait for it before marking the end.
                    await self._idle.wait()
                    if self._unmarked:
                        self._unmarked = False
                        for frame in self.stream.flush_audio():
                            await self.ws.send_str(frame)
                        await self.ws.send_str(self.stream.mark())
                case {"type": "session_end"}:
                    self.ended = True
                    return  # the session hung up (silence): closing the socket ends the call

    async def _send_audio(self) -> None:
        playhead = 0.0  # when Twilio will have played everything sent so far
        while True:
            self._idle.set()
            frame = await self.session.speaker.get()
            self._idle.clear()
            now = time.monotonic()
            playhead = max(playhead, now)
            if playhead - now > _PLAYBACK_LEAD_S:
                await asyncio.sleep(playhead - now - _PLAYBACK_LEAD_S)
            for message in self.stream.audio(self.encoder.encode(frame)):
                await self.ws.send_str(message)
            self._unmarked = True
            playhead += len(frame) / 2 / SAMPLE_RATE
