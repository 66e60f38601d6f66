"""ElevenLabs Agents WebSocket (``/elevenlabs/v1/convai/conversation``), bridged to a conversation.

``WS /elevenlabs/v1/convai/conversation?agent_id=…`` is what the official SDKs' ``Conversation``
opens: the Python SDK sends no key at all, so a public agent needs none; a private one needs an
API key header or a signed URL from ``GET …/conversation/get-signed-url?agent_id=`` (with a key),
whose ``conversation_signature`` is one of our conversation tickets (``elevenlabs`` family:
one conversation with that agent, within 15 minutes). The socket echoes the ``convai``
subprotocol the JS client asks for (browsers fail the connection otherwise).

``user_id`` in the initiation data names the end user whose long-term memory the agent uses;
it is believed only on a socket opened with an API key. Anyone else's conversation is
anonymous, whatever ``user_id`` it sends (see ``convai_common``).

The client speaks first (``conversation_initiation_client_data``, with its overrides); only then
does the conversation open, so a voice or greeting override shapes it from the first word, and
``conversation_initiation_metadata`` is the first thing the client hears. Refusals (unknown
agent, bad signature, overrides nobody vouched for, malformed messages) are an ``error`` message
then close 1008, as ElevenLabs does; server faults close 1011.

Four tasks per socket, as in ``convai_ws``: the reader, the event sender, the audio sender
(agent frames as ``audio`` events paced at playback speed, a short lead ahead, so a barge-in
leaves the client almost nothing to play) and a pinger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode

from aiohttp import web

from ..engines.agents.base import AgentConfig, ChatMessage
from ..errors import (
    Forbidden,
    ProtocolError,
    ValidationFailed,
    VoiceStreamError,
)
from ..identity.tickets import mint_ticket
from ..media.decode import RawStreamDecoder
from ..pipeline.session import SAMPLE_RATE, ConversationSession
from ..protocols import elevenlabs as el
from ..protocols import elevenlabs_agents as ea
from ..rest.resources import AGENTS, METRICS, REGISTRY, SECRET_KEY, SETTINGS
from .context import optional_principal, principal_of
from .convai_common import ConversationLease, open_conversation, require_conversation_origin
from .stt_common import parse_raw_format
from .ws_common import (
    close_with_error,
    open_websocket,
    read_messages,
    receive_message,
    run_socket_tasks,
)

__all__ = ["CONVERSATION_PATH", "add_elevenlabs_agents_routes"]

log = logging.getLogger(__name__)

CONVERSATION_PATH = "/elevenlabs/v1/convai/conversation"
# The SDKs before 1.x used the underscore spelling; both lead to the same handler.
_SIGNED_URL_PATHS = (f"{CONVERSATION_PATH}/get-signed-url", f"{CONVERSATION_PATH}/get_signed_url")
_SUBPROTOCOL = "convai"
_SIGNED_URL_TTL_S = 900  # ElevenLabs' signed URLs last 15 minutes
# Every real client sends its initiation data the moment the socket opens; one that sends
# nothing gets the agent as stored after this long.
_INIT_WAIT_S = 10.0
_PLAYBACK_LEAD_S = 0.1  # as convai_ws: jitter cover, yet a barge-in leaves little to play
_PING_EVERY_S = 5.0
_PINGS_REMEMBERED = 8  # unanswered pings kept for the round-trip time
_MAX_CONTEXT_UPDATES = 100  # each one joins the agent's history for the whole conversation


def add_elevenlabs_agents_routes(app: web.Application) -> None:
    """Mount the ElevenLabs Agents conversation socket and its signed-URL endpoint."""
    app.router.add_get(CONVERSATION_PATH, ws_conversation)
    for path in _SIGNED_URL_PATHS:
        app.router.add_get(path, get_signed_url)


# ---- signed URLs ---------------------------------------------------------------------------


async def get_signed_url(request: web.Request) -> web.Response:
    """``{"signed_url": "ws(s)://…/conversation?agent_id=…&conversation_signature=…"}``."""
    rt = request.app
    try:
        agent_id = request.query.get("agent_id", "")
        if not agent_id:
            raise ValidationFailed(
                "agent_id is required",
                details={"fields": [{"field": "agent_id", "message": "Field required"}]},
            )
        # The agent must be in the caller's workspace: a signature never reaches across tenants.
        agent = await rt[AGENTS].get_config(str(principal_of(request).workspace_id), agent_id)
    except VoiceStreamError as err:
        rt[METRICS].errors.labels(err.code).inc()
        return web.json_response(el.error_body(err, status=err.http_status), status=err.http_status)
    ticket = mint_ticket(
        rt[SECRET_KEY],
        workspace_id=agent.workspace_id,
        agent_id=agent.id,
        end_user_id=None,
        ttl_s=_SIGNED_URL_TTL_S,
        family="elevenlabs",
        key_id=principal_of(request).key_id,
        user_id=principal_of(request).user_id,
    )
    query = urlencode({"agent_id": agent.id, "conversation_signature": ticket})
    return web.json_response({"signed_url": f"{_ws_base(request)}{CONVERSATION_PATH}?{query}"})


def _ws_base(request: web.Request) -> str:
    """ws(s)://host as the caller reached us, through a proxy if there is one."""
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    secure = proto in ("https", "wss") if proto else request.secure
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    return f"{'wss' if secure else 'ws'}://{host}"


