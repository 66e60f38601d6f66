"""Workspaces: the unit that owns API keys and accrues usage, and the web pages (origins) it
lets use its browser endpoints."""

from __future__ import annotations

import re
from uuid import UUID

from voicestream.errors import ValidationFailed
from voicestream.store import db

__all__ = [
    "DEFAULT_WORKSPACE",
    "allowed_origins",
    "ensure_workspace",
    "find_workspace",
    "origin_listed_anywhere",
    "set_allowed_origins",
    "validate_workspace_name",
    "workspace_ids",
]

DEFAULT_WORKSPACE = "default"
# Names appear in URLs, logs and CLI tables: keep them to a plain, unambiguous alphabet.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate_workspace_name(name: str) -> str:
    """Return ``name`` if usable as a workspace name, else raise ValidationFailed."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationFailed(
            "workspace name must be 1-64 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            details={"workspace": name},
        )
    return name


async def ensure_workspace(conn: db.Connection, name: str) -> UUID:
    """Id of workspace ``name``, creating it if needed. Safe against concurrent creators."""
    validate_workspace_name(name)
    # DO NOTHING + a second read rather than DO UPDATE: no dead row per call; under READ
    # COMMITTED the SELECT sees a row a concurrent transaction has just committed.
    created = await conn.fetchval(
        "INSERT INTO workspaces (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id",
        name,
    )
    if created is not None:
        new_id: UUID = created
        return new_id
    existing: UUID = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", name)
    return existing


async def workspace_ids(conn: db.Connection | db.Pool) -> list[UUID]:
    """Every workspace's id (periodic jobs run once per workspace)."""
    rows = await conn.fetch("SELECT id FROM workspaces ORDER BY id")
    return [row["id"] for row in rows]


async def find_workspace(conn: db.Connection | db.Pool, name: str) -> UUID | None:
    """Id of workspace ``name``, or None if there is no such workspace."""
    found: UUID | None = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", name)
    return found


async def allowed_origins(conn: db.Connection | db.Pool, workspace_id: UUID) -> list[str] | None:
    """The origins the workspace lets use its browser endpoints; None if no such workspace."""
    found: list[str] | None = await conn.fetchval(
        "SELECT allowed_origins FROM workspaces WHERE id = $1", workspace_id
    )
    return found


async def set_allowed_origins(
    conn: db.Connection | db.Pool, workspace_id: UUID, origins: list[str]
) -> list[str] | None:
    """Replace the workspace's list (normalized already); None if no such workspace."""
    stored: list[str] | None = await conn.fetchval(
        "UPDATE workspaces SET allowed_origins = $2 WHERE id = $1 RETURNING allowed_origins",
        workspace_id,
        origins,
    )
    return stored


async def origin_listed_anywhere(conn: db.Connection | db.Pool, origin: str) -> bool:
    """Whether some workspace lists ``origin`` (for requests that name no workspace)."""
    listed: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM workspaces WHERE allowed_origins @> ARRAY[$1::text])",
        origin,
    )
    return listed
