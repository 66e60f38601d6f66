"""A workspace's subscription: customer, trial, plan changes, cancellation, invoices.

Stripe is the system of record for money; ``store/billing.py`` keeps our copy of what the
workspace is on (plan, status, period), updated from Stripe's answers here and from its
events (``billing/stripe_events.py``). Every Stripe call goes through the gateway (circuit
breaker, errors translated).

Enterprise purchase-order invoicing: ``collection_method=send_invoice`` with net terms
(``days_until_due``), the PO number on the subscription's metadata and on every invoice as a
custom field of the customer's invoice settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

from ..config import Settings
from ..errors import Conflict, ValidationFailed
from ..store import billing as store
from ..store import db
from ..store.billing import BillingAccount
from .plans import FREE, Plan, PlanTable, plan_table
from .stripe_gateway import StripeGateway, require_gateway

__all__ = [
    "ENDED",
    "PurchaseOrder",
    "account_from_subscription",
    "cancel",
    "change_plan",
    "from_unix",
    "invoices",
    "payment_methods",
    "subscribe",
    "subscription_price",
]

# Statuses after which a workspace may subscribe afresh.
ENDED: Final = frozenset({"none", "canceled", "incomplete_expired"})
_PO_FIELD: Final = "PO number"


@dataclass(frozen=True, slots=True)
class PurchaseOrder:
    number: str
    net_terms_days: int


def from_unix(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) and value > 0 else None


def subscription_price(subscription: dict[str, Any]) -> str | None:
    """The price id of a subscription's (first) item: ``price`` now, ``plan`` on old APIs."""
    items = (subscription.get("items") or {}).get("data") or []
    if not items:
        return None
    item = items[0]
    for key in ("price", "plan"):
        found = item.get(key)
        if isinstance(found, dict) and isinstance(found.get("id"), str):
            return str(found["id"])
    return None


def _period(subscription: dict[str, Any], key: str) -> datetime | None:
    # Newer API versions keep the period on the items, older ones on the subscription.
    found = from_unix(subscription.get(key))
    if found is None:
        items = (subscription.get("items") or {}).get("data") or []
        found = from_unix(items[0].get(key)) if items else None
    return found


def account_from_subscription(
    account: BillingAccount, subscription: dict[str, Any], plans: PlanTable
) -> BillingAccount:
    """``account`` as Stripe's ``subscription`` says it is now."""
    status = str(subscription.get("status") or "none")
    if status in ENDED:
        return replace(
            account,
            stripe_subscription_id=None,
            plan=FREE,
            status=status,
            cancel_at_period_end=False,
            trial_end=None,
        )
    plan = plans.by_price(subscription_price(subscription))
    return replace(
        account,
        stripe_subscription_id=str(subscription["id"]),
        plan=plan.name if plan is not None else account.plan,
        status=status,
        cancel_at_period_end=bool(subscription.get("cancel_at_period_end")),
        current_period_start=_period(subscription, "current_period_start"),
        current_period_end=_period(subscription, "current_period_end"),
        trial_end=from_unix(subscription.get("trial_end")),
    )


async def _customer(
    gateway: StripeGateway,
    pool: db.Connection | db.Pool,
    account: BillingAccount,
    email: str | None,
    purchase_order: PurchaseOrder | None,
) -> BillingAccount:
    """The account with its Stripe customer, created once per workspace (the idempotency key
    makes a retried creation return the same customer), and the PO number set on it."""
    settings: dict[str, Any] = {}
    if purchase_order is not None:
        settings = {"custom_fields": [{"name": _PO_FIELD, "value": purchase_order.number}]}
    customer_id = account.stripe_customer_id
    if customer_id is None:
        params: dict[str, Any] = {"metadata": {"workspace_id": str(account.workspace_id)}}
        if email:
            params["email"] = email
        if settings:
            params["invoice_settings"] = settings
        customer = await gateway.call(
            lambda: gateway.v1.customers.create_async(
                params=params, options={"idempotency_key": f"customer:{account.workspace_id}"}
            )
        )
        customer_id = str(customer["id"])
    elif settings:
        await gateway.call(
            lambda: gateway.v1.customers.update_async(
                customer_id, params={"invoice_settings": settings}
            )
        )
    found = replace(
        account,
        stripe_customer_id=customer_id,
        purchase_order=purchase_order.number if purchase_order else account.purchase_order,
    )
    await store.save_account(pool, found)
    return found


async def _promotion_code(gateway: StripeGateway, code: str) -> str:
    """The id of the active promotion code customers type as ``code``."""
    found = await gateway.call(
        lambda: gateway.v1.promotion_codes.list_async(
            params={"code": code, "active": True, "limit": 1}
        )
    )
    matches = found.get("data") or []
    if not matches:
        raise ValidationFailed(
            f"no active promotion code {code!r}",
            details={"fields": [{"field": "promotion_code", "message": "unknown or inactive"}]},
        )
    return str(matches[0]["id"])


