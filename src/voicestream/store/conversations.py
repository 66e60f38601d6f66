"""Conversations and their transcripts (voice sessions with an agent).

Every read takes the workspace id and filters on it, like the agent repository: another
workspace's conversation is ``NotFound``.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from voicestream.errors import NotFound, ServiceUnavailable, ValidationFailed
from voicestream.store import db
from voicestream.store._records import Id, clean, iso, limit_rows, parse_id
from voicestream.store.conversation_outbox import ConversationOutbox, PendingWrite

__all__ = ["Conversation", "ConversationRepository", "Turn"]

log = logging.getLogger(__name__)

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


# Numbered under the conversation row's lock. The write id makes a replay of a write that
# was already stored (a crash mid-replay, an acknowledgement lost in an outage) a no-op.
_INSERT_TURN = """
WITH c AS (
    UPDATE conversations SET turn_count = turn_count + 1, last_seen_at = now()
    WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM conversation_turns WHERE write_id = $5)
    RETURNING id, turn_count
)
INSERT INTO conversation_turns (conversation_id, seq, role, text, interrupted, write_id, at)
SELECT id, turn_count, $2, $3, $4, $5, coalesce($6::timestamptz, now()) FROM c
RETURNING seq
"""

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


@dataclass(slots=True)
class _WriteTurn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


class ConversationRepository:
    """Conversations and their transcripts, written by the session as it goes.

    With an ``outbox``, writes of live conversations (turns, end, reopen) survive a database
    outage: they are queued on local disk and replayed in order when PostgreSQL is back (see
    ``conversation_outbox``). The repository also remembers which conversations this process
    holds open, so ``heartbeat`` can keep them fresh and ``sweep_abandoned`` can close those
    of processes that died.
    """

    def __init__(self, pool: db.Pool, *, outbox: ConversationOutbox | None = None) -> None:
        self._pool = pool
        self._outbox = outbox
        self._live: set[UUID] = set()
        # One writer at a time per conversation, from the outbox check to the write or the
        # queueing: a write that fails and is being queued must not be overtaken by a later
        # one that finds the database back and the outbox not yet holding its elder.
        self._in_order: dict[str, _WriteTurn] = {}

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
        self._live.add(new_id)
        return str(new_id)

    async def add_turn(
        self, conversation_id: Id, role: str, text: str, *, interrupted: bool = False
    ) -> int | None:
        """Append a turn; returns its sequence number (1, 2, …). Safe for concurrent writers.

        None when the database is unreachable and the turn was queued instead: it is stored,
        in order, once the database is back. Raises ServiceUnavailable when it could be
        neither written nor queued, NotFound for an unknown conversation.
        """
        if role not in ("user", "agent"):
            raise ValidationFailed(f"turn role must be 'user' or 'agent', not {role!r}")
        cid = parse_id(conversation_id, "conversation")
        write = PendingWrite.new(
            "turn", str(cid), role=role, text=clean(text), interrupted=interrupted
        )
        return await self._write(write)

    async def end(self, conversation_id: Id, status: str = "ended") -> None:
        """Mark it over (``ended``, ``disconnected``, ``failed``, …); the first end time stays."""
        if not status:
            raise ValidationFailed("status must not be empty")
        cid = parse_id(conversation_id, "conversation")
        self._live.discard(cid)
        await self._write(PendingWrite.new("end", str(cid), status=status))

    async def reopen(self, conversation_id: Id) -> None:
        """A resumed conversation is active again."""
        cid = parse_id(conversation_id, "conversation")
        self._live.add(cid)
        await self._write(PendingWrite.new("reopen", str(cid)))

    # --- liveness ---------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Mark the conversations this process holds as seen now.

        Also takes back one that another process swept as abandoned while ours could not
        reach the database: the socket is still open, so the conversation is not over.
        """
        if not self._live:
            return
        await self._pool.execute(
            "UPDATE conversations SET last_seen_at = now(), status = 'active', ended_at = NULL "
            "WHERE id = ANY($1::uuid[]) AND status IN ('active', 'abandoned')",
            list(self._live),
        )

    async def sweep_abandoned(self, stale_after_s: float) -> int:
        """Close ``active`` conversations nobody has heartbeated for ``stale_after_s``.

        Their process died (or lost its socket without a word): status ``abandoned``, ended
        when last seen. Returns how many were closed.
        """
        rows = await self._pool.fetch(
            """
            UPDATE conversations SET status = 'abandoned', ended_at = last_seen_at
            WHERE status = 'active'
              AND last_seen_at < now() - make_interval(secs => $1)
              AND NOT (id = ANY($2::uuid[]))
            RETURNING id
            """,
            stale_after_s,
            list(self._live),
        )
        return len(rows)

    # --- durable writes ---------------------------------------------------------------------

    async def _write(self, write: PendingWrite) -> int | None:
        turn = self._in_order.setdefault(write.conversation_id, _WriteTurn())
        turn.waiting += 1
        try:
            async with turn.lock:
                return await self._write_in_order(write)
        finally:
            turn.waiting -= 1
            if not turn.waiting:
                del self._in_order[write.conversation_id]

    async def _write_in_order(self, write: PendingWrite) -> int | None:
        outbox = self._outbox
        if outbox is not None and outbox.has_pending():
            # Behind writes that are already waiting: a turn must not overtake its elders.
            await self._queue(outbox, write)
            return None
        try:
            return await self._apply(write, replay=False)
        except ServiceUnavailable:
            if outbox is None:
                raise
            log.warning(
                "database unreachable: conversation %s %s queued for later",
                write.conversation_id,
                write.kind,
            )
            await self._queue(outbox, write)
            return None

    @staticmethod
    async def _queue(outbox: ConversationOutbox, write: PendingWrite) -> None:
        try:
            await outbox.append(write)
        except OSError as exc:
            raise ServiceUnavailable(
                "the conversation could not be recorded: the database is unreachable and "
                "the local outbox cannot be written",
                details={"service": "the database"},
            ) from exc

    async def _apply(self, write: PendingWrite, *, replay: bool) -> int | None:
        cid = UUID(write.conversation_id)
        # A direct write is stamped by the database; a replayed one keeps its real time.
        at = write.time if replay else None
        match write.kind:
            case "turn":
                seq: int | None = await self._pool.fetchval(
                    _INSERT_TURN,
                    cid,
                    write.role,
                    write.text,
                    write.interrupted,
                    UUID(write.write_id),
                    at,
                )
                if seq is None and not replay:
                    raise NotFound(f"no conversation with id {write.conversation_id!r}")
                return seq
            case "end":
                await self._pool.execute(
                    "UPDATE conversations SET status = $2, "
                    "ended_at = coalesce(ended_at, $3::timestamptz, now()) WHERE id = $1",
                    cid,
                    write.status,
                    at,
                )
            case "reopen":
                await self._pool.execute(
                    "UPDATE conversations SET status = 'active', ended_at = NULL, "
                    "last_seen_at = now() WHERE id = $1",
                    cid,
                )
        return None

    async def replay_outbox(self) -> None:
        """Store the queued writes in order. Raises ServiceUnavailable while still down."""
        if self._outbox is not None:
            await self._outbox.replay(self._replay_one)

    async def _replay_one(self, write: PendingWrite) -> None:
        try:
            await self._apply(write, replay=True)
        except (db.PostgresError, ValueError) as exc:
            # Not an outage (those propagate as ServiceUnavailable and are retried): this
            # write can never be stored, and must not hold up the ones behind it.
            # Ids only: the write holds what the user said, which has no place in a log.
            log.error(
                "conversation outbox: dropping %s %s of conversation %s: %s",
                write.kind,
                write.write_id,
                write.conversation_id,
                type(exc).__name__,
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
