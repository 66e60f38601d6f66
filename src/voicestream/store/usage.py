"""Usage accounting: what each workspace, key and seat consumed, for quotas and billing.

Quotas are checked against these records (``identity/quotas.py``). Work whose size is known
before it starts (a TTS request's characters) is charged up front by ``charge_within``: the
check and the insert happen under one per-workspace lock, so concurrent requests can never
together pass a quota, the workspace's or a seat's; a request that then fails takes its
record back (``refund``).

The seat of a record is the member who caused it: the signed-in user, or else the member who
made the API key (``api_keys.created_by_user_id``), so that a member cannot step around their
own quota with a key of their own. Keys made on the command line, tickets and Wyoming belong
to no seat: only the workspace's quota applies to them.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Final, Literal, Protocol, get_args
from uuid import UUID

from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store.keys import Principal

__all__ = [
    "USAGE_KINDS",
    "ChargeOutcome",
    "SeatRefusal",
    "Subject",
    "UsageGroup",
    "UsageGrouping",
    "UsageKind",
    "UsageMeter",
    "UsageRepository",
]

UsageKind = Literal["tts_characters", "stt_seconds", "conversation_seconds"]
UsageGrouping = Literal["key", "day", "user"]
USAGE_KINDS: Final[tuple[UsageKind, ...]] = get_args(UsageKind)

# Who consumed: a principal, a workspace id, (workspace id, api key id or None), or
# (workspace id, api key id or None, signed-in user id or None).
Subject = Principal | UUID | tuple[UUID, UUID | None] | tuple[UUID, UUID | None, UUID | None]


def _ids(subject: Subject) -> tuple[UUID, UUID | None, UUID | None]:
    if isinstance(subject, Principal):
        return subject.workspace_id, subject.key_id, subject.user_id
    if isinstance(subject, UUID):
        return subject, None, None
    if len(subject) == 2:
        return subject[0], subject[1], None
    return subject


# The seat of a record from ($2 key id, $3 user id): the signed-in user, else the member who
# made the key.
_SEAT_OF: Final = "coalesce($3::uuid, (SELECT created_by_user_id FROM api_keys WHERE id = $2))"
# A member's own quota column by kind: one of three constants, never client text.
_SEAT_QUOTA_COLUMNS: Final[dict[UsageKind, str]] = {
    "tts_characters": "quota_tts_characters",
    "stt_seconds": "quota_stt_seconds",
    "conversation_seconds": "quota_conversation_seconds",
}


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
    """One row of a usage listing: a key's, a day's or a seat's total of every kind."""

    key_id: UUID | None  # group_by="key"; None: usage of no key (signed-in sessions, Wyoming)
    day: date | None  # group_by="day" (UTC)
    totals: dict[str, float]
    user_id: UUID | None = None  # group_by="user"; None: usage of no seat


@dataclass(frozen=True, slots=True)
class SeatRefusal:
    """What would pass a quota: the workspace's (``user_id`` None) or a seat's."""

    user_id: UUID | None
    limit: Decimal
    used: Decimal  # before this charge


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    """``charge_within``'s answer: a record written, none needed yet, or a refusal."""

    record_id: int | None  # None: refused, or no quota applied (record when the work is done)
    refused: SeatRefusal | None = None


