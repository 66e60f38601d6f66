"""``/v1/convai/sessions``: the workspace's stored conversations, newest first.

Any key of the workspace may read them. A conversation of another workspace, or a malformed
id, answers 404 like one that does not exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel

from ..errors import ValidationFailed
from ..identity.request_principal import principal_of
from ..store.conversations import Conversation, Turn, TurnRole
from .resources import CONVERSATIONS

__all__ = [
    "CONVERSATIONS_PREFIX",
    "ConversationModel",
    "ConversationSummary",
    "SessionList",
    "TurnModel",
    "conversations_app",
]


class TurnModel(BaseModel):
    seq: int
    role: TurnRole
    text: str
    interrupted: bool  # the user barged in while the agent spoke it
    at: datetime

    @classmethod
    def of(cls, turn: Turn) -> TurnModel:
        return cls(
            seq=turn.seq, role=turn.role, text=turn.text, interrupted=turn.interrupted, at=turn.at
        )


class ConversationSummary(BaseModel):
    id: UUID
    agent_id: UUID | None
    end_user_id: str | None
    transport: str
    status: str
    started_at: datetime  # the `before` of the next page
    ended_at: datetime | None
    turn_count: int

    @classmethod
    def of(cls, conversation: Conversation) -> ConversationSummary:
        return cls(
            id=conversation.id,
            agent_id=conversation.agent_id,
            end_user_id=conversation.end_user_id,
            transport=conversation.transport,
            status=conversation.status,
            started_at=conversation.started_at,
            ended_at=conversation.ended_at,
            turn_count=conversation.turn_count,
        )


class ConversationModel(ConversationSummary):
    turns: list[TurnModel]

    @classmethod
    def with_turns(cls, conversation: Conversation) -> ConversationModel:
        summary = ConversationSummary.of(conversation).model_dump()
        return cls(**summary, turns=[TurnModel.of(t) for t in conversation.turns])


class SessionList(BaseModel):
    sessions: list[ConversationSummary]


def _query_limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise ValidationFailed("limit must be an integer from 1 to 500")
    return int(raw)


def _query_before(request: web.Request) -> datetime | None:
    raw = request.query.get("before")
    if raw is None:
        return None
    try:
        before = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed("before must be an ISO 8601 time (a started_at)") from None
    if before.tzinfo is None:
        raise ValidationFailed("before needs a timezone offset")
    return before


async def list_sessions(request: web.Request) -> web.Response:
    """Newest first, without turns; filters: agent_id, end_user_id; paging: limit, before."""
    principal = principal_of(request)
    agent_id = request.query.get("agent_id") or None
    if agent_id is not None:
        try:
            UUID(agent_id)
        except ValueError:
            raise ValidationFailed("agent_id must be a UUID") from None
    conversations = await request.config_dict[CONVERSATIONS].list(
        principal.workspace_id,
        agent_id=agent_id,
        end_user_id=request.query.get("end_user_id") or None,
        limit=_query_limit(request),
        before=_query_before(request),
    )
    body = SessionList(sessions=[ConversationSummary.of(c) for c in conversations])
    return web.json_response(text=body.model_dump_json())


async def get_session(request: web.Request) -> web.Response:
    principal = principal_of(request)
    conversation = await request.config_dict[CONVERSATIONS].get(
        principal.workspace_id, request.match_info["conversation_id"]
    )
    body = ConversationModel.with_turns(conversation)
    return web.json_response(text=body.model_dump_json())


CONVERSATIONS_PREFIX: Final = "/v1/convai/sessions"


def conversations_app() -> web.Application:
    """The sub-app to mount at ``CONVERSATIONS_PREFIX`` (paths relative to it; "" is the
    prefix). The rest of ``/v1/convai/`` (sockets, tickets, WebRTC) stays in the transports."""
    app = web.Application()
    app.add_routes(
        [
            web.get("", list_sessions, allow_head=False),
            web.get("/{conversation_id}", get_session, allow_head=False),
        ]
    )
    return app
