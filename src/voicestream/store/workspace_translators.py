"""A workspace's own dubbing translator (migration 0020): one row per workspace.

The API key arrives sealed (``dubbing/workspace_translators.py`` seals it, bound to the
workspace); this module never sees it in clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from voicestream.store import db

__all__ = ["StoredTranslator", "WorkspaceTranslatorRepository"]

_COLUMNS = "workspace_id, base_url, model, api_key_sealed, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class StoredTranslator:
    workspace_id: UUID
    base_url: str
    model: str
    api_key_sealed: str | None
    created_at: datetime
    updated_at: datetime


def _translator(row: Any) -> StoredTranslator:
    return StoredTranslator(
        row["workspace_id"],
        row["base_url"],
        row["model"],
        row["api_key_sealed"],
        row["created_at"],
        row["updated_at"],
    )


class WorkspaceTranslatorRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def get(self, workspace_id: UUID) -> StoredTranslator | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM workspace_translators WHERE workspace_id = $1",
            workspace_id,
        )
        return None if row is None else _translator(row)

    async def put(
        self, workspace_id: UUID, *, base_url: str, model: str, api_key_sealed: str | None
    ) -> StoredTranslator:
        row = await self._pool.fetchrow(
            f"INSERT INTO workspace_translators (workspace_id, base_url, model, api_key_sealed) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id) DO UPDATE SET "
            "base_url = EXCLUDED.base_url, model = EXCLUDED.model, "
            f"api_key_sealed = EXCLUDED.api_key_sealed, updated_at = now() RETURNING {_COLUMNS}",
            workspace_id,
            base_url,
            model,
            api_key_sealed,
        )
        assert row is not None  # an upsert always returns its row
        return _translator(row)

    async def delete(self, workspace_id: UUID) -> bool:
        status = await self._pool.execute(
            "DELETE FROM workspace_translators WHERE workspace_id = $1", workspace_id
        )
        return bool(status.endswith(" 1"))