# The group's label, text that sorts (in the "C" collation) in listing order: '' (usage of no
# key or seat) before every id; days as YYYY-MM-DD.
_LABELS: Final[dict[str, str]] = {
    "key": "coalesce(api_key_id::text, '')",
    "day": "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "user": "coalesce(user_id::text, '')",
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


class UsageMeter(Protocol):
    """What else happens with usage: its credits (``billing/metering.py``). ``recorded`` and
    ``refunded`` run inside the transaction that writes or deletes the record, so both
    happen or neither; raising from ``recorded`` (``up_front``: before the work) or
    ``admit`` refuses the work."""

    async def recorded(
        self,
        conn: db.Connection,
        workspace_id: UUID,
        kind: UsageKind,
        quantity: Decimal,
        record_id: int,
        *,
        up_front: bool,
    ) -> None: ...

    async def refunded(self, conn: db.Connection, workspace_id: UUID, record_id: int) -> None: ...

    async def admit(self, workspace_id: UUID, kind: UsageKind) -> None: ...


class UsageRepository:
    def __init__(self, pool: db.Pool, meter: UsageMeter | None = None) -> None:
        self._pool = pool
        self._meter = meter

    async def record(self, subject: Subject, kind: str, quantity: float | Decimal) -> None:
        """Add one usage record. Raises ValidationFailed for an unknown kind or bad quantity."""
        if kind not in USAGE_KINDS:
            raise ValidationFailed(
                f"unknown usage kind {kind!r}; use one of {', '.join(USAGE_KINDS)}"
            )
        workspace_id, api_key_id, user_id = _ids(subject)
        amount = _quantity(quantity)
        async with self._pool.acquire() as conn, conn.transaction():
            record_id = await conn.fetchval(
                "INSERT INTO usage_records (workspace_id, api_key_id, user_id, kind, quantity) "
                f"VALUES ($1, $2, {_SEAT_OF}, $4, $5) RETURNING id",
                workspace_id,
                api_key_id,
                user_id,
                kind,
                amount,
            )
            if self._meter is not None:
                await self._meter.recorded(
                    conn, workspace_id, kind, amount, int(record_id), up_front=False
                )

    async def total(
        self,
        workspace_id: UUID,
        kind: UsageKind,
        *,
        since: datetime,
        user_id: UUID | None = None,
    ) -> Decimal:
        """What ``workspace_id`` consumed of ``kind`` since ``since``; with ``user_id``, what
        that seat consumed of it."""
        value = await self._pool.fetchval(
            "SELECT coalesce(sum(quantity), 0) FROM usage_records "
            "WHERE workspace_id = $1 AND kind = $2 AND created_at >= $3 "
            "AND ($4::uuid IS NULL OR user_id = $4)",
            workspace_id,
            kind,
            since,
            user_id,
        )
        return Decimal(value)

    async def seat_quotas(self, workspace_id: UUID, user_id: UUID) -> dict[UsageKind, Decimal]:
        """The member's own quotas that are set (unset kinds are absent). NotFound when
        ``user_id`` is no member of ``workspace_id``."""
        row = await self._pool.fetchrow(
            f"SELECT {', '.join(_SEAT_QUOTA_COLUMNS.values())} FROM memberships "
            "WHERE workspace_id = $1 AND user_id = $2",
            workspace_id,
            user_id,
        )
        if row is None:
            raise NotFound("no such member", details={"user_id": str(user_id)})
        return {
            kind: Decimal(row[column])
            for kind, column in _SEAT_QUOTA_COLUMNS.items()
            if row[column] is not None
        }

    async def seat_quotas_of_members(
        self, workspace_id: UUID
    ) -> dict[UUID, dict[UsageKind, Decimal]]:
        """Every member's own quotas that are set, by user id (the member list's, in one
        query); a member with none set has an empty mapping."""
        rows = await self._pool.fetch(
            f"SELECT user_id, {', '.join(_SEAT_QUOTA_COLUMNS.values())} FROM memberships "
            "WHERE workspace_id = $1",
            workspace_id,
        )
        return {
            row["user_id"]: {
                kind: Decimal(row[column])
                for kind, column in _SEAT_QUOTA_COLUMNS.items()
                if row[column] is not None
            }
            for row in rows
        }

    async def set_seat_quotas(
        self, workspace_id: UUID, user_id: UUID, changes: dict[UsageKind, Decimal | None]
    ) -> dict[UsageKind, Decimal]:
        """Set (a number) or clear (None) the member's own quotas named in ``changes``; the
        others stay. Returns the quotas now set. NotFound when no such member here."""
        sets = [f"{_SEAT_QUOTA_COLUMNS[kind]} = ${n}" for n, kind in enumerate(changes, start=3)]
        if sets:
            done = await self._pool.fetchval(
                f"UPDATE memberships SET {', '.join(sets)} "
                "WHERE workspace_id = $1 AND user_id = $2 RETURNING true",
                workspace_id,
                user_id,
                *(None if v is None else _quantity(v) for v in changes.values()),
            )
            if done is None:
                raise NotFound("no such member", details={"user_id": str(user_id)})
        return await self.seat_quotas(workspace_id, user_id)

    async def headroom(
        self,
        subject: Subject,
        kind: UsageKind,
        *,
        limit: Decimal | None,
        seat_default: Decimal | None,
        since: datetime,
    ) -> SeatRefusal | None:
        """The quota ``subject`` has used up of ``kind`` (its workspace's ``limit``, or its
        seat's own quota, else ``seat_default``), or None while both have room."""
        async with self._pool.acquire() as conn:
            refused = await self._over(
                conn, subject, kind, Decimal(0), limit, seat_default, since, inclusive=True
            )
        if refused is None and self._meter is not None:
            await self._meter.admit(_ids(subject)[0], kind)
        return refused

    async def charge_within(
        self,
        subject: Subject,
        kind: UsageKind,
        quantity: float | Decimal,
        *,
        limit: Decimal | None,
        since: datetime,
        seat_default: Decimal | None = None,
    ) -> ChargeOutcome:
        """Record ``quantity`` only if the workspace's total since ``since`` stays within
        ``limit`` and the seat's within its own quota (else ``seat_default``).

        Returns the record's id; or the refusal, with the total before it; or neither when
        no quota applies and no meter prices it (nothing written: record it once the work is
        done). The meter's refusal (``recorded`` raising) writes nothing. Concurrent
        charges of one workspace, of any seat, queue on a transaction-scoped lock, so each
        sees the others' records: together they never pass a limit.
        """
        amount = _quantity(quantity)
        workspace_id, api_key_id, _ = _ids(subject)
        async with self._pool.acquire() as conn, conn.transaction():
            seat, seat_limit = await self._seat_limit(conn, subject, kind, seat_default)
            if limit is None and seat_limit is None and self._meter is None:
                return ChargeOutcome(None)
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                _QUOTA_LOCK_SPACE,
                str(workspace_id),
            )
            refused = await self._over(
                conn, subject, kind, amount, limit, seat_default, since, seat=(seat, seat_limit)
            )
            if refused is not None:
                return ChargeOutcome(None, refused)
            record_id = await conn.fetchval(
                "INSERT INTO usage_records (workspace_id, api_key_id, user_id, kind, quantity) "
                "VALUES ($1, $2, $3, $4, $5) RETURNING id",
                workspace_id,
                api_key_id,
                seat,
                kind,
                amount,
            )
            if self._meter is not None:
                await self._meter.recorded(
                    conn, workspace_id, kind, amount, int(record_id), up_front=True
                )
        return ChargeOutcome(int(record_id))

    async def _seat_limit(
        self,
        conn: db.Connection,
        subject: Subject,
        kind: UsageKind,
        seat_default: Decimal | None,
    ) -> tuple[UUID | None, Decimal | None]:
        """The subject's seat and that seat's quota of ``kind`` (None: no seat, or none)."""
        workspace_id, api_key_id, user_id = _ids(subject)
        row = await conn.fetchrow(
            f"""
            SELECT s.seat, m.{_SEAT_QUOTA_COLUMNS[kind]} AS quota
            FROM (SELECT {_SEAT_OF} AS seat) s
            LEFT JOIN memberships m ON m.workspace_id = $1 AND m.user_id = s.seat
            """,
            workspace_id,
            api_key_id,
            user_id,
        )
        seat: UUID | None = row["seat"]
        if seat is None:
            return None, None
        return seat, Decimal(row["quota"]) if row["quota"] is not None else seat_default

    async def _over(
        self,
        conn: db.Connection,
        subject: Subject,
        kind: UsageKind,
        amount: Decimal,
        limit: Decimal | None,
        seat_default: Decimal | None,
        since: datetime,
        *,
        seat: tuple[UUID | None, Decimal | None] | None = None,
        inclusive: bool = False,
    ) -> SeatRefusal | None:
        # inclusive: refuse at the limit itself (admission of work of unknown size, which
        # needs some room left); otherwise refuse only past it.
        workspace_id = _ids(subject)[0]
        seat_id, seat_limit = seat or await self._seat_limit(conn, subject, kind, seat_default)
        checks: list[tuple[UUID | None, Decimal]] = [(None, limit)] if limit is not None else []
        if seat_id is not None and seat_limit is not None:
            checks.append((seat_id, seat_limit))
        for who, cap in checks:
            used = Decimal(
                await conn.fetchval(
                    "SELECT coalesce(sum(quantity), 0) FROM usage_records "
                    "WHERE workspace_id = $1 AND kind = $2 AND created_at >= $3 "
                    "AND ($4::uuid IS NULL OR user_id = $4)",
                    workspace_id,
                    kind,
                    since,
                    who,
                )
            )
            if used + amount > cap or (inclusive and used >= cap):
                return SeatRefusal(who, cap, used)
        return None

    async def refund(self, workspace_id: UUID, record_id: int) -> None:
        """Take back a charge whose work did not happen."""
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await conn.fetchval(
                "DELETE FROM usage_records WHERE workspace_id = $1 AND id = $2 RETURNING id",
                workspace_id,
                record_id,
            )
            if deleted is not None and self._meter is not None:
                await self._meter.refunded(conn, workspace_id, record_id)

    async def groups(
        self,
        workspace_id: UUID,
        group_by: UsageGrouping,
        *,
        since: datetime,
        until: datetime | None,
        limit: int,
        after: str | None = None,
        user_id: UUID | None = None,
    ) -> tuple[list[UsageGroup], str | None]:
        """A page of ``workspace_id``'s usage over ``[since, until)`` by key, UTC day or seat,
        in label order; only seat ``user_id``'s when given. ``after``: the label the previous
        page ended with. Returns the page and the cursor of the next one (None on the last
        page)."""
        label = _LABELS[group_by]  # one of three constant expressions, never client text
        # Each group has at most one row per kind: this many rows hold the first limit + 1
        # groups whole, which tells whether another page follows.
        rows = await self._pool.fetch(
            f"""
            SELECT label, kind, sum(quantity) AS total FROM (
                SELECT {label} AS label, kind, quantity FROM usage_records
                WHERE workspace_id = $1
                  AND created_at >= $2
                  AND ($3::timestamptz IS NULL OR created_at < $3)
                  AND ($6::uuid IS NULL OR user_id = $6)
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
            user_id,
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
    if group_by == "user":
        return UsageGroup(None, None, totals, UUID(label) if label else None)
    return UsageGroup(None, date.fromisoformat(label), totals)
