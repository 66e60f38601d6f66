"""The plans a workspace may be on, and what each includes.

A default table lives here; ``VOICESTREAM_BILLING_PLANS`` (a JSON object) overrides it per
plan and field, so an operator sets the Stripe price ids and their own figures without a
release::

    {"starter": {"stripe_price_id": "price_1Abc", "included_credits": 50000}}

Prices are in the currency's smallest unit (cents). ``included_credits`` are granted in the
credits ledger when the period's invoice is paid; usage past them is overage, billed at
``overage_cents_per_1000`` through Stripe. A plan without a Stripe price id cannot be
subscribed to (the free plan is what every workspace has without a subscription).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any, Final, Literal, get_args

from ..config import Settings
from ..errors import ValidationFailed

__all__ = [
    "DEFAULT_PLANS",
    "FREE",
    "PLAN_NAMES",
    "Plan",
    "PlanName",
    "PlanTable",
    "parse_plans",
    "plan_table",
]

PlanName = Literal["free", "starter", "creator", "pro", "enterprise"]
PLAN_NAMES: Final[tuple[PlanName, ...]] = get_args(PlanName)
FREE: Final[PlanName] = "free"


@dataclass(frozen=True, slots=True)
class Plan:
    name: PlanName
    included_credits: int  # per billing period
    monthly_price_cents: int
    overage_cents_per_1000: int  # per 1000 credits past the included ones; 0: no overage
    seat_price_cents: int
    concurrency_limit: int  # simultaneous streams
    stripe_price_id: str | None = None
    currency: str = "usd"

    def overage_cents(self, credits: int) -> int:
        """What ``credits`` of overage cost, rounded up to a whole cent."""
        return -(-credits * self.overage_cents_per_1000 // 1000)


DEFAULT_PLANS: Final[Mapping[PlanName, Plan]] = {
    "free": Plan("free", 10_000, 0, 0, 0, 2),
    "starter": Plan("starter", 30_000, 500, 300, 0, 3, "price_starter"),
    "creator": Plan("creator", 100_000, 2_200, 240, 0, 5, "price_creator"),
    "pro": Plan("pro", 500_000, 9_900, 180, 0, 10, "price_pro"),
    "enterprise": Plan("enterprise", 2_000_000, 33_000, 120, 2_000, 50, "price_enterprise"),
}

_INT_FIELDS: Final = frozenset(
    f.name for f in fields(Plan) if f.name not in ("name", "stripe_price_id", "currency")
)


@dataclass(frozen=True, slots=True)
class PlanTable:
    plans: Mapping[PlanName, Plan]

    def get(self, name: str) -> Plan:
        """The plan called ``name``; ValidationFailed naming the known ones otherwise."""
        if name not in self.plans:
            raise ValidationFailed(
                f"unknown plan {name!r}; plans: {', '.join(self.plans)}",
                details={"fields": [{"field": "plan", "message": "unknown plan"}]},
            )
        return self.plans[name]  # type: ignore[index]  # checked just above

    def by_price(self, price_id: str | None) -> Plan | None:
        """The plan whose Stripe price is ``price_id``, if any."""
        return next((p for p in self.plans.values() if p.stripe_price_id == price_id), None)


def _override(plan: Plan, changes: Any) -> Plan:
    if not isinstance(changes, dict):
        raise ValueError(f"plan {plan.name!r}: expected an object of fields")
    values: dict[str, Any] = {}
    for key, value in changes.items():
        if key in _INT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**12:
                raise ValueError(f"plan {plan.name!r}: {key} must be a whole number >= 0")
        elif key == "stripe_price_id":
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 255):
                raise ValueError(f"plan {plan.name!r}: stripe_price_id must be a string or null")
        elif key == "currency":
            if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
                raise ValueError(f"plan {plan.name!r}: currency must be a 3-letter code")
            value = value.lower()
        else:
            raise ValueError(f"plan {plan.name!r}: unknown field {key!r}")
        values[key] = value
    return replace(plan, **values)


def parse_plans(text: str | None) -> PlanTable:
    """The default table with ``text``'s overrides; ValueError saying what is wrong."""
    plans = dict(DEFAULT_PLANS)
    if text:
        try:
            overrides = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"VOICESTREAM_BILLING_PLANS is not JSON: {exc}") from None
        if not isinstance(overrides, dict):
            raise ValueError("VOICESTREAM_BILLING_PLANS must be a JSON object of plans")
        for name, changes in overrides.items():
            if name not in plans:
                raise ValueError(f"unknown plan {name!r}; plans: {', '.join(PLAN_NAMES)}")
            plans[name] = _override(plans[name], changes)
    prices = [p.stripe_price_id for p in plans.values() if p.stripe_price_id]
    if len(prices) != len(set(prices)):
        raise ValueError("two plans share a Stripe price id")
    return PlanTable(plans)


@lru_cache(maxsize=8)
def _cached(text: str | None) -> PlanTable:
    return parse_plans(text)


def plan_table(settings: Settings) -> PlanTable:
    return _cached(settings.billing_plans)
