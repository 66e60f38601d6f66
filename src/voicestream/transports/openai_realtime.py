"""``WS /openai/v1/realtime``: the OpenAI Realtime API as a drop-in, on our conversation pipeline.

The official SDK connects with ``AsyncOpenAI(base_url="http://HOST:PORT/openai/v1")`` and
``client.realtime.connect(model=…)``; the beta client (``client.beta.realtime``, header
``OpenAI-Beta: realtime=v1``, beta event names) always builds ``wss://`` URLs, so it needs
``websocket_base_url="ws://HOST:PORT/openai/v1"`` against plain HTTP. An API key is required.

Who answers: ``?agent_id=`` picks one of the key's workspace agents (documents, voice, LLM
settings, greeting); without it an unsaved agent of that workspace answers, with no documents:
the server-wide LLM when ``VOICESTREAM_LLM_*`` is configured, else the knowledge-base agent,
which can only say that it does not know. The session's ``instructions`` (and a
``response.create``'s) replace the agent's: they become an LLM-backed agent's system prompt; the
knowledge-base agent has no prompt and answers from its documents regardless.

This socket listens itself (``openai_realtime_input``: VAD and recognizer at 16 kHz), so that
OpenAI's turn-taking options hold, and hands each finished user turn to
``ConversationSession.push_text``, which answers through the agent and TTS:

* ``server_vad``/``semantic_vad``: ``create_response`` answers each turn at once; with
  ``interrupt_response``, speech over a response cancels it (``response.done`` cancelled,
  reason ``turn_detected``) — the client drops what it buffered, as with OpenAI.
* ``turn_detection: null``: ``input_audio_buffer.commit`` makes the buffered audio one user
  item; ``response.create`` answers every unanswered user item.
* ``response.cancel`` is a barge-in (reason ``client_cancelled``).
* ``response.create`` with no user input to answer (a client's greeting) has the agent speak
  first: its first message, else whatever it says from its instructions alone.

Transcription sessions (``?intent=transcription``, or a session of ``"type":
"transcription"``; the beta ``transcription_session.update``) listen the same way and send the
same ``input_audio_buffer.*`` and ``conversation.item.input_audio_transcription.*`` events, but
nothing answers: responses and items are refused, and a stored agent's greeting is not spoken.

Two tasks: the reader here (client events, listening) and the writer
(``openai_realtime_output``), the only sender, which turns the session's events into
``response.*`` events and sends agent audio at playback pace with a short lead, so that a
cancel leaves little in flight. Bad events
get OpenAI's ``error`` event and the socket stays open, until too many arrive in a row.

Not supported (error events say so): tools, out-of-band responses, audio in items, item
retrieve/delete. Accepted without effect: prefix_padding_ms (a fixed 300 ms pre-roll),
idle_timeout_ms, noise reduction, speed, temperature, token limits, tracing; transcription
events are always sent; truncating an item keeps its text in the agent's history.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import replace
from typing import Any, Final

from aiohttp import web

from ..engines.agents.base import AgentConfig, ChatMessage
from ..errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    UnknownVoice,
    VoiceStreamError,
)
from ..pipeline.session import SAMPLE_RATE, ConversationHooks, ConversationSession
from ..protocols import openai_realtime as oa
from ..protocols.openai_audio import resolve_voice
from ..protocols.openai_realtime_events import ServerEvents, dump
from ..rest.resources import AGENTS, CONVERSATIONS, METRICS, REGISTRY, SETTINGS, USAGE
from ..store.keys import Principal
from .context import principal_of
from .convai_common import session_deps
from .openai_realtime_input import RealtimeInput
from .openai_realtime_output import RealtimeOutput
from .ws_common import close_with_error, open_websocket, read_messages, run_socket_tasks

__all__ = ["REALTIME_PATH", "add_openai_realtime_routes", "ws_openai_realtime"]

REALTIME_PATH = "/openai/v1/realtime"
_MAX_BAD_EVENTS: Final = 50  # in a row: a client this lost is closed
_CLIENT_ERRORS = (BadRequest, ProtocolError, NotFound)

Event = dict[str, Any]


def add_openai_realtime_routes(app: web.Application) -> None:
    """Mount ``GET /openai/v1/realtime`` (WebSocket)."""
    app.router.add_get(REALTIME_PATH, ws_openai_realtime)


async def ws_openai_realtime(request: web.Request) -> web.StreamResponse:
    rt = request.app
    # "realtime": what browsers offer, beside their key (or the key alone).
    ws = await open_websocket(request, rt[SETTINGS], ("realtime",))
    beta = "realtime=v1" in request.headers.get("OpenAI-Beta", "").replace(" ", "").lower()
    events = ServerEvents("beta" if beta else "ga")
    principal = principal_of(request)
    try:
        session = await _open_session(rt, principal, request.query.get("agent_id"))
    except VoiceStreamError as err:
        # OpenAI answers a bad connection (an unknown model) with an error event, then closes.
        await _close_with(rt, ws, events, err)
        return ws
    kind: oa.SessionKind = (
        "transcription" if request.query.get("intent") == "transcription" else "realtime"
    )
    socket = _RealtimeSocket(rt, ws, principal, session, events, request.query.get("model"), kind)
    rt[METRICS].active_streams.labels("openai_realtime").inc()
    try:
        await socket.run()
    finally:
        rt[METRICS].active_streams.labels("openai_realtime").dec()
        await socket.close()
    return ws


def _too_long(message: str, param: str | None = None) -> BadRequest:
    return oa.bad_request(message, param=param, code="conversation_too_long")


async def _close_with(
    rt: web.Application, ws: web.WebSocketResponse, events: ServerEvents, err: VoiceStreamError
) -> None:
    rt[METRICS].errors.labels(err.code).inc()
    await close_with_error(ws, err, lambda e: dump(events.error(e)))


async def _open_session(
    rt: web.Application, principal: Principal, agent_id: str | None
) -> ConversationSession:
    """The conversation with the requested agent, or with an unsaved one of the workspace."""
    workspace = str(principal.workspace_id)
    stored: str | None = None
    if agent_id:
        try:
            agent = await rt[AGENTS].get_config(workspace, agent_id)
        except NotFound as err:
            err.details.update(param="agent_id", openai_code="agent_not_found")
            raise
        stored = agent.id
    else:
        # Never stored: it has no documents, and its conversation names no agent.
        agent = AgentConfig(
            id=str(uuid.uuid4()),
            workspace_id=workspace,
            name="OpenAI Realtime",
            voice=rt[SETTINGS].default_voice,
        )
    rt[REGISTRY].voice(agent.voice)  # an agent whose voice is gone fails before any record
    conversation_id = await rt[CONVERSATIONS].create(workspace, stored, None, "openai_realtime")

    async def add_turn(role: str, text: str, interrupted: bool) -> None:
        await rt[CONVERSATIONS].add_turn(conversation_id, role, text, interrupted=interrupted)

    async def nothing(*_: Any) -> None:
        """No end user (no long-term memory) and no resuming: nothing else to keep."""

    deps = session_deps(rt, agent, silence_timeout_s=0)  # OpenAI never hangs up on silence
    hooks = ConversationHooks(add_turn=add_turn, remember=nothing, save_state=nothing)
    return ConversationSession(deps, agent, hooks, conversation_id=conversation_id)


class _RealtimeSocket:
    def __init__(
        self,
        rt: web.Application,
        ws: web.WebSocketResponse,
        principal: Principal,
        session: ConversationSession,
        events: ServerEvents,
        model: str | None,
        kind: oa.SessionKind,
    ) -> None:
        self.rt = rt
        self.ws = ws
        self.principal = principal
        self.session = session
        self.events = events
        self.session_id = oa.new_id("sess")
        self.conversation_ref = "conv_" + session.conversation_id.replace("-", "")
        self.cfg = oa.SessionConfig(
            dialect=events.dialect,
            kind=kind,
            model=(model or "gpt-realtime")[:200],
            instructions=session.agent.instructions,
            voice=session.agent.voice,
        )
        self.voice_id = session.agent.voice
        self.pending: list[str] = []  # user input no response has answered yet
        # What conversation.item.create added, against the conversation's caps.
        self.created_items = 0
        self.created_chars = 0
        self.voice_locked = False  # OpenAI keeps the voice once the session has spoken
        self.greeted = False  # the first event that went through decides on the greeting
        self.bad_events = 0
        self.failed = False
        self.out = RealtimeOutput(ws, session, events, self.cfg, self.conversation_ref, rt[METRICS])
        self.input = RealtimeInput(rt, self.out, events, self.cfg, self._user_turn)

    # ---- lifetime ---------------------------------------------------------------------------

    async def run(self) -> None:
        self.out.emit(self.events.session_created(self.cfg, self.session_id))
        self.out.emit(self.events.conversation_created(self.conversation_ref))
        self.input.start()
        tasks = {"realtime-read": self._read(), "realtime-write": self.out.run()}
        await run_socket_tasks(self.ws, tasks, self._fail)

    async def _fail(self, err: VoiceStreamError) -> None:
        self.failed = True
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.out.flush()  # the errors that led here, before the one that closes
        await _close_with(self.rt, self.ws, self.events, err)

    async def close(self) -> None:
        await self.input.close()
        await self.session.close()
        if self.input.input_samples:
            seconds = self.input.input_samples / SAMPLE_RATE
            await self.rt[USAGE].record(self.principal, "stt_seconds", seconds)
        if self.out.spoken_chars:
            await self.rt[USAGE].record(self.principal, "tts_characters", self.out.spoken_chars)
        status = "failed" if self.failed else "ended"
        await self.rt[CONVERSATIONS].end(self.session.conversation_id, status)

    # ---- reading ----------------------------------------------------------------------------

    def _reject(self, err: VoiceStreamError) -> None:
        """Tell the client what was wrong with its event; keep the socket unless it is lost."""
        self.rt[METRICS].errors.labels(err.code).inc()
        self.out.emit(self.events.error(err))
        self.bad_events += 1
        if self.bad_events >= _MAX_BAD_EVENTS:
            raise ProtocolError(f"{self.bad_events} invalid events in a row")

    async def _read(self) -> None:
        # A bad or oversized event is answered and the session reads on, as OpenAI's does.
        await read_messages(
            self.ws, self.rt[SETTINGS].max_ws_message_bytes, self._on_message, too_large=self._big
        )

    async def _on_message(self, data: str | bytes) -> bool:
        if isinstance(data, bytes):
            self._reject(
                oa.bad_request(
                    "binary frames are not part of the Realtime API: send JSON text events",
                    code="invalid_message",
                )
            )
        else:
            await self._take(data)
        return False  # the client ends a Realtime session by closing the socket

    async def _big(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self._on_message(data)  # binary is refused as such, whatever its size
            return
        limit = self.rt[SETTINGS].max_ws_message_bytes
        self._reject(
            PayloadTooLarge(
                f"event exceeds the limit of {limit} bytes: append audio in smaller pieces",
                details={"openai_code": "payload_too_large"},
            )
        )

    async def _take(self, raw: str) -> None:
        try:
            event = oa.parse_client_event(raw)
            try:
                await self._handle(event)
            except _CLIENT_ERRORS as err:
                if event.event_id is not None:  # the error names the event that caused it
                    err.details.setdefault("event_id", event.event_id)
                raise
        except _CLIENT_ERRORS as err:
            self._reject(err)
        else:
            self.bad_events = 0

    async def _handle(self, event: oa.ClientEvent) -> None:
        match event:
            case oa.SessionUpdate():
                await self._update(event.patch, event.transcription_event)
            case oa.AudioAppend(audio=audio):
                await self.input.append(audio)
            case oa.AudioCommit():
                await self.input.commit()
            case oa.AudioClear():
                await self.input.clear()
            case oa.ItemCreate():
                self._only_in_conversations("conversation.item.create")
                self._create_item(event)
            case oa.ItemTruncate(item_id=item_id, content_index=index, audio_end_ms=end_ms):
                self.out.emit(self.events.item_truncated(item_id, index, end_ms))
            case oa.ResponseCreate(instructions=instructions, output_modalities=modalities):
                self._only_in_conversations("response.create")
                self._check_idle()
                await self._respond(instructions, modalities)
            case oa.ResponseCancel(response_id=response_id):
                self._cancel(response_id)
        # A stored agent's greeting, once the client has set its formats and voice; a client
        # that starts by asking for a response gets that response instead.
        if not self.greeted:
            self.greeted = True
            if (
                isinstance(event, oa.SessionUpdate | oa.AudioAppend)
                and self.cfg.kind == "realtime"
                and self.session.agent.first_message
            ):
                self.voice_locked = True
                await self.session.greet()

    # ---- session.update ---------------------------------------------------------------------

    async def _update(self, patch: oa.SessionPatch, transcription_event: bool = False) -> None:
        """Validate the whole update, then apply it: a refused update changes nothing."""
        if patch.kind is not None and patch.kind != self.cfg.kind and self._in_use:
            raise oa.bad_request(
                f"the session type cannot change to '{patch.kind}' once the session is in use",
                param="session.type",
            )
        voice_id = voice_name = None
        if patch.voice is not None:
            voice_id = resolve_voice(
                patch.voice, self.rt[REGISTRY].voices(), self.rt[SETTINGS].default_voice
            )
            where = "session.voice" if patch.dialect == "beta" else "session.audio.output.voice"
            try:
                self.rt[REGISTRY].voice(voice_id)
            except UnknownVoice as err:
                err.details.update(param=where, openai_code="invalid_value")
                raise
            if self.voice_locked and voice_id != self.voice_id:
                raise oa.bad_request(
                    "the voice cannot change once the session has spoken",
                    param=where,
                    code="cannot_update_voice",
                )
            voice_name = patch.voice if isinstance(patch.voice, str) else voice_id
        cfg = self.cfg.updated(patch, voice_name)
        if patch.dialect is not None:
            self.events.dialect = patch.dialect
        if voice_id is not None:
            self.session.set_voice(voice_id)
            self.session.agent = replace(self.session.agent, voice=voice_id)
            self.voice_id = voice_id
        if patch.instructions is not None:
            self.session.agent = replace(self.session.agent, instructions=patch.instructions)
        await self.input.reconfigure(cfg)
        self.cfg = self.out.cfg = cfg
        self.out.emit(
            self.events.session_updated(
                cfg, self.session_id, transcription_event=transcription_event
            )
        )

    @property
    def _in_use(self) -> bool:
        """Audio or items have gone into the session (its type is settled by then)."""
        return bool(self.input.input_samples or self.out.last_item_id or self.voice_locked)

    def _only_in_conversations(self, event: str) -> None:
        if self.cfg.kind == "transcription":
            raise oa.bad_request(
                f"{event} is not available in a transcription session: it transcribes its "
                "input audio and generates no responses",
                param="type",
                code="unsupported_event",
            )

    async def _user_turn(self, text: str) -> None:
        """A transcribed user turn of a conversation: answered now, or kept for response.create."""
        s = self.rt[SETTINGS]
        if (
            len(self.pending) >= s.realtime_max_items
            or sum(map(len, self.pending)) + len(text) > s.realtime_max_chars
        ):
            # Turns that are never answered (manual mode without response.create) would pile
            # up for as long as the client talks.
            raise _too_long(
                "too much user input is waiting for a response: send response.create first"
            )
        self.pending.append(text)
        td = self.cfg.turn_detection
        if td is not None and td.create_response:
            await self._respond(None, None)

    # ---- items and responses ----------------------------------------------------------------

    def _create_item(self, ev: oa.ItemCreate) -> None:
        s = self.rt[SETTINGS]
        if (
            self.created_items >= s.realtime_max_items
            or self.created_chars + len(ev.text) > s.realtime_max_chars
        ):
            # Items are never deleted here: without a cap each one would stay in memory (and
            # in every later request to the agent) for the rest of the session.
            raise _too_long(
                f"the conversation holds its limit of {s.realtime_max_items} created items or "
                f"{s.realtime_max_chars} characters: start a new session",
                param="item",
            )
        self.created_items += 1
        self.created_chars += len(ev.text)
        item_id = ev.item_id or oa.new_id("item")
        match ev.role:
            case "user":
                self.pending.append(ev.text)
            case "assistant" | "system":
                # Context for the agent's next answers (an LLM sees it; retrieval does not).
                self.session.history.append(ChatMessage(ev.role, ev.text))
        item = self.events.text_item(item_id, ev.role, ev.text)
        self.out.emit(self.events.item_added(item, ev.previous_item_id or self.out.last_item_id))
        for event in self.events.item_done(item):
            self.out.emit(event)
        self.out.last_item_id = item_id

    @property
    def _responding(self) -> bool:
        return self.out.responding

    def _check_idle(self) -> None:
        if self._responding:
            raise oa.bad_request(
                "the conversation already has an active response: wait for response.done or "
                "send response.cancel",
                code="conversation_already_has_active_response",
            )

    async def _respond(
        self, instructions: str | None, modalities: tuple[oa.Modality, ...] | None
    ) -> None:
        """Answer every pending user input as one turn; with none, the agent speaks first."""
        text = " ".join(self.pending)
        self.pending.clear()
        self.out.plan((modalities or self.cfg.output_modalities)[0])
        self.voice_locked = True
        agent = self.session.agent
        if instructions is not None:
            # The request takes the agent as it is now; the override lasts this turn only.
            self.session.agent = replace(agent, instructions=instructions)
        try:
            if text:
                await self.session.push_text(text)
            else:
                # OpenAI's model answers a bare response.create too (a client's greeting).
                await self.session.respond_unprompted()
        finally:
            self.session.agent = agent

    def _cancel(self, response_id: str | None) -> None:
        current = self.out.response_id
        if not self._responding or (response_id and current and response_id != current):
            raise oa.bad_request(
                "there is no such response in progress to cancel",
                param="response_id" if response_id else None,
                code="response_cancel_not_active",
            )
        self.out.cancel("client_cancelled")
