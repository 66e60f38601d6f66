"""Opening a conversation for any transport: who may talk to which agent, a new or resumed
conversation, and the session wired to persistence, memory and live state.

Live state (the agent's history, the conversation id) sits in Redis under the session id while
the client is connected, and for a grace period after it drops, so a client that reconnects
with ``session_id`` picks up the same conversation. PostgreSQL holds the durable transcript.

A session id alone resumes nothing: the state records who opened the conversation (the API
key, the end user a ticket vouched for, the ticket itself, or an anonymous visitor), and only
the same opener may resume it; to anyone else it is unknown. One connection at a time holds a
session (``session_lock``), so two resumes never write one conversation at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.exceptions
from aiohttp import web

from ..engines.agents.base import AgentConfig, ChatMessage
from ..errors import (
    AuthError,
    Forbidden,
    NotFound,
    ProtocolError,
    ServiceUnavailable,
    ValidationFailed,
)
from ..identity.page_origins import origin_unsettled, require_origin
from ..identity.tickets import (
    END_USER_ID,
    END_USER_RULE,
    Family,
    Ticket,
    check_minter,
    family_of,
    redeem_ticket,
    release_ticket,
    ticket_holder,
    verify_ticket,
)
from ..pipeline import events
from ..pipeline.session import SAMPLE_RATE, ConversationHooks, ConversationSession, SessionDeps
from ..protocols import convai
from ..rest.moderation import MODERATOR
from ..rest.resources import (
    AGENT_RESOLVER,
    AGENTS,
    API_KEYS,
    CONVERSATIONS,
    KNOWLEDGE,
    METRICS,
    POOL,
    REDIS,
    REGISTRY,
    SECRET_KEY,
    SETTINGS,
    STT_EXECUTOR,
    TTS_EXECUTORS,
    USAGE,
)
from ..store.keys import Principal
from ..store.members import MemberRepository
from .context import optional_principal
from .session_lock import LiveLock
from .socket_registry import bind_ticket_minter
from .stream_admission import admit_stream

__all__ = [
    "ConversationLease",
    "apply_turn_message",
    "caller_tag",
    "open_conversation",
    "require_conversation_origin",
    "session_deps",
]

log = logging.getLogger(__name__)

_LIVE_TTL_S = 24 * 3600  # a live session's state outlives any sane call


def _state_key(session_id: str) -> str:
    return f"vs:convai:session:{session_id}"


@dataclass
class ConversationLease:
    rt: web.Application
    session: ConversationSession
    resumed: bool
    transport: str
    # Who opened it: "key:<key id>", "ticket:<jti>" or "public" (see ``caller_tag``).
    owner: str = "public"
    keyed: bool = False  # an API key on the very call that opened it
    live: LiveLock | None = None  # this connection's hold on the session id
    redeemed: Ticket | None = None  # the ticket this connection used up, if it did
    # The workspace's stream slot, held until the conversation closes; and what its minutes
    # are metered to, from when it opened.
    admission: contextlib.AsyncExitStack | None = None
    # (workspace, key, signed-in user): the seat is the user, else the key's maker.
    metered: tuple[uuid.UUID, uuid.UUID | None, uuid.UUID | None] | None = None
    opened_at: float = field(default_factory=time.monotonic)

    def session_event(self) -> dict[str, Any]:
        event = events.session_info(
            session_id=self.session.id,
            conversation_id=self.session.conversation_id,
            agent_id=self.session.agent.id,
            resumed=self.resumed,
            sample_rate=SAMPLE_RATE,
        )
        # Tells the client whether its end_user_id was believed (see ``claim_end_user``).
        event["long_term_memory"] = self.session.end_user_id is not None
        return event

    def claim_end_user(self, claimed: str) -> None:
        """An end user named after the conversation opened (a ``config`` message).

        Believed from a key-authenticated connection only; otherwise ignored, and the
        conversation stays anonymous (or keeps its ticket's end user), as ``open_conversation``
        does with one named on opening.
        """
        if not END_USER_ID.fullmatch(claimed):
            raise ProtocolError(END_USER_RULE)
        if self.keyed:
            self.session.end_user_id = claimed
        else:
            log.debug("session %s: unvouched end_user_id ignored", self.session.id)

    async def close(self, *, ended: bool) -> None:
        """``ended``: the client hung up on purpose; otherwise the session stays resumable.

        Every step runs whatever the one before did (Redis down, a session that fails to
        close): a conversation left ``active`` would never end.
        """
        async with contextlib.AsyncExitStack() as steps:
            # Run last to first: the live lock goes only once the state is settled.
            if self.live is not None:
                steps.push_async_callback(self.live.release)
            if self.admission is not None:
                steps.push_async_callback(self.admission.aclose)
            steps.push_async_callback(self._meter)
            steps.push_async_callback(self._settle_state, ended)
            steps.push_async_callback(self.session.close)
            status = "ended" if ended else "disconnected"
            await self.rt[CONVERSATIONS].end(self.session.conversation_id, status)

    async def _meter(self) -> None:
        if self.metered is None:
            return
        seconds = time.monotonic() - self.opened_at
        try:
            await self.rt[USAGE].record(self.metered, "conversation_seconds", seconds)
        except ServiceUnavailable as exc:  # the database is away: these minutes go unbilled
            log.warning(
                "session %s: %.1f s of conversation not metered: %s", self.session.id, seconds, exc
            )

    async def give_back_ticket(self) -> None:
        """The call never started (a bad WebRTC offer): the ticket it used may open another."""
        if self.redeemed is not None:
            await release_ticket(self.rt[REDIS], self.redeemed)
            self.redeemed = None

    async def _settle_state(self, ended: bool) -> None:
        key = _state_key(self.session.id)
        try:
            if ended:
                await self.rt[REDIS].delete(key)
            else:
                await self.rt[REDIS].expire(key, int(self.rt[SETTINGS].convai_resume_grace_seconds))
        except (redis.exceptions.RedisError, OSError) as exc:
            # Redis down: the state lapses with its own TTL; the conversation has ended anyway.
            log.warning("session %s: live state not settled: %s", self.session.id, exc)


@dataclass(frozen=True, slots=True)
class _Access:
    """What authorized a conversation: an API key on this call, a ticket, or a public agent."""

    agent: AgentConfig
    principal: Principal | None
    ticket: Ticket | None

    @property
    def owner(self) -> str:
        if self.principal is not None:
            return self.principal.tag
        return f"ticket:{self.ticket.jti}" if self.ticket is not None else "public"

    @property
    def opener(self) -> str:
        """Who may resume what this call opens: the same key; for a ticket, the end user it
        vouches for (a fresh ticket for them, say after a page reload) or else that very
        ticket; for an anonymous visitor, anyone holding the session id."""
        if self.principal is not None:
            return self.principal.tag
        if self.ticket is not None:
            if self.ticket.end_user_id is not None:
                return f"end_user:{self.ticket.end_user_id}"
            return f"ticket:{self.ticket.jti}"
        return "anonymous"

    def believe(self, claimed: str | None) -> str | None:
        """The end user whose long-term memory this conversation may read and write.

        Anyone may claim any ``end_user_id``; only a key-authenticated call, or a ticket that a
        key-authenticated call minted, vouches for one. Without that the conversation is
        anonymous (no memory), and a ticket's own end user always wins.
        """
        if self.ticket is not None:
            return self.ticket.end_user_id
        return claimed if self.principal is not None else None


async def apply_turn_message(session: ConversationSession, msg: convai.ClientMessage) -> bool:
    """The messages every conversation transport handles alike; True when the client hung up.

    ``config`` is the transport's own business (formats and timing differ per transport).
    """
    match msg:
        case convai.UserText(text):
            await session.push_text(text)
        case convai.Dtmf(digits):
            await session.push_dtmf(digits)
        case convai.End():
            return True
    return False


async def open_conversation(
    request: web.Request,
    *,
    agent_id: str,
    session_id: str | None,
    end_user_id: str | None,
    transport: str,
    ticket: str | None = None,
    customize: Callable[[AgentConfig], AgentConfig] | None = None,
    ready: Callable[[], None] | None = None,
) -> ConversationLease:
    """Authorize, then create or resume the conversation. Raises before any upgrade.

    ``customize``: this conversation's changes to the stored agent (a protocol's overrides).
    ``ready``: the transport's last check once the caller is authorized, before a ticket is
    used up or anything is created.
    """
    rt = request.app
    if not agent_id:
        raise ValidationFailed("agent_id is required")
    if end_user_id is not None and not END_USER_ID.fullmatch(end_user_id):
        raise ValidationFailed(END_USER_RULE)
    access = await _authorize(request, rt, agent_id, ticket, family_of(transport))
    if ready is not None:
        ready()
    workspace_id = uuid.UUID(access.agent.workspace_id)
    admission = contextlib.AsyncExitStack()
    caller = access.principal
    seat = (workspace_id, caller.key_id, caller.user_id) if caller is not None else None
    await admit_stream(request, workspace_id, ("conversation_seconds",), admission, subject=seat)
    agent = access.agent
    if customize is not None:
        agent = customize(agent)

    history: list[ChatMessage] = []
    resumed = False
    redeemed: Ticket | None = None
    live: LiveLock | None = None
    try:
        if session_id:
            state = await _load_state(rt, session_id)
            if (
                state.get("workspace_id") != agent.workspace_id
                or state.get("agent_id") != agent.id
                or state.get("opener") != access.opener
            ):
                raise NotFound("unknown or expired session")
            live = await LiveLock.acquire(rt[REDIS], session_id, wait=True)
            # Reconnecting with the ticket that opened the conversation is not a second use.
            if access.ticket is not None and access.ticket.jti != state.get("ticket_jti"):
                await redeem_ticket(rt[REDIS], access.ticket)
                redeemed = access.ticket
            conversation_id = str(state["conversation_id"])
            end_user_id = state.get("end_user_id") or access.believe(end_user_id)
            ticket_jti = state.get("ticket_jti")
            history = [ChatMessage(m["role"], m["content"]) for m in state.get("history", [])]
            resumed = True
            await rt[CONVERSATIONS].reopen(conversation_id)
        else:
            session_id = uuid.uuid4().hex
            live = await LiveLock.acquire(rt[REDIS], session_id)
            if access.ticket is not None:
                # Used up first, atomically, so two racing callers never both get in; given
                # back below when nothing was opened after all.
                await redeem_ticket(rt[REDIS], access.ticket)
                redeemed = access.ticket
            ticket_jti = access.ticket.jti if access.ticket is not None else None
            end_user_id = access.believe(end_user_id)
            conversation_id = await rt[CONVERSATIONS].create(
                agent.workspace_id, agent.id, end_user_id, transport
            )

        session = ConversationSession(
            session_deps(rt, agent, silence_timeout_s=rt[SETTINGS].convai_silence_timeout_seconds),
            agent,
            _hooks(rt, agent, session_id, conversation_id, ticket_jti, access.opener),
            session_id=session_id,
            conversation_id=conversation_id,
            end_user_id=end_user_id,
            history=history,
        )
        await _save_state(rt, session, history, ticket_jti, access.opener)
    except BaseException:
        async with contextlib.AsyncExitStack() as undo:
            undo.push_async_callback(admission.aclose)
            if live is not None:
                undo.push_async_callback(live.release)
            if redeemed is not None:
                undo.push_async_callback(release_ticket, rt[REDIS], redeemed)
        raise
    assert live is not None  # taken on both paths above
    live.keep_alive()
    return ConversationLease(
        rt,
        session,
        resumed,
        transport,
        owner=access.owner,
        keyed=access.principal is not None,
        live=live,
        redeemed=redeemed,
        admission=admission,
        metered=(
            workspace_id,
            access.principal.key_id if access.principal else None,
            access.principal.user_id if access.principal else None,
        ),
    )


def _workspace_of(agent: AgentConfig) -> uuid.UUID | None:
    try:
        return uuid.UUID(agent.workspace_id)
    except ValueError:  # an agent built in code, in no stored workspace
        return None


def session_deps(
    rt: web.Application, agent: AgentConfig, *, silence_timeout_s: float
) -> SessionDeps:
    """What a conversation session needs from the runtime: engines, executors, VAD settings."""
    return SessionDeps(
        registry=rt[REGISTRY],
        tts_executors=rt[TTS_EXECUTORS],
        stt_executor=rt[STT_EXECUTOR],
        agent_engine=rt[AGENT_RESOLVER].engine_for(agent),
        vad_threshold=rt[SETTINGS].vad_threshold,
        vad_min_silence_ms=rt[SETTINGS].vad_min_silence_ms,
        vad_min_speech_ms=rt[SETTINGS].vad_min_speech_ms,
        silence_timeout_s=silence_timeout_s,
        history_max_messages=rt[SETTINGS].convai_history_max_messages,
        history_max_chars=rt[SETTINGS].convai_history_max_chars,
        observe_stage=lambda stage, s: rt[METRICS].conversation_stage.labels(stage).observe(s),
        screen_reply=rt[MODERATOR].agent_screen_for(_workspace_of(agent)),
    )


def caller_tag(request: web.Request, ticket: str | None) -> str:
    """Who is calling, in the terms of ``ConversationLease.owner``: the API key on this call,
    else the ticket it holds (expired or used up alike), else ``public``."""
    principal = optional_principal(request)
    if principal is not None:
        return principal.tag
    if ticket:
        jti = ticket_holder(request.app[SECRET_KEY], ticket)
        if jti is not None:
            return f"ticket:{jti}"
    return "public"


async def _authorize(
    request: web.Request, rt: web.Application, agent_id: str, ticket: str | None, family: Family
) -> _Access:
    principal = optional_principal(request)
    if principal is not None:
        agent = await rt[AGENTS].get_config(str(principal.workspace_id), agent_id)
        return _Access(agent, principal, None)
    token = ticket or request.query.get("ticket")
    if token:
        claims = verify_ticket(rt[SECRET_KEY], token, family=family)
        if claims.agent_id != agent_id:
            raise Forbidden("the ticket was issued for another agent")
        await require_origin(request, claims.workspace_id)
        await check_minter(rt[API_KEYS], MemberRepository(rt[POOL]), claims)
        agent = await rt[AGENTS].get_config(claims.workspace_id, agent_id)
        # What it opens closes when the minter's key is revoked or the minter is removed.
        bind_ticket_minter(request, claims)
        return _Access(agent, None, claims)
    try:
        agent = await rt[AGENTS].get_public_config(agent_id)
    except NotFound:
        raise AuthError(
            "this agent is not public: send an API key, or a ticket from POST /v1/convai/tickets"
        ) from None
    await require_origin(request, agent.workspace_id)
    return _Access(agent, None, None)


async def require_conversation_origin(
    request: web.Request, agent_id: str, ticket: str | None, family: Family
) -> None:
    """For a socket that opens before ``open_conversation`` runs (ElevenLabs' reads its first
    message first): check a page's origin against the workspace the call would act for, before
    the upgrade. A ticket or agent that says no workspace leaves the origin unsettled, and the
    upgrade is refused (``identity.page_origins``)."""
    if not origin_unsettled(request):
        return
    rt = request.app
    if ticket:
        try:
            workspace_id = verify_ticket(rt[SECRET_KEY], ticket, family=family).workspace_id
        except AuthError:
            return
    else:
        try:
            workspace_id = (await rt[AGENTS].get_public_config(agent_id)).workspace_id
        except NotFound:
            return
    await require_origin(request, workspace_id)


def _hooks(
    rt: web.Application,
    agent: AgentConfig,
    session_id: str,
    conversation_id: str,
    ticket_jti: str | None,
    opener: str,
) -> ConversationHooks:
    async def add_turn(role: str, text: str, interrupted: bool) -> None:
        await rt[CONVERSATIONS].add_turn(conversation_id, role, text, interrupted=interrupted)

    async def remember(text: str, end_user_id: str | None) -> None:
        if end_user_id is not None:  # anonymous users have no long-term memory
            await rt[KNOWLEDGE].remember(agent, end_user_id, text, conversation_id=conversation_id)

    async def save_state(history: list[ChatMessage], end_user_id: str | None) -> None:
        await rt[REDIS].set(
            _state_key(session_id),
            _state_json(agent, conversation_id, end_user_id, history, ticket_jti, opener),
            ex=_LIVE_TTL_S,
        )

    return ConversationHooks(add_turn=add_turn, remember=remember, save_state=save_state)


def _state_json(
    agent: AgentConfig,
    conversation_id: str,
    end_user_id: str | None,
    history: list[ChatMessage],
    ticket_jti: str | None,
    opener: str,
) -> str:
    return json.dumps(
        {
            "opener": opener,
            "workspace_id": agent.workspace_id,
            "agent_id": agent.id,
            "conversation_id": conversation_id,
            "end_user_id": end_user_id,
            "ticket_jti": ticket_jti,
            "history": [{"role": m.role, "content": m.content} for m in history],
        }
    )


async def _save_state(
    rt: web.Application,
    session: ConversationSession,
    history: list[ChatMessage],
    ticket_jti: str | None,
    opener: str,
) -> None:
    await rt[REDIS].set(
        _state_key(session.id),
        _state_json(
            session.agent, session.conversation_id, session.end_user_id, history, ticket_jti, opener
        ),
        ex=_LIVE_TTL_S,
    )


async def _load_state(rt: web.Application, session_id: str) -> dict[str, Any]:
    if not re.fullmatch(r"[0-9a-f]{32}", session_id):
        raise NotFound("unknown or expired session")
    raw = await rt[REDIS].get(_state_key(session_id))
    if raw is None:
        raise NotFound("unknown or expired session")
    state: dict[str, Any] = json.loads(raw)
    return state
