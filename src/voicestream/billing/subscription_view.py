"""What a workspace is on and has used this period, as subscription APIs show it
(ElevenLabs' ``GET /v1/user/subscription``).

With billing: the plan's name and included credits, the credits spent since the period began
(the calendar month in UTC for a workspace with no paid period), the period's end, and the
status in ElevenLabs' words (no subscription is ``free``). Without billing: None, and the
caller shows the self-hosted figures it always did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from ..config import Settings
from ..store import billing as store
from ..store import db
from .plans import Plan, plan_table
from .stripe_gateway import gateway_for

__all__ = ["SubscriptionView", "current_plan", "subscription_view"]

_STATUS: Final = {
    "trialing": "trialing",
    "active": "active",
    "past_due": "past_due",
    "unpaid": "past_due",
    "incomplete": "incomplete",
}


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    tier: str
    status: str  # trialing, active, incomplete, past_due or free
    credits_used: int  # this period
    credits_included: int
    resets_at: datetime
    currency: str


def _next_month(now: datetime) -> datetime:
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)


async def subscription_view(
    pool: db.Pool, settings: Settings, workspace_id: UUID
) -> SubscriptionView | None:
    if gateway_for(settings) is None:
        return None
    account = await store.account(pool, workspace_id)
    plan = plan_table(settings).get(account.plan)
    now = datetime.now(UTC)
    start, end = account.current_period_start, account.current_period_end
    if start is None or end is None or end <= now:
        start, end = datetime(now.year, now.month, 1, tzinfo=UTC), _next_month(now)
    used, _ = await store.period_spent(pool, workspace_id, start)
    return SubscriptionView(
        tier=plan.name,
        status=_STATUS.get(account.status, "free"),
        credits_used=used,
        credits_included=plan.included_credits,
        resets_at=end,
        currency=plan.currency,
    )


async def current_plan(pool: db.Pool, settings: Settings, workspace_id: UUID) -> Plan | None:
    """The plan the workspace is on, for its limits; None without billing (no limits of a
    plan apply, only the server's)."""
    if gateway_for(settings) is None:
        return None
    account = await store.account(pool, workspace_id)
    return plan_table(settings).get(account.plan)
