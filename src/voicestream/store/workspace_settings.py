"""A workspace's own row: what ``/v1/admin/settings`` reads and renames.

The allowed origins are ``identity/page_origins.py``'s (with their cache); this holds the rest
of the row, always by the workspace's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from voicestream.errors import Conflict, NotFound
from voicestream.store import db
from voicestream.store.workspaces import validate_workspace_name

__all__ = ["WorkspaceRow", "name_available", "read_workspace", "rename_workspace"]


@dataclass(frozen=True, slots=True)
class WorkspaceRow:
    id: UUID
    name: str
    created_at: datetime
    members: int


_SELECT = """
    SELECT w.id, w.name, w.created_at,
           (SELECT count(*) FROM memberships m WHERE m.workspace_id = w.id) AS members
    FROM workspaces w WHERE w.id = $1
"""


def _row(row: db.Record | None, workspace_id: UUID) -> WorkspaceRow:
    if row is None:
        raise NotFound("no such workspace", details={"workspace_id": str(workspace_id)})
    return WorkspaceRow(row["id"], row["name"], row["created_at"], row["members"])


async def read_workspace(pool: db.Pool, workspace_id: UUID) -> WorkspaceRow:
    return _row(await pool.fetchrow(_SELECT, workspace_id), workspace_id)


async def name_available(pool: db.Pool, workspace_id: UUID, name: str) -> None:
    """Raises ValidationFailed (a malformed name) or Conflict (another workspace has it)."""
    validate_workspace_name(name)
    holder = await pool.fetchval("SELECT id FROM workspaces WHERE name = $1", name)
    if holder is not None and holder != workspace_id:
        raise Conflict("another workspace has this name", details={"name": name})


async def rename_workspace(
    pool: db.Pool, workspace_id: UUID, name: str
) -> tuple[str, WorkspaceRow]:
    """The name before, and the workspace now. Raises ValidationFailed (a malformed name),
    Conflict (another workspace has it) or NotFound."""
    validate_workspace_name(name)
    async with pool.acquire() as conn, conn.transaction():
        before = await conn.fetchval(
            "SELECT name FROM workspaces WHERE id = $1 FOR UPDATE", workspace_id
        )
        if before is None:
            raise NotFound("no such workspace", details={"workspace_id": str(workspace_id)})
        try:
            await conn.execute("UPDATE workspaces SET name = $2 WHERE id = $1", workspace_id, name)
        except db.UniqueViolationError:
            raise Conflict("another workspace has this name", details={"name": name}) from None
        return str(before), _row(await conn.fetchrow(_SELECT, workspace_id), workspace_id)
