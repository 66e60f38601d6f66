"""Monthly quotas per workspace and per seat: characters synthesized, audio seconds
transcribed, minutes of conversation. Unset means unlimited (the default).

The period is the calendar month in UTC. Work is refused before it starts once it would pass
the quota: work whose size is known first (a TTS request's text) is charged up front, within
the quota, atomically with the check (``charge``), so concurrent requests cannot overshoot
together; streams, whose size nobody knows when they open, are admitted while the workspace
is under its quota (``require_headroom``) and recorded when they end, so a quota may be passed
by what the streams open at that moment go on to use.

A seat is a member's share of their workspace: an owner or admin may give a member quotas of
their own (``memberships.quota_*``; else the ``seat_quota_*`` settings apply), checked on top
of the workspace's, so a member is refused at their own quota even while the workspace has
room. The seat of a request is the signed-in user, or the member who made the API key it
carries (``store/usage.py``): a key does not step around its maker's quota.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID

from ..config import Settings
from ..errors import Forbidden, QuotaExceeded, VoiceStreamError

if TYPE_CHECKING:
    from ..store.keys import Principal
    from ..store.members import Member, MemberRepository
    from ..store.usage import SeatRefusal, Subject, UsageKind, UsageRepository

__all__ = [
    "Charge",
    "charge",
    "month_start",
    "next_month_start",
    "quota_limit",
    "require_headroom",
    "seat_quota_default",
    "set_seat_quotas",
]

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


def seat_quota_default(settings: Settings, kind: UsageKind) -> Decimal | None:
    """A seat's monthly limit of ``kind`` when the member has none of their own; None:
    unlimited (within the workspace's)."""
    value: float | None
    if kind == "tts_characters":
        value = settings.seat_quota_tts_characters
    elif kind == "stt_seconds":
        value = settings.seat_quota_stt_seconds
    else:
        minutes = settings.seat_quota_conversation_minutes
        value = None if minutes is None else minutes * 60
    return None if value is None else Decimal(str(value))


def _exceeded(kind: UsageKind, refusal: SeatRefusal, asked: Decimal) -> QuotaExceeded:
    shown = 60 if kind == "conversation_seconds" else 1
    resets = next_month_start()
    limit, used = refusal.limit, refusal.used
    whose = "the workspace's" if refusal.user_id is None else f"seat {refusal.user_id}'s"
    details: dict[str, object] = {
        "kind": kind,
        "limit": float(limit),
        "used": float(used),
        "requested": float(asked),
        "resets_at": resets.isoformat(),
        "scope": "workspace" if refusal.user_id is None else "seat",
    }
    if refusal.user_id is not None:
        details["user_id"] = str(refusal.user_id)
    return QuotaExceeded(
        f"{whose} monthly quota of {float(limit / shown):g} {_UNITS[kind]} is used up"
        + (f" (used {float(used / shown):g}, this needs {float(asked / shown):g})" if asked else "")
        + f"; it resets at {resets.isoformat()}",
        details=details,
    )


async def require_headroom(
    usage: UsageRepository, settings: Settings, subject: Subject, kind: UsageKind
) -> None:
    """Raises ``QuotaExceeded`` when ``subject``'s workspace, or its seat, has used up its
    ``kind`` quota. ``subject`` may be a bare workspace id: then only the workspace counts."""
    refusal = await usage.headroom(
        subject,
        kind,
        limit=quota_limit(settings, kind),
        seat_default=seat_quota_default(settings, kind),
        since=month_start(),
    )
    if refusal is not None:
        raise _exceeded(kind, refusal, Decimal(0))


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

    @asynccontextmanager
    async def covering(self, workspace_id: UUID) -> AsyncIterator[None]:
        """Run the work this charge pays for: a failure of ours (a VoiceStreamError) takes
        the charge back; done, or cut short by a client that hung up (ConnectionError), it
        stands, since what was made was made."""
        try:
            yield
        except VoiceStreamError:
            await self.refund(workspace_id)
            raise
        except ConnectionError:
            await self.settle()
            raise
        await self.settle()


async def charge(
    usage: UsageRepository, settings: Settings, subject: Subject, kind: UsageKind, amount: float
) -> Charge:
    """Charge ``amount`` of ``kind`` before the work, within the workspace's and the seat's
    quotas.

    Without a quota nothing is written yet (``settle`` records it once the work is done, as
    it always was); with one the record is written now, under the workspace's lock, or
    ``QuotaExceeded`` raised when it would pass either quota.
    """
    outcome = await usage.charge_within(
        subject,
        kind,
        amount,
        limit=quota_limit(settings, kind),
        seat_default=seat_quota_default(settings, kind),
        since=month_start(),
    )
    if outcome.refused is not None:
        raise _exceeded(kind, outcome.refused, Decimal(str(amount)))
    return Charge(usage, subject, kind, amount, outcome.record_id)


async def set_seat_quotas(
    usage: UsageRepository,
    members: MemberRepository,
    principal: Principal,
    user_id: UUID,
    changes: dict[UsageKind, Decimal | None],
) -> tuple[Member, dict[UsageKind, Decimal]]:
    """Set or clear (None) a member's own quotas; returns the member and the quotas now set.

    The role rules are the policy's (owners and admins change members) plus the one of
    ``identity/members.py``: only an owner may change what an owner may do. Raises NotFound
    (no such member here) or Forbidden.
    """
    member = await members.get(principal.workspace_id, user_id)
    if member.role == "owner" and principal.role != "owner":
        raise Forbidden(
            f"only an owner may change an owner's quotas; this role is {principal.role}",
            details={"role": principal.role, "required": "owner"},
        )
    return member, await usage.set_seat_quotas(principal.workspace_id, user_id, changes)
