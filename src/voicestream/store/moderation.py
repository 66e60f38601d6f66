"""Content moderation's tables (migration 0025): each workspace's policy and its review queue.

Every lookup takes the workspace id: another workspace's item is as missing as no item.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args
from uuid import UUID

from . import db

__all__ = [
    "DEFAULT_POLICY",
    "ITEM_STATUSES",
    "ItemStatus",
    "ModerationItem",
    "ModerationRepository",
    "StoredPolicy",
]

ItemStatus = Literal["pending", "approved", "rejected"]
ITEM_STATUSES: Final[tuple[ItemStatus, ...]] = get_args(ItemStatus)
_ITEM_COLUMNS = (
    "id, workspace_id, text_sha256, text, source, category, score, status, created_at, "
    "decided_at, decided_by"
)
_POLICY_COLUMNS = (
    "block_terms, review_terms, categories, review_threshold, block_threshold, fail_open, "
    "updated_at"
)


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    block_terms: tuple[str, ...]
    review_terms: tuple[str, ...]
    categories: tuple[str, ...]
    review_threshold: float
    block_threshold: float
    fail_open: bool | None
    updated_at: datetime | None  # None: never set (the defaults)


DEFAULT_POLICY: Final = StoredPolicy((), (), (), 0.5, 0.8, None, None)


@dataclass(frozen=True, slots=True)
class ModerationItem:
    id: UUID
    workspace_id: UUID
    text_sha256: str
    text: str
    source: str
    category: str
    score: float | None
    status: ItemStatus
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None


def _item(row: Any) -> ModerationItem:
    return ModerationItem(*(row[name.strip()] for name in _ITEM_COLUMNS.split(",")))


def _policy(row: Any) -> StoredPolicy:
    return StoredPolicy(
        tuple(row["block_terms"]),
        tuple(row["review_terms"]),
        tuple(row["categories"]),
        row["review_threshold"],
        row["block_threshold"],
        row["fail_open"],
        row["updated_at"],
    )


class ModerationRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def policy(self, workspace_id: UUID) -> StoredPolicy:
        row = await self._pool.fetchrow(
            f"SELECT {_POLICY_COLUMNS} FROM moderation_policies WHERE workspace_id = $1",
            workspace_id,
        )
        return DEFAULT_POLICY if row is None else _policy(row)

    async def put_policy(self, workspace_id: UUID, policy: StoredPolicy) -> StoredPolicy:
        row = await self._pool.fetchrow(
            "INSERT INTO moderation_policies (workspace_id, block_terms, review_terms, "
            "categories, review_threshold, block_threshold, fail_open) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (workspace_id) DO UPDATE SET "
            "block_terms = EXCLUDED.block_terms, review_terms = EXCLUDED.review_terms, "
            "categories = EXCLUDED.categories, review_threshold = EXCLUDED.review_threshold, "
            "block_threshold = EXCLUDED.block_threshold, fail_open = EXCLUDED.fail_open, "
            f"updated_at = now() RETURNING {_POLICY_COLUMNS}",
            workspace_id,
            list(policy.block_terms),
            list(policy.review_terms),
            list(policy.categories),
            policy.review_threshold,
            policy.block_threshold,
            policy.fail_open,
        )
        return _policy(row)

    async def find(self, workspace_id: UUID, text_sha256: str) -> ModerationItem | None:
        row = await self._pool.fetchrow(
            f"SELECT {_ITEM_COLUMNS} FROM moderation_items "
            "WHERE workspace_id = $1 AND text_sha256 = $2",
            workspace_id,
            text_sha256,
        )
        return None if row is None else _item(row)

    async def hold(
        self,
        workspace_id: UUID,
        *,
        text_sha256: str,
        text: str,
        source: str,
        category: str,
        score: float | None,
    ) -> tuple[ModerationItem, bool]:
        """The item of this text, queued as pending unless it exists; True when new."""
        row = await self._pool.fetchrow(
            "INSERT INTO moderation_items (id, workspace_id, text_sha256, text, source, "
            "category, score) VALUES ($1, $2, $3, $4, $5, $6, $7) "
            f"ON CONFLICT (workspace_id, text_sha256) DO NOTHING RETURNING {_ITEM_COLUMNS}",
            uuid.uuid4(),
            workspace_id,
            text_sha256,
            text,
            source,
            category,
            score,
        )
        if row is not None:
            return _item(row), True
        existing = await self.find(workspace_id, text_sha256)
        assert existing is not None  # rows are deleted only with their workspace
        return existing, False

    async def get(self, workspace_id: UUID, item_id: UUID) -> ModerationItem | None:
        row = await self._pool.fetchrow(
            f"SELECT {_ITEM_COLUMNS} FROM moderation_items WHERE workspace_id = $1 AND id = $2",
            workspace_id,
            item_id,
        )
        return None if row is None else _item(row)

    async def decide(
        self, workspace_id: UUID, item_id: UUID, status: ItemStatus, decided_by: str
    ) -> ModerationItem | None:
        row = await self._pool.fetchrow(
            "UPDATE moderation_items SET status = $3, decided_at = now(), decided_by = $4 "
            f"WHERE workspace_id = $1 AND id = $2 RETURNING {_ITEM_COLUMNS}",
            workspace_id,
            item_id,
            status,
            decided_by,
        )
        return None if row is None else _item(row)

    async def page(
        self,
        workspace_id: UUID,
        *,
        statuses: tuple[ItemStatus, ...],
        limit: int,
        after: UUID | None,
    ) -> list[ModerationItem]:
        """Newest first; ``after``: the last item of the previous page."""
        rows = await self._pool.fetch(
            f"SELECT {_ITEM_COLUMNS} FROM moderation_items i WHERE workspace_id = $1 "
            "AND (cardinality($2::text[]) = 0 OR status = ANY($2::text[])) "
            "AND ($3::uuid IS NULL OR (created_at, id) < ("
            "  SELECT created_at, id FROM moderation_items WHERE workspace_id = $1 AND id = $3)) "
            "ORDER BY created_at DESC, id DESC LIMIT $4",
            workspace_id,
            list(statuses),
            after,
            limit,
        )
        return [_item(row) for row in rows]
