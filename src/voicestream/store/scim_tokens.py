"""SCIM bearer tokens and a workspace's group-to-role mapping (migration 0022).

Tokens are stored as SHA-256 digests only; the clear token is shown once, when minted. Every
lookup but ``authenticate`` takes the workspace: another workspace's token is a 404.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from uuid import UUID

from voicestream.errors import NotFound
from voicestream.store import db
from voicestream.store.keys import Role, parse_role

__all__ = ["ScimSettings", "ScimToken", "ScimTokenRepository"]

_COLUMNS: Final = "id, workspace_id, name, created_at, last_used_at, revoked_at"


@dataclass(frozen=True, slots=True)
class ScimToken:
    id: UUID
    workspace_id: UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ScimSettings:
    default_role: Role
    group_roles: dict[str, Role]  # a group's displayName -> the role its members get


_DEFAULT_SETTINGS: Final = ScimSettings("viewer", {})


def _token(row: db.Record) -> ScimToken:
    return ScimToken(**{name: row[name] for name in _COLUMNS.split(", ")})


class ScimTokenRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def create(self, workspace_id: UUID, name: str, token_hash: bytes) -> ScimToken:
        row = await self._pool.fetchrow(
            f"INSERT INTO scim_tokens (workspace_id, name, token_hash) VALUES ($1, $2, $3) "
            f"RETURNING {_COLUMNS}",
            workspace_id,
            name,
            token_hash,
        )
        return _token(row)

    async def list(self, workspace_id: UUID) -> builtins.list[ScimToken]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM scim_tokens WHERE workspace_id = $1 ORDER BY created_at, id",
            workspace_id,
        )
        return [_token(row) for row in rows]

    async def revoke(self, workspace_id: UUID, token_id: UUID) -> ScimToken:
        """Raises NotFound (none here). Revoking twice keeps the first time."""
        row = await self._pool.fetchrow(
            f"UPDATE scim_tokens SET revoked_at = coalesce(revoked_at, now()) "
            f"WHERE workspace_id = $1 AND id = $2 RETURNING {_COLUMNS}",
            workspace_id,
            token_id,
        )
        if row is None:
            raise NotFound("no such SCIM token")
        return _token(row)

    async def authenticate(self, token_hash: bytes) -> UUID | None:
        """The workspace a live token provisions; None for an unknown or revoked one."""
        workspace_id: UUID | None = await self._pool.fetchval(
            "UPDATE scim_tokens SET last_used_at = now() "
            "WHERE token_hash = $1 AND revoked_at IS NULL RETURNING workspace_id",
            token_hash,
        )
        return workspace_id

    async def settings(self, workspace_id: UUID) -> ScimSettings:
        row = await self._pool.fetchrow(
            "SELECT default_role, group_roles FROM scim_settings WHERE workspace_id = $1",
            workspace_id,
        )
        if row is None:
            return _DEFAULT_SETTINGS
        roles = {name: parse_role(role) for name, role in json.loads(row["group_roles"]).items()}
        return ScimSettings(parse_role(row["default_role"]), roles)

    async def save_settings(self, workspace_id: UUID, settings: ScimSettings) -> ScimSettings:
        await self._pool.execute(
            """
            INSERT INTO scim_settings (workspace_id, default_role, group_roles)
            VALUES ($1, $2, $3::jsonb)
            ON CONFLICT (workspace_id) DO UPDATE
            SET default_role = excluded.default_role, group_roles = excluded.group_roles,
                updated_at = now()
            """,
            workspace_id,
            settings.default_role,
            json.dumps(settings.group_roles),
        )
        return settings
