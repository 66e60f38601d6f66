"""Overage reporting and the nightly reconciliation with Stripe (job ``billing_reconcile``).

Overage: credits spent in the current period past the plan's included ones are billed as a
Stripe invoice item on the subscription's next invoice. Each report is first written as a row
(``billing_usage_reports``) keyed by the last ledger transaction it covers, under the
account's lock, and then sent with that key as Stripe's Idempotency-Key: two runs at once
claim one row, a run after a crash between the row and Stripe's answer re-sends the same key
(Stripe answers with the first item), and the next run reports only what was spent since.

Seats: a plan with a seat price bills the workspace's members once per billing period, as an
invoice item on that period's invoice, counted when the period is first reconciled (a true-up:
members who join later in the period are billed from the next one). The charge is claimed as a
row keyed by the period (``billing_seat_charges``) before Stripe is called, with the same
Idempotency-Key on a retry, so a period's seats are billed once however often it runs.

Reconciliation compares the subscription as Stripe has it (plan, status, cancellation) with
our copy, records what differed (``GET /v1/admin/billing/reconciliation``, and the audit log),
and adopts Stripe's view, Stripe being the system of record for money. It reports overage too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from ..config import Settings
from ..errors import ValidationFailed
from ..store import billing as store
from ..store import db
from ..store.audit import Actor, AuditLog
from ..store.billing import Reconciliation
from .plans import plan_table
from .stripe_gateway import StripeGateway, require_gateway
from .subscriptions import account_from_subscription

__all__ = ["OverageReport", "SeatsReport", "reconcile", "report_overage", "report_seats"]

_SYSTEM = Actor(display="billing_reconcile")


@dataclass(frozen=True, slots=True)
class OverageReport:
    credits: int  # reported by this run
    amount_cents: int
    period_spent: int  # credits spent in the period so far
    included_credits: int


@dataclass(frozen=True, slots=True)
class SeatsReport:
    seats: int  # billed for the current period (0: nothing to bill)
    amount_cents: int


async def report_seats(pool: db.Pool, settings: Settings, workspace_id: UUID) -> SeatsReport:
    """Bill the current period's seats, once (see the module's docstring)."""
    gateway = require_gateway(settings)
    account = await store.account(pool, workspace_id)
    plan = plan_table(settings).get(account.plan)
    period = account.current_period_start
    customer = account.stripe_customer_id
    active = account.status in ("active", "past_due")  # a trial's seats are free, as its plan
    if not plan.seat_price_cents or customer is None or period is None or not active:
        return SeatsReport(0, 0)
    async with pool.acquire() as conn, conn.transaction():
        await store.lock_account(conn, workspace_id)
        seats = await store.member_count(conn, workspace_id)
        if seats == 0:
            return SeatsReport(0, 0)
        charge = await store.claim_seat_charge(
            conn, workspace_id, period, seats, seats * plan.seat_price_cents
        )
    if charge.invoice_item_id is None:
        params: dict[str, Any] = {
            "customer": customer,
            "amount": charge.amount_cents,
            "currency": plan.currency,
            "description": f"Seats: {charge.seats} x {plan.name}",
            "metadata": {"workspace_id": str(workspace_id), "seats": str(charge.seats)},
        }
        if account.stripe_subscription_id is not None:
            params["subscription"] = account.stripe_subscription_id
        key = charge.idempotency_key(workspace_id)
        item = await gateway.call(
            lambda: gateway.v1.invoice_items.create_async(
                params=params, options={"idempotency_key": key}
            )
        )
        await store.mark_seat_charge(pool, workspace_id, period, str(item["id"]))
    return SeatsReport(charge.seats, charge.amount_cents)


async def _send(
    gateway: StripeGateway,
    pool: db.Pool,
    workspace_id: UUID,
    customer: str,
    subscription: str | None,
    report: store.UsageReport,
    currency: str,
) -> None:
    params: dict[str, Any] = {
        "customer": customer,
        "amount": report.amount_cents,
        "currency": currency,
        "description": f"Overage: {report.credits} credits",
        "metadata": {"workspace_id": str(workspace_id), "credits": str(report.credits)},
    }
    if subscription is not None:
        params["subscription"] = subscription
    item = await gateway.call(
        lambda: gateway.v1.invoice_items.create_async(
            params=params, options={"idempotency_key": report.idempotency_key}
        )
    )
    await store.mark_reported(pool, workspace_id, report.id, str(item["id"]))


async def report_overage(pool: db.Pool, settings: Settings, workspace_id: UUID) -> OverageReport:
    """Report the period's unreported overage to Stripe, once (see the module's docstring)."""
    gateway = require_gateway(settings)
    account = await store.account(pool, workspace_id)
    plan = plan_table(settings).get(account.plan)
    customer = account.stripe_customer_id
    if customer is None or account.current_period_start is None:
        return OverageReport(0, 0, 0, plan.included_credits)
    for pending in await store.unreported(pool, workspace_id):
        await _send(
            gateway,
            pool,
            workspace_id,
            customer,
            account.stripe_subscription_id,
            pending,
            plan.currency,
        )
    period = account.current_period_start
    async with pool.acquire() as conn, conn.transaction():
        await store.lock_account(conn, workspace_id)
        spent, through = await store.period_spent(conn, workspace_id, period)
        overage = max(0, spent - plan.included_credits)
        due = overage - await store.reported_credits(conn, workspace_id, period)
        if due <= 0 or plan.overage_cents_per_1000 == 0:
            return OverageReport(0, 0, spent, plan.included_credits)
        report = await store.start_usage_report(
            conn,
            workspace_id,
            period_start=period,
            through_transaction_id=through,
            credits=due,
            amount_cents=plan.overage_cents(due),
        )
    await _send(
        gateway,
        pool,
        workspace_id,
        customer,
        account.stripe_subscription_id,
        report,
        plan.currency,
    )
    return OverageReport(report.credits, report.amount_cents, spent, plan.included_credits)


async def reconcile(
    pool: db.Pool, settings: Settings, workspace_id: UUID, *, job_id: UUID | None = None
) -> tuple[Reconciliation, OverageReport]:
    """Compare, record, adopt Stripe's view; then report overage."""
    gateway = require_gateway(settings)
    plans = plan_table(settings)
    ours = await store.account(pool, workspace_id)
    drift: list[dict[str, Any]] = []
    subscription_id = ours.stripe_subscription_id
    if subscription_id is not None:
        try:
            theirs_raw = await gateway.call(
                lambda: gateway.v1.subscriptions.retrieve_async(subscription_id)
            )
        except ValidationFailed:
            # Stripe does not know it (deleted there while its event never reached us).
            theirs_raw = {"id": subscription_id, "status": "canceled"}
        theirs = account_from_subscription(ours, theirs_raw, plans)
        for field in ("plan", "status", "cancel_at_period_end", "stripe_subscription_id"):
            mine, stripes = getattr(ours, field), getattr(theirs, field)
            if mine != stripes:
                drift.append({"field": field, "ours": mine, "stripe": stripes})
        if drift:
            await store.save_account(pool, theirs)
    found = await store.record_reconciliation(pool, workspace_id, drift, job_id)
    if drift:
        await AuditLog(pool).record(
            "billing.drift",
            actor=_SYSTEM,
            workspace_id=workspace_id,
            target_type="subscription",
            target_id=subscription_id,
            details={"drift": drift},
        )
    await report_seats(pool, settings, workspace_id)
    return found, await report_overage(pool, settings, workspace_id)
