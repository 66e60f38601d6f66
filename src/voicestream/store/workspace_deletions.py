"""Deletion requests and the tombstones they leave (``workspace_deletions``, migration 0024).

A request is stored with its job (its id is the job's), and outlives the workspace it names:
after the deletion it says who asked, when, what was removed and whether the check afterwards
found nothing left. The requester's credentials die with the workspace, so the record is
read with the receipt handed out at the request (its SHA-256 is stored, never the receipt).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID

from voicestream.errors import Conflict
from voicestream.store import db

__all__ = [
    "DeletionRecord",
    "find_deletion",
    "insert_deletion",
    "mark_deleted",
    "mark_failed",
    "mark_verified",
    "new_receipt",
    "read_deletion",
]

DeletionStatus = Literal["pending", "deleted", "failed"]
_COLUMNS: Final = """
    id, deleted_workspace_id, workspace_name, requested_by, status, counts, remaining, verified,
    error, requested_at, deleted_at, verified_at
"""


@dataclass(frozen=True, slots=True)
class DeletionRecord:
    id: UUID
    deleted_workspace_id: UUID
    workspace_name: str
    requested_by: str
    status: DeletionStatus
    counts: dict[str, Any]
    remaining: dict[str, Any] | None
    verified: bool
    error: str | None
    requested_at: datetime
    deleted_at: datetime | None
    verified_at: datetime | None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _record(row: db.Record) -> DeletionRecord:
    values = dict(row)
    values["counts"] = _json(values["counts"])
    values["remaining"] = _json(values["remaining"])
    return DeletionRecord(**values)


def new_receipt() -> str:
    return secrets.token_urlsafe(32)


def _digest(receipt: str) -> bytes:
    return hashlib.sha256(receipt.encode()).digest()


async def insert_deletion(
    conn: db.Connection,
    deletion_id: UUID,
    workspace_id: UUID,
    workspace_name: str,
    requested_by: str,
    receipt: str,
) -> None:
    """Inside the job's submission transaction; Conflict while another one is pending."""
    try:
        await conn.execute(
            """
            INSERT INTO workspace_deletions
                (id, deleted_workspace_id, workspace_name, requested_by, receipt_hash)
            VALUES ($1, $2, $3, $4, $5)
            """,
            deletion_id,
            workspace_id,
            workspace_name,
            requested_by[:320],
            _digest(receipt),
        )
    except db.UniqueViolationError:
        raise Conflict("a deletion of this workspace is already under way") from None


async def find_deletion(pool: db.Pool, deletion_id: UUID) -> DeletionRecord | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM workspace_deletions WHERE id = $1", deletion_id
    )
    return _record(row) if row is not None else None


async def read_deletion(pool: db.Pool, deletion_id: UUID, receipt: str) -> DeletionRecord | None:
    """The record, when ``receipt`` is the one handed out for it; None otherwise (an unknown
    id and a wrong receipt look the same)."""
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS}, receipt_hash FROM workspace_deletions WHERE id = $1", deletion_id
    )
    if row is None or not hmac.compare_digest(bytes(row["receipt_hash"]), _digest(receipt)):
        return None
    values = dict(row)
    values.pop("receipt_hash")
    values["counts"] = _json(values["counts"])
    values["remaining"] = _json(values["remaining"])
    return DeletionRecord(**values)


async def mark_deleted(pool: db.Pool, deletion_id: UUID, counts: dict[str, Any]) -> None:
    await pool.execute(
        """
        UPDATE workspace_deletions SET status = 'deleted', counts = $2::jsonb,
               deleted_at = coalesce(deleted_at, now()), error = NULL
        WHERE id = $1
        """,
        deletion_id,
        json.dumps(counts),
    )


async def mark_verified(pool: db.Pool, deletion_id: UUID, remaining: dict[str, Any]) -> bool:
    """Store what the check found left; verified when that is nothing at all."""
    verified = not any(remaining.values())
    await pool.execute(
        """
        UPDATE workspace_deletions SET remaining = $2::jsonb, verified = $3,
               verified_at = CASE WHEN $3 THEN now() ELSE NULL END
        WHERE id = $1
        """,
        deletion_id,
        json.dumps(remaining),
        verified,
    )
    return verified


async def mark_failed(pool: db.Pool, deletion_id: UUID, error: str) -> None:
    await pool.execute(
        "UPDATE workspace_deletions SET status = 'failed', error = $2 WHERE id = $1 "
        "AND status = 'pending'",
        deletion_id,
        error[:1000],
    )