# ---- the conversation socket ---------------------------------------------------------------


class _Closed:
    """The client hung up before saying anything."""


async def ws_conversation(request: web.Request) -> web.StreamResponse:
    rt = request.app
    signature = request.query.get("conversation_signature")
    # The page's workspace is known from the query already: a refused page gets no upgrade.
    await require_conversation_origin(
        request, request.query.get("agent_id", ""), signature, "elevenlabs"
    )
    ws = await open_websocket(request, rt[SETTINGS], (_SUBPROTOCOL,))
    limit = rt[SETTINGS].max_ws_message_bytes
    try:
        first = await _first_message(ws, limit)
        if isinstance(first, _Closed):
            return ws
        init = first if isinstance(first, ea.Initiation) else ea.Initiation()
    except VoiceStreamError as err:
        await _refuse(rt, ws, err)
        return ws
    try:
        # Whoever holds a key or a signature speaks for the agent's owner; an anonymous visitor
        # of a public agent must not rewrite its prompt, greeting or voice.
        vouched = optional_principal(request) is not None or bool(signature)
        _check_overrides(rt, init.overrides, vouched=vouched)
    except VoiceStreamError as err:
        await _refuse(rt, ws, err, error_type="override_error")
        return ws
    try:
        lease = await open_conversation(
            request,
            agent_id=request.query.get("agent_id", ""),
            session_id=None,
            end_user_id=init.user_id,
            transport="elevenlabs",
            ticket=signature,
            customize=_customizer(init),
        )
    except VoiceStreamError as err:
        await _refuse(rt, ws, err)
        return ws
    socket = _AgentSocket(rt, ws, lease, text_only=init.overrides.text_only)
    pending = None if isinstance(first, ea.Initiation) else first
    rt[METRICS].active_streams.labels("elevenlabs_agents").inc()
    try:
        await socket.run(pending)
    finally:
        rt[METRICS].active_streams.labels("elevenlabs_agents").dec()
        await lease.close(ended=socket.ended)
    return ws


async def _first_message(
    ws: web.WebSocketResponse, limit: int
) -> ea.ClientMessage | _Closed | None:
    """The client's first message; None when it sent nothing in time."""
    try:
        data = await receive_message(ws, limit, within=_INIT_WAIT_S)
    except TimeoutError:
        return None
    except ConnectionResetError:
        return _Closed()
    return _parse(data)


def _parse(data: str | bytes) -> ea.ClientMessage:
    if isinstance(data, bytes):  # the protocol is JSON text only
        raise ProtocolError('frames are JSON text; send audio as {"user_audio_chunk": base64}')
    return ea.parse_client_message(data)


def _check_overrides(rt: web.Application, overrides: ea.Overrides, *, vouched: bool) -> None:
    if overrides.changes_agent and not vouched:
        raise Forbidden(
            "overrides of a public agent's prompt, first message, language or voice need an "
            "API key or a signed URL"
        )
    if overrides.voice_id is not None:
        rt[REGISTRY].voice(overrides.voice_id)  # raises UnknownVoice


