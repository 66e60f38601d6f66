"""The server operator's cross-workspace reads: every workspace with its people, keys and usage.

The one place that reads across workspaces on purpose, for ``/v1/operator/...`` and ``voicestream
admin ...`` only (an operator key or the command line); every workspace's own routes go through
repositories that take the workspace id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from voicestream.errors import NotFound
from voicestream.store import db
from voicestream.store.usage import USAGE_KINDS, encode_cursor

__all__ = ["Period", "WorkspaceSummary", "list_workspaces", "server_usage", "workspace_summary"]


@dataclass(frozen=True, slots=True)
class Period:
    since: datetime
    until: datetime | None = None  # None: up to now


@dataclass(frozen=True, slots=True)
class WorkspaceSummary:
    id: UUID
    name: str
    created_at: datetime
    members: int
    live_keys: int  # neither revoked nor expired
    usage: dict[str, float]  # every kind, over the period asked
    plan: str  # billing's (billing_accounts; no row: the free plan)
    billing_status: str  # Stripe's subscription status, 'none' before any


_SUMMARY = """
    SELECT w.id, w.name, w.created_at,
           (SELECT count(*) FROM memberships m WHERE m.workspace_id = w.id) AS members,
           (SELECT count(*) FROM api_keys k WHERE k.workspace_id = w.id
              AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()))
               AS live_keys,
           coalesce(b.plan, 'free') AS plan, coalesce(b.status, 'none') AS billing_status
    FROM workspaces w LEFT JOIN billing_accounts b ON b.workspace_id = w.id
"""


async def _usage_of(
    pool: db.Pool, workspace_ids: Sequence[UUID], period: Period
) -> dict[UUID, dict[str, float]]:
    rows = await pool.fetch(
        """
        SELECT workspace_id, kind, sum(quantity) AS total FROM usage_records
        WHERE workspace_id = ANY($1::uuid[]) AND created_at >= $2
          AND ($3::timestamptz IS NULL OR created_at < $3)
        GROUP BY workspace_id, kind
        """,
        list(workspace_ids),
        period.since,
        period.until,
    )
    usage: dict[UUID, dict[str, float]] = {
        workspace_id: dict.fromkeys(USAGE_KINDS, 0.0) for workspace_id in workspace_ids
    }
    for row in rows:
        usage[row["workspace_id"]][row["kind"]] = float(row["total"])
    return usage


def _summaries(
    rows: Sequence[db.Record], usage: dict[UUID, dict[str, float]]
) -> list[WorkspaceSummary]:
    return [
        WorkspaceSummary(
            id=row["id"],
            name=row["name"],
            created_at=row["created_at"],
            members=row["members"],
            live_keys=row["live_keys"],
            usage=usage[row["id"]],
            plan=row["plan"],
            billing_status=row["billing_status"],
        )
        for row in rows
    ]


async def list_workspaces(
    pool: db.Pool, period: Period, *, limit: int, after: str | None = None
) -> tuple[list[WorkspaceSummary], str | None]:
    """A page of every workspace by name (``after``: the name the previous page ended with),
    with the cursor of the next page (None on the last)."""
    rows = await pool.fetch(
        _SUMMARY
        + """
        WHERE $1::text IS NULL OR w.name COLLATE "C" > $1::text
        ORDER BY w.name COLLATE "C" LIMIT $2
        """,
        after,
        limit + 1,
    )
    page = rows[:limit]
    usage = await _usage_of(pool, [row["id"] for row in page], period)
    next_cursor = encode_cursor(page[-1]["name"]) if len(rows) > limit else None
    return _summaries(page, usage), next_cursor


async def workspace_summary(pool: db.Pool, workspace_id: UUID, period: Period) -> WorkspaceSummary:
    row = await pool.fetchrow(_SUMMARY + "WHERE w.id = $1", workspace_id)
    if row is None:
        raise NotFound("no such workspace", details={"workspace_id": str(workspace_id)})
    return _summaries([row], await _usage_of(pool, [workspace_id], period))[0]


async def server_usage(pool: db.Pool, period: Period) -> tuple[dict[str, float], int]:
    """The whole server's usage per kind over the period, and how many workspaces had any."""
    rows = await pool.fetch(
        """
        SELECT kind, sum(quantity) AS total FROM usage_records
        WHERE created_at >= $1 AND ($2::timestamptz IS NULL OR created_at < $2)
        GROUP BY kind
        """,
        period.since,
        period.until,
    )
    totals: dict[str, float] = dict.fromkeys(USAGE_KINDS, 0.0)
    for row in rows:
        totals[row["kind"]] = float(row["total"])
    active = await pool.fetchval(
        """
        SELECT count(DISTINCT workspace_id) FROM usage_records
        WHERE created_at >= $1 AND ($2::timestamptz IS NULL OR created_at < $2)
        """,
        period.since,
        period.until,
    )
    return totals, int(active or 0)
