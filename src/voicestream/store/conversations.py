"""Conversations and their transcripts (voice sessions with an agent).

Every read takes the workspace id and filters on it, like the agent repository: another
workspace's conversation is ``NotFound``.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store._records import Id, clean, iso, limit_rows, parse_id

__all__ = ["Conversation", "ConversationRepository", "Turn"]

TurnRole = Literal["user", "agent"]


@dataclass(frozen=True, slots=True)
class Turn:
    seq: int
    role: TurnRole
    text: str
    interrupted: bool
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "role": self.role,
            "text": self.text,
            "interrupted": self.interrupted,
            "at": iso(self.at),
        }


@dataclass(frozen=True, slots=True)
class Conversation:
    id: UUID
    workspace_id: UUID
    agent_id: UUID | None
    end_user_id: str | None
    transport: str
    started_at: datetime
    ended_at: datetime | None
    status: str
    turn_count: int
    turns: tuple[Turn, ...] = field(default=())

    def to_dict(self, *, with_turns: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": str(self.id),
            "agent_id": str(self.agent_id) if self.agent_id is not None else None,
            "end_user_id": self.end_user_id,
            "transport": self.transport,
            "status": self.status,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "turn_count": self.turn_count,
        }
        if with_turns:
            body["turns"] = [t.to_dict() for t in self.turns]
        return body


_CONVERSATION_COLUMNS = """
    id, workspace_id, agent_id, end_user_id, transport, started_at, ended_at, status, turn_count
"""


def _conversation(row: db.Record, turns: Sequence[db.Record] = ()) -> Conversation:
    return Conversation(
        id=row["id"],
        workspace_id=row["workspace_id"],
        agent_id=row["agent_id"],
        end_user_id=row["end_user_id"],
        transport=row["transport"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        status=row["status"],
        turn_count=row["turn_count"],
        turns=tuple(
            Turn(
                seq=t["seq"],
                role=t["role"],
                text=t["text"],
                interrupted=t["interrupted"],
                at=t["at"],
            )
            for t in turns
        ),
    )


class ConversationRepository:
    """Conversations and their transcripts, written by the session as it goes."""

    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def create(
        self, workspace_id: Id, agent_id: Id | None, end_user_id: str | None, transport: str
    ) -> str:
        """Start a conversation (status ``active``); returns its id as a string."""
        new_id = await self._pool.fetchval(
            "INSERT INTO conversations (workspace_id, agent_id, end_user_id, transport) "
            "VALUES ($1, $2, $3, $4) RETURNING id",
            parse_id(workspace_id, "workspace"),
            parse_id(agent_id, "agent") if agent_id is not None else None,
            end_user_id,
            transport,
        )
        return str(new_id)

    async def add_turn(
        self, conversation_id: Id, role: str, text: str, *, interrupted: bool = False
    ) -> int:
        """Append a turn; returns its sequence number (1, 2, …). Safe for concurrent writers."""
        if role not in ("user", "agent"):
            raise ValidationFailed(f"turn role must be 'user' or 'agent', not {role!r}")
        seq = await self._pool.fetchval(
            """
            WITH c AS (
                UPDATE conversations SET turn_count = turn_count + 1 WHERE id = $1
                RETURNING id, turn_count
            )
            INSERT INTO conversation_turns (conversation_id, seq, role, text, interrupted)
            SELECT id, turn_count, $2, $3, $4 FROM c
            RETURNING seq
            """,
            parse_id(conversation_id, "conversation"),
            role,
            clean(text),
            interrupted,
        )
        if seq is None:
            raise NotFound(f"no conversation with id {str(conversation_id)!r}")
        result: int = seq
        return result

    async def end(self, conversation_id: Id, status: str = "ended") -> None:
        """Mark it over (``ended``, ``disconnected``, ``failed``, …); the first end time stays."""
        if not status:
            raise ValidationFailed("status must not be empty")
        await self._pool.execute(
            "UPDATE conversations SET status = $2, ended_at = coalesce(ended_at, now()) "
            "WHERE id = $1",
            parse_id(conversation_id, "conversation"),
            status,
        )

    async def reopen(self, conversation_id: Id) -> None:
        """A resumed conversation is active again."""
        await self._pool.execute(
            "UPDATE conversations SET status = 'active', ended_at = NULL WHERE id = $1",
            parse_id(conversation_id, "conversation"),
        )

    async def get(self, workspace_id: Id, conversation_id: Id) -> Conversation:
        """One conversation with its turns in order. Raises NotFound (also cross-tenant)."""
        ws = parse_id(workspace_id, "workspace")
        cid = parse_id(conversation_id, "conversation")
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations "
                "WHERE id = $1 AND workspace_id = $2",
                cid,
                ws,
            )
            if row is None:
                raise NotFound(f"no conversation with id {str(conversation_id)!r}")
            turns = await conn.fetch(
                "SELECT seq, role, text, interrupted, at FROM conversation_turns "
                "WHERE conversation_id = $1 ORDER BY seq",
                cid,
            )
        return _conversation(row, turns)

    async def list(
        self,
        workspace_id: Id,
        *,
        agent_id: Id | None = None,
        end_user_id: str | None = None,
        limit: int = 50,
        before: datetime | None = None,
    ) -> builtins.list[Conversation]:
        """Newest first, without turns; ``before`` pages back (pass the last ``started_at``)."""
        rows = await self._pool.fetch(
            f"""
            SELECT {_CONVERSATION_COLUMNS} FROM conversations
            WHERE workspace_id = $1
              AND ($2::uuid IS NULL OR agent_id = $2)
              AND ($3::text IS NULL OR end_user_id = $3)
              AND ($4::timestamptz IS NULL OR started_at < $4)
            ORDER BY started_at DESC, id DESC
            LIMIT $5
            """,
            parse_id(workspace_id, "workspace"),
            parse_id(agent_id, "agent") if agent_id is not None else None,
            end_user_id,
            before,
            limit_rows(limit),
        )
        return [_conversation(row) for row in rows]
