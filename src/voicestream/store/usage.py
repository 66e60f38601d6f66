"""Usage accounting: what each workspace (and key) consumed, for quotas and billing.

Quotas are checked against these records (``identity/quotas.py``). Work whose size is known
before it starts (a TTS request's characters) is charged up front by ``charge_within``: the
check and the insert happen under one per-workspace lock, so concurrent requests can never
together pass a quota; a request that then fails takes its record back (``refund``).
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Final, Literal, get_args
from uuid import UUID

from voicestream.errors import ValidationFailed
from voicestream.store import db
from voicestream.store.keys import Principal

__all__ = ["USAGE_KINDS", "UsageGroup", "UsageGrouping", "UsageKind", "UsageRepository"]

UsageKind = Literal["tts_characters", "stt_seconds", "conversation_seconds"]
UsageGrouping = Literal["key", "day"]
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


@dataclass(frozen=True, slots=True)
class UsageGroup:
    """One row of a usage listing: a key's (or a day's) total of every kind."""

    key_id: UUID | None  # group_by="key"; None: usage of no key (signed-in sessions, Wyoming)
    day: date | None  # group_by="day" (UTC)
    totals: dict[str, float]


# The group's label, text that sorts (in the "C" collation) in listing order: '' (usage of no
# key) before every key id; days as YYYY-MM-DD.
_LABELS: Final[dict[str, str]] = {
    "key": "coalesce(api_key_id::text, '')",
    "day": "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}
# Per-workspace advisory locks of quota charges; the first number keeps them apart from other
# advisory-lock users of the database.
_QUOTA_LOCK_SPACE: Final = 0x5155  # "QU"


def encode_cursor(label: str) -> str:
    return base64.urlsafe_b64encode(b"g:" + label.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The label a cursor continues after; ValidationFailed for one we did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        text = raw.decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationFailed("cursor is not one this server handed out") from None
    if not text.startswith("g:") or len(text) > 100:
        raise ValidationFailed("cursor is not one this server handed out")
    return text[2:]


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

    async def total(
        self,
        workspace_id: UUID,
        kind: UsageKind,
        *,
        since: datetime,
        user_id: UUID | None = None,
    ) -> Decimal:
        """What ``workspace_id`` consumed of ``kind`` since ``since``.

        ``user_id`` is the seat (a member's own quota): records do not carry the user yet, so
        a seat's total cannot be told apart; it raises until they do (issue 9, seats).
        """
        if user_id is not None:
            raise NotImplementedError("usage records do not name their user yet")
        value = await self._pool.fetchval(
            "SELECT coalesce(sum(quantity), 0) FROM usage_records "
            "WHERE workspace_id = $1 AND kind = $2 AND created_at >= $3",
            workspace_id,
            kind,
            since,
        )
        return Decimal(value)

    async def charge_within(
        self,
        subject: Subject,
        kind: UsageKind,
        quantity: float | Decimal,
        *,
        limit: Decimal,
        since: datetime,
    ) -> tuple[int | None, Decimal]:
        """Record ``quantity`` only if the total since ``since`` stays within ``limit``.

        Returns (the record's id, the total before it), or (None, that total) when it would
        pass the limit. Concurrent charges of one workspace queue on a transaction-scoped
        lock, so each sees the others' records: together they never pass the limit.
        """
        amount = _quantity(quantity)
        workspace_id, api_key_id = _ids(subject)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                _QUOTA_LOCK_SPACE,
                str(workspace_id),
            )
            used = Decimal(
                await conn.fetchval(
                    "SELECT coalesce(sum(quantity), 0) FROM usage_records "
                    "WHERE workspace_id = $1 AND kind = $2 AND created_at >= $3",
                    workspace_id,
                    kind,
                    since,
                )
            )
            if used + amount > limit:
                return None, used
            record_id = await conn.fetchval(
                "INSERT INTO usage_records (workspace_id, api_key_id, kind, quantity) "
                "VALUES ($1, $2, $3, $4) RETURNING id",
                workspace_id,
                api_key_id,
                kind,
                amount,
            )
        return int(record_id), used

    async def refund(self, workspace_id: UUID, record_id: int) -> None:
        """Take back a charge whose work did not happen."""
        await self._pool.execute(
            "DELETE FROM usage_records WHERE workspace_id = $1 AND id = $2",
            workspace_id,
            record_id,
        )

    async def groups(
        self,
        workspace_id: UUID,
        group_by: UsageGrouping,
        *,
        since: datetime,
        until: datetime | None,
        limit: int,
        after: str | None = None,
    ) -> tuple[list[UsageGroup], str | None]:
        """A page of ``workspace_id``'s usage over ``[since, until)`` by key or by UTC day, in
        label order; ``after``: the label the previous page ended with. Returns the page and
        the cursor of the next one (None on the last page)."""
        label = _LABELS[group_by]  # one of two constant expressions, never client text
        # Each group has at most one row per kind: this many rows hold the first limit + 1
        # groups whole, which tells whether another page follows.
        rows = await self._pool.fetch(
            f"""
            SELECT label, kind, sum(quantity) AS total FROM (
                SELECT {label} AS label, kind, quantity FROM usage_records
                WHERE workspace_id = $1
                  AND created_at >= $2
                  AND ($3::timestamptz IS NULL OR created_at < $3)
            ) AS r
            WHERE $4::text IS NULL OR label COLLATE "C" > $4::text
            GROUP BY label, kind
            ORDER BY label COLLATE "C", kind
            LIMIT $5
            """,
            workspace_id,
            since,
            until,
            after,
            (limit + 1) * len(USAGE_KINDS),
        )
        by_label: dict[str, dict[str, float]] = {}
        for row in rows:
            totals = by_label.setdefault(row["label"], dict.fromkeys(USAGE_KINDS, 0.0))
            totals[row["kind"]] = float(row["total"])
        labels = list(by_label)
        more = len(labels) > limit
        page = [_group(group_by, lbl, by_label[lbl]) for lbl in labels[:limit]]
        return page, encode_cursor(labels[limit - 1]) if more else None

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


def _group(group_by: UsageGrouping, label: str, totals: dict[str, float]) -> UsageGroup:
    if group_by == "key":
        return UsageGroup(UUID(label) if label else None, None, totals)
    return UsageGroup(None, date.fromisoformat(label), totals)
