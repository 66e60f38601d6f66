"""Usage accounting: what each workspace (and key) consumed, for quotas and billing."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal, get_args
from uuid import UUID

from voicestream.errors import ValidationFailed
from voicestream.store import db
from voicestream.store.keys import Principal

__all__ = ["USAGE_KINDS", "UsageKind", "UsageRepository"]

UsageKind = Literal["tts_characters", "stt_seconds"]
USAGE_KINDS: Final[tuple[UsageKind, ...]] = get_args(UsageKind)

# Who consumed: a principal, a workspace id, or (workspace id, api key id or None).
Subject = Principal | UUID | tuple[UUID, UUID | None]


def _ids(subject: Subject) -> tuple[UUID, UUID | None]:
    if isinstance(subject, Principal):
        return subject.workspace_id, subject.key_id
    if isinstance(subject, UUID):
        return subject, None
    return subject


def _quantity(value: float | Decimal) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValidationFailed(f"usage quantity must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationFailed(f"usage quantity must be finite, got {value!r}")
    # Through str: Decimal(0.1) would carry the binary float's 55 digits into the table.
    amount = value if isinstance(value, Decimal) else Decimal(str(value))
    if not amount.is_finite() or amount < 0:
        raise ValidationFailed(f"usage quantity must be a finite number >= 0, got {value!r}")
    return amount


class UsageRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def record(self, subject: Subject, kind: str, quantity: float | Decimal) -> None:
        """Add one usage record. Raises ValidationFailed for an unknown kind or bad quantity."""
        if kind not in USAGE_KINDS:
            raise ValidationFailed(
                f"unknown usage kind {kind!r}; use one of {', '.join(USAGE_KINDS)}"
            )
        workspace_id, api_key_id = _ids(subject)
        await self._pool.execute(
            "INSERT INTO usage_records (workspace_id, api_key_id, kind, quantity) "
            "VALUES ($1, $2, $3, $4)",
            workspace_id,
            api_key_id,
            kind,
            _quantity(quantity),
        )

    async def totals(
        self,
        workspace_id: UUID,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, float]:
        """Sum per kind for a workspace over ``[since, until)``; every kind is present."""
        rows = await self._pool.fetch(
            """
            SELECT kind, sum(quantity) AS total FROM usage_records
            WHERE workspace_id = $1
              AND ($2::timestamptz IS NULL OR created_at >= $2)
              AND ($3::timestamptz IS NULL OR created_at < $3)
            GROUP BY kind
            """,
            workspace_id,
            since,
            until,
        )
        totals: dict[str, float] = dict.fromkeys(USAGE_KINDS, 0.0)
        for row in rows:
            totals[row["kind"]] = float(row["total"])
        return totals