def _customizer(init: ea.Initiation) -> Callable[[AgentConfig], AgentConfig]:
    """The agent as this conversation sees it: overrides applied, then dynamic variables."""

    def customize(agent: AgentConfig) -> AgentConfig:
        o = init.overrides
        if o.prompt is not None:
            agent = dataclasses.replace(agent, instructions=o.prompt)
        if o.first_message is not None:
            # An empty greeting means: wait for the user to speak first.
            agent = dataclasses.replace(agent, first_message=o.first_message or None)
        if o.language is not None:
            agent = dataclasses.replace(agent, language=o.language)
        if o.voice_id is not None:
            agent = dataclasses.replace(agent, voice=o.voice_id)
        variables = init.dynamic_variables
        if variables:
            first = agent.first_message
            agent = dataclasses.replace(
                agent,
                instructions=ea.fill_variables(agent.instructions, variables),
                first_message=ea.fill_variables(first, variables) if first else first,
            )
        return agent

    return customize


def _close_code(err: VoiceStreamError) -> int:
    # ElevenLabs closes every refusal of what the client sent with 1008 (policy violation); our
    # own code travels in the error message's "reason". Server faults keep theirs (1011, 1013).
    return 1008 if err.http_status < 500 else err.ws_close_code


async def _refuse(
    rt: web.Application,
    ws: web.WebSocketResponse,
    err: VoiceStreamError,
    *,
    error_type: str | None = None,
) -> None:
    """Tell the client why in ElevenLabs' shape, then close with a code that says so."""
    rt[METRICS].errors.labels(err.code).inc()
    code = _close_code(err)
    await close_with_error(
        ws,
        err,
        lambda e: ea.error_for(e, close_code=code, error_type=error_type),
        code=code,
        reason=f"{err.code}: {err.message}",  # the JS client shows it to the user
    )


