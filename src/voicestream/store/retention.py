"""Retention policies: how many days each class of a workspace's data is kept, and the SQL
that finds and removes what has outlived its policy (migration 0024).

The classes are what a person asks to expire: conversation transcripts (the conversation and
its turns), conversation audio, TTS history (items and their audio), job outputs and uploads
(file rows; their bytes are removed by the caller, through the file store). No policy row, or a
class set to None, keeps that class for good. Conversation audio is a class of its own so a
policy can say so, though the server stores none today (only transcripts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from uuid import UUID

from voicestream.store import db

__all__ = [
    "RETENTION_CLASSES",
    "ExpiredFile",
    "RetentionClass",
    "RetentionPolicy",
    "delete_conversations",
    "delete_history_before",
    "expired_conversations",
    "expired_files",
    "get_policy",
    "set_policy",
    "workspaces_with_retention",
]

RetentionClass = Literal[
    "conversation_transcripts", "conversation_audio", "tts_history", "job_outputs", "uploads"
]
RETENTION_CLASSES: Final[tuple[RetentionClass, ...]] = (
    "conversation_transcripts",
    "conversation_audio",
    "tts_history",
    "job_outputs",
    "uploads",
)
MAX_DAYS: Final = 36500
# One pass removes at most this many of a class; the next scheduled run takes the rest.
_BATCH: Final = 1000


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days kept per class; None keeps that class for good."""

    conversation_transcripts: int | None = None
    conversation_audio: int | None = None
    tts_history: int | None = None
    job_outputs: int | None = None
    uploads: int | None = None

    def days(self, kind: RetentionClass) -> int | None:
        value: int | None = getattr(self, kind)
        return value

    def cutoff(self, kind: RetentionClass, now: datetime | None = None) -> datetime | None:
        """Items of ``kind`` created before this instant have expired (None: none ever do)."""
        days = self.days(kind)
        if days is None:
            return None
        return (now or datetime.now(UTC)) - timedelta(days=days)


@dataclass(frozen=True, slots=True)
class ExpiredFile:
    id: UUID
    storage_key: str


_POLICY_COLUMNS: Final = ", ".join(f"{f.name}_days" for f in fields(RetentionPolicy))


async def get_policy(pool: db.Pool | db.Connection, workspace_id: UUID) -> RetentionPolicy:
    row = await pool.fetchrow(
        f"SELECT {_POLICY_COLUMNS} FROM workspace_retention WHERE workspace_id = $1",
        workspace_id,
    )
    if row is None:
        return RetentionPolicy()
    return RetentionPolicy(**{f.name: row[f"{f.name}_days"] for f in fields(RetentionPolicy)})


async def set_policy(
    pool: db.Pool | db.Connection, workspace_id: UUID, policy: RetentionPolicy
) -> RetentionPolicy:
    values = asdict(policy)
    names = [f.name for f in fields(RetentionPolicy)]
    placeholders = ", ".join(f"${i + 2}" for i in range(len(names)))
    updates = ", ".join(f"{name}_days = EXCLUDED.{name}_days" for name in names)
    await pool.execute(
        f"""
        INSERT INTO workspace_retention (workspace_id, {_POLICY_COLUMNS})
        VALUES ($1, {placeholders})
        ON CONFLICT (workspace_id) DO UPDATE SET {updates}, updated_at = now()
        """,
        workspace_id,
        *(values[name] for name in names),
    )
    return policy


async def workspaces_with_retention(pool: db.Pool) -> list[UUID]:
    """Workspaces whose policy expires at least one class (the scheduled runs' workspaces)."""
    classes = " OR ".join(f"{f.name}_days IS NOT NULL" for f in fields(RetentionPolicy))
    rows = await pool.fetch(f"SELECT workspace_id FROM workspace_retention WHERE {classes}")
    return [row["workspace_id"] for row in rows]


async def delete_history_before(pool: db.Pool, workspace_id: UUID, cutoff: datetime) -> int:
    """Remove TTS history items (their audio goes with them) created before ``cutoff``."""
    deleted = await pool.fetch(
        """
        DELETE FROM history_items WHERE id IN (
            SELECT id FROM history_items
            WHERE workspace_id = $1 AND created_at < $2 LIMIT $3
        ) RETURNING id
        """,
        workspace_id,
        cutoff,
        _BATCH,
    )
    return len(deleted)


async def expired_conversations(pool: db.Pool, workspace_id: UUID, cutoff: datetime) -> list[UUID]:
    """Conversations that ended (or, never ended, started) before ``cutoff`` and are not live."""
    rows = await pool.fetch(
        """
        SELECT id FROM conversations
        WHERE workspace_id = $1 AND status <> 'active'
          AND coalesce(ended_at, started_at) < $2
        ORDER BY started_at LIMIT $3
        """,
        workspace_id,
        cutoff,
        _BATCH,
    )
    return [row["id"] for row in rows]


async def delete_conversations(pool: db.Pool, workspace_id: UUID, ids: list[UUID]) -> int:
    """Remove these conversations with their turns (another workspace's ids match nothing)."""
    if not ids:
        return 0
    deleted = await pool.fetch(
        "DELETE FROM conversations WHERE workspace_id = $1 AND id = ANY($2::uuid[]) RETURNING id",
        workspace_id,
        ids,
    )
    return len(deleted)


async def expired_files(
    pool: db.Pool, workspace_id: UUID, purpose: Literal["input", "output"], cutoff: datetime
) -> list[ExpiredFile]:
    rows = await pool.fetch(
        """
        SELECT id, storage_key FROM files
        WHERE workspace_id = $1 AND purpose = $2 AND created_at < $3
        ORDER BY created_at LIMIT $4
        """,
        workspace_id,
        purpose,
        cutoff,
        _BATCH,
    )
    return [ExpiredFile(row["id"], row["storage_key"]) for row in rows]
