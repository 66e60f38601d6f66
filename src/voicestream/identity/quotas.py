"""Monthly quotas per workspace: characters synthesized, audio seconds transcribed, minutes of
conversation. Unset means unlimited (the default).

The period is the calendar month in UTC. Work is refused before it starts once it would pass
the quota: work whose size is known first (a TTS request's text) is charged up front, within
the quota, atomically with the check (``charge``), so concurrent requests cannot overshoot
together; streams, whose size nobody knows when they open, are admitted while the workspace
is under its quota (``require_headroom``) and recorded when they end, so a quota may be passed
by what the streams open at that moment go on to use.

Seats (a member's own quota) come with users: the scope is the workspace today and a
``user_id`` later, passed through to ``UsageRepository.total``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID

from ..config import Settings
from ..errors import QuotaExceeded

if TYPE_CHECKING:
    from ..store.usage import Subject, UsageKind, UsageRepository

__all__ = ["Charge", "charge", "month_start", "next_month_start", "quota_limit", "require_headroom"]

_UNITS = {
    "tts_characters": "characters",
    "stt_seconds": "seconds of audio",
    "conversation_seconds": "minutes of conversation",
}


def month_start(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: datetime | None = None) -> datetime:
    start = month_start(now)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def quota_limit(settings: Settings, kind: UsageKind) -> Decimal | None:
    """The workspace's monthly limit of ``kind`` in its recorded unit; None: unlimited."""
    value: float | None
    if kind == "tts_characters":
        value = settings.quota_tts_characters
    elif kind == "stt_seconds":
        value = settings.quota_stt_seconds
    else:
        minutes = settings.quota_conversation_minutes
        value = None if minutes is None else minutes * 60
    return None if value is None else Decimal(str(value))


def _exceeded(kind: UsageKind, limit: Decimal, used: Decimal, asked: Decimal) -> QuotaExceeded:
    shown = 60 if kind == "conversation_seconds" else 1
    resets = next_month_start()
    return QuotaExceeded(
        f"the workspace's monthly quota of {float(limit / shown):g} {_UNITS[kind]} is used up"
        + (f" (used {float(used / shown):g}, this needs {float(asked / shown):g})" if asked else "")
        + f"; it resets at {resets.isoformat()}",
        details={
            "kind": kind,
            "limit": float(limit),
            "used": float(used),
            "requested": float(asked),
            "resets_at": resets.isoformat(),
        },
    )


async def require_headroom(
    usage: UsageRepository,
    settings: Settings,
    workspace_id: UUID,
    kind: UsageKind,
    *,
    user_id: UUID | None = None,
) -> None:
    """Raises ``QuotaExceeded`` when ``workspace_id`` has used up its ``kind`` quota."""
    limit = quota_limit(settings, kind)
    if limit is None:
        return
    used = await usage.total(workspace_id, kind, since=month_start(), user_id=user_id)
    if used >= limit:
        raise _exceeded(kind, limit, used, Decimal(0))


@dataclass(frozen=True, slots=True)
class Charge:
    """Usage charged before the work; ``refund`` when the work did not happen after all."""

    usage: UsageRepository
    subject: Subject
    kind: UsageKind
    amount: float
    record_id: int | None  # None: not recorded yet (no quota): ``settle`` records it

    async def settle(self) -> None:
        """The work happened: make sure it is recorded."""
        if self.record_id is None:
            await self.usage.record(self.subject, self.kind, self.amount)

    async def refund(self, workspace_id: UUID) -> None:
        if self.record_id is not None:
            await self.usage.refund(workspace_id, self.record_id)


async def charge(
    usage: UsageRepository, settings: Settings, subject: Subject, kind: UsageKind, amount: float
) -> Charge:
    """Charge ``amount`` of ``kind`` before the work, within the quota.

    Without a quota nothing is written yet (``settle`` records it once the work is done, as
    it always was); with one the record is written now, under the workspace's lock, or
    ``QuotaExceeded`` raised when it would pass the quota.
    """
    limit = quota_limit(settings, kind)
    if limit is None:
        return Charge(usage, subject, kind, amount, None)
    record_id, used = await usage.charge_within(
        subject, kind, amount, limit=limit, since=month_start()
    )
    if record_id is None:
        raise _exceeded(kind, limit, used, Decimal(str(amount)))
    return Charge(usage, subject, kind, amount, record_id)