class _AgentSocket:
    def __init__(
        self,
        rt: web.Application,
        ws: web.WebSocketResponse,
        lease: ConversationLease,
        *,
        text_only: bool,
    ) -> None:
        self.rt = rt
        self.ws = ws
        self.lease = lease
        self.session: ConversationSession = lease.session
        self.session.set_input_rate(SAMPLE_RATE)
        # Checks that every chunk holds whole samples; 16 kHz in and out, so nothing to resample.
        self.decoder = RawStreamDecoder(parse_raw_format(ea.AUDIO_FORMAT), SAMPLE_RATE)
        self.text_only = text_only
        self.session.reads_text = text_only
        self.ended = False
        self._last_id = 0  # the last event id handed out (audio, responses, transcripts)
        # Barge-in bookkeeping: the session's interruption count when the latest audio frame
        # was taken, and the id of the first frame taken at that count.
        self._audio_epoch = 0
        self._epoch_first_id = 1
        self._pings: dict[int, float] = {}  # unanswered ping id → when it was sent
        self._ping_ms: int | None = None
        self._context_updates = 0

    def _next_id(self) -> int:
        self._last_id += 1
        return self._last_id

    async def run(self, pending: ea.ClientMessage | None) -> None:
        await self.ws.send_str(ea.conversation_initiation_metadata(self.session.conversation_id))
        await self.session.greet()
        await run_socket_tasks(
            self.ws,
            {
                "elevenlabs-agents-read": self._read(pending),
                "elevenlabs-agents-events": self._send_events(),
                "elevenlabs-agents-audio": self._send_audio(),
                "elevenlabs-agents-ping": self._ping(),
            },
            self._fail,
        )

    async def _fail(self, err: VoiceStreamError) -> None:
        await _refuse(self.rt, self.ws, err)

    # ---- client → session ---------------------------------------------------------------

    async def _read(self, pending: ea.ClientMessage | None) -> None:
        if pending is not None:
            await self._handle(pending)
        await read_messages(self.ws, self.rt[SETTINGS].max_ws_message_bytes, self._on_message)
        # The SDKs hang up with a close frame when the user ends the conversation; a socket
        # that just drops is recorded as disconnected.
        self.ended = self.ended or self.ws.close_code in (1000, 1001)

    async def _on_message(self, data: str | bytes) -> bool:
        await self._handle(_parse(data))
        return False  # the client ends the conversation by closing the socket

    async def _handle(self, msg: ea.ClientMessage) -> None:
        match msg:
            case ea.UserAudio(pcm=pcm):
                await self.session.push_audio(self.decoder.decode(pcm))
            case ea.UserMessage(text=text):
                await self.session.push_text(text)
            case ea.ContextualUpdate(text=text):
                self._context_updates += 1
                if self._context_updates > _MAX_CONTEXT_UPDATES:
                    raise ProtocolError(
                        f"at most {_MAX_CONTEXT_UPDATES} contextual updates per conversation"
                    )
                # Context for the agent's next turns, without a reply of its own.
                self.session.history.append(ChatMessage("system", text))
            case ea.Pong(event_id=event_id):
                sent = self._pings.pop(event_id, None)
                if sent is not None:
                    # At least 1: the SDKs take a 0 for "not measured" and drop it.
                    self._ping_ms = max(1, round((time.monotonic() - sent) * 1000))
            case ea.Initiation():
                raise ProtocolError(
                    "conversation_initiation_client_data is only accepted as the first message"
                )
            case ea.UserActivity() | ea.Ignored():
                # Activity pings keep a hosted conversation from timing out; ours times out on
                # silence only when the agent asks it to, and listens to speech for that.
                pass

    # ---- session → client ---------------------------------------------------------------

    async def _send_events(self) -> None:
        while True:
            event = await self.session.next_event()
            match event:
                case {"type": "user_transcript", "final": True, "text": str(text)}:
                    await self.ws.send_str(ea.user_transcript(text, self._next_id()))
                case {"type": "agent_response", "text": str(text)} if text:
                    await self.ws.send_str(ea.agent_response(text, self._next_id()))
                case {"type": "interruption"}:
                    await self.ws.send_str(ea.interruption(self._stale_audio_id()))
                case {
                    "type": "agent_response_correction",
                    "original": str(said),
                    "corrected": str(heard),
                }:
                    await self.ws.send_str(
                        ea.agent_response_correction(said, heard, self._next_id())
                    )
                case {"type": "error", "code": str(code), "message": str(message)}:
                    # A failed agent turn; the conversation goes on, so no close follows.
                    await self.ws.send_str(
                        ea.error(message, reason=code, close_code=1011, error_type="unknown")
                    )
                case {"type": "session_end"}:
                    self.ended = True
                    return  # the session hung up (silence): a normal close follows
                case _:
                    # Partial transcripts and turn markers have no counterpart that the SDKs
                    # handle; the final transcript and the response carry the conversation.
                    pass

    def _stale_audio_id(self) -> int:
        """The id at or below which every audio frame sent is from before the latest barge-in.

        Frames the sender took after the speaker was emptied belong to the next answer: the
        session counts barge-ins, and the sender notes the count with every frame it takes.
        """
        if self._audio_epoch == self.session.stats.interruptions:
            return self._epoch_first_id - 1
        return self._last_id

    async def _send_audio(self) -> None:
        playhead = 0.0  # when the client will have played everything sent so far
        while True:
            frame = await self.session.speaker.get()
            epoch = self.session.stats.interruptions
            event_id = self._next_id()
            if epoch != self._audio_epoch:
                self._audio_epoch, self._epoch_first_id = epoch, event_id
            if self.text_only:
                # The client asked for text alone: the turn still plays out, unheard.
                await asyncio.sleep(0)
                continue
            now = time.monotonic()
            playhead = max(playhead, now)
            if playhead - now > _PLAYBACK_LEAD_S:
                await asyncio.sleep(playhead - now - _PLAYBACK_LEAD_S)
            await self.ws.send_str(ea.audio(frame, event_id))
            playhead += len(frame) / 2 / SAMPLE_RATE

    async def _ping(self) -> None:
        event_id = 0
        while True:
            await asyncio.sleep(_PING_EVERY_S)
            event_id += 1
            self._pings[event_id] = time.monotonic()
            if len(self._pings) > _PINGS_REMEMBERED:
                del self._pings[min(self._pings)]
            await self.ws.send_str(ea.ping(event_id, self._ping_ms))