async def subscribe(
    pool: db.Pool,
    settings: Settings,
    workspace_id: UUID,
    plan_name: str,
    *,
    trial_days: int | None = None,
    coupon: str | None = None,
    promotion_code: str | None = None,
    purchase_order: PurchaseOrder | None = None,
    email: str | None = None,
) -> BillingAccount:
    """Start the workspace's subscription to ``plan_name`` (Conflict if it has one)."""
    gateway = require_gateway(settings)
    plans = plan_table(settings)
    plan = plans.get(plan_name)
    price = _stripe_price(plan, ": nothing to subscribe to")
    if coupon and promotion_code:
        raise ValidationFailed("give a coupon or a promotion code, not both")
    # Under the account's row lock until the subscription is stored: a second request for the
    # same workspace waits here and then finds it subscribed (409), so two simultaneous
    # requests never make two Stripe subscriptions. An admin route, rarely called: holding a
    # connection for the length of Stripe's answer costs nothing that matters.
    async with pool.acquire() as conn, conn.transaction():
        account = await store.lock_account(conn, workspace_id)
        if account.status not in ENDED:
            raise Conflict(
                f"the workspace already has a {account.status} {account.plan} subscription; "
                "change its plan with PATCH /v1/admin/billing/subscription"
            )
        account = await _customer(gateway, conn, account, email, purchase_order)
        params: dict[str, Any] = {
            "customer": account.stripe_customer_id,
            "items": [{"price": price}],
            "metadata": {"workspace_id": str(workspace_id), "plan": plan.name},
        }
        if trial_days:
            params["trial_period_days"] = trial_days
        if coupon:
            params["discounts"] = [{"coupon": coupon}]
        elif promotion_code:
            code = await _promotion_code(gateway, promotion_code)
            params["discounts"] = [{"promotion_code": code}]
        if purchase_order is not None:
            params["collection_method"] = "send_invoice"
            params["days_until_due"] = purchase_order.net_terms_days
            params["metadata"]["po_number"] = purchase_order.number
        subscription = await gateway.call(
            lambda: gateway.v1.subscriptions.create_async(params=params)
        )
        return await _saved(conn, account, subscription, plans)


def _stripe_price(plan: Plan, advice: str) -> str:
    """The plan's Stripe price; a plan without one (free) is nothing to pay for."""
    if plan.stripe_price_id is None:
        raise ValidationFailed(
            f"the {plan.name} plan has no Stripe price{advice}",
            details={"fields": [{"field": "plan", "message": "not a paid plan"}]},
        )
    return plan.stripe_price_id


async def _saved(
    pool: db.Connection | db.Pool,
    account: BillingAccount,
    subscription: dict[str, Any],
    plans: PlanTable,
) -> BillingAccount:
    """The account as Stripe now has its subscription, stored."""
    found = account_from_subscription(account, subscription, plans)
    await store.save_account(pool, found)
    return found


async def _current(
    pool: db.Pool, gateway: StripeGateway, workspace_id: UUID
) -> tuple[BillingAccount, dict[str, Any]]:
    account = await store.account(pool, workspace_id)
    if account.stripe_subscription_id is None:
        raise Conflict("the workspace has no subscription; start one first")
    subscription_id = account.stripe_subscription_id
    subscription = await gateway.call(
        lambda: gateway.v1.subscriptions.retrieve_async(subscription_id)
    )
    return account, subscription


async def change_plan(
    pool: db.Pool, settings: Settings, workspace_id: UUID, plan_name: str, *, prorate: bool
) -> BillingAccount:
    """Upgrade or downgrade now; ``prorate``: Stripe credits the unused time of the old plan
    and charges the new one for the rest of the period."""
    gateway = require_gateway(settings)
    plans = plan_table(settings)
    plan = plans.get(plan_name)
    price = _stripe_price(plan, "; cancel the subscription instead")
    account, subscription = await _current(pool, gateway, workspace_id)
    items = (subscription.get("items") or {}).get("data") or []
    item: dict[str, Any] = {"price": price}
    if items:
        item["id"] = items[0]["id"]
    params = {
        "items": [item],
        "proration_behavior": "create_prorations" if prorate else "none",
        "cancel_at_period_end": False,
        "metadata": {"plan": plan.name},
    }
    subscription_id = str(subscription["id"])
    updated = await gateway.call(
        lambda: gateway.v1.subscriptions.update_async(subscription_id, params=params)
    )
    return await _saved(pool, account, updated, plans)


async def cancel(pool: db.Pool, settings: Settings, workspace_id: UUID) -> BillingAccount:
    """Cancel at the end of the period that is paid for (the plan lasts until then)."""
    gateway = require_gateway(settings)
    account, subscription = await _current(pool, gateway, workspace_id)
    subscription_id = str(subscription["id"])
    updated = await gateway.call(
        lambda: gateway.v1.subscriptions.update_async(
            subscription_id, params={"cancel_at_period_end": True}
        )
    )
    return await _saved(pool, account, updated, plan_table(settings))


async def invoices(
    pool: db.Pool, settings: Settings, workspace_id: UUID, limit: int
) -> list[dict[str, Any]]:
    """The workspace's invoices, newest first, as Stripe has them."""
    gateway = require_gateway(settings)
    customer = (await store.account(pool, workspace_id)).stripe_customer_id
    if customer is None:
        return []
    found = await gateway.call(
        lambda: gateway.v1.invoices.list_async(params={"customer": customer, "limit": limit})
    )
    return list(found.get("data") or [])


async def payment_methods(
    pool: db.Pool, settings: Settings, workspace_id: UUID
) -> list[dict[str, Any]]:
    """The customer's saved cards."""
    gateway = require_gateway(settings)
    customer = (await store.account(pool, workspace_id)).stripe_customer_id
    if customer is None:
        return []
    found = await gateway.call(
        lambda: gateway.v1.payment_methods.list_async(
            params={"customer": customer, "type": "card", "limit": 100}
        )
    )
    return list(found.get("data") or [])
