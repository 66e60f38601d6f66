"""Stripe's events, verified and applied once each.

``verify`` checks ``Stripe-Signature`` (HMAC-SHA256 of ``"{t}.{body}"`` under the endpoint's
secret, within the tolerance) with the official library and parses the event. ``apply`` runs
one event in one database transaction that also records its id (``billing_events``), so a
replayed or re-delivered event changes nothing, and an event whose effects failed is applied
in full when Stripe delivers it again:

- ``invoice.paid``: the period's included credits of the plan the invoice is for are granted
  in the credits ledger (ref ``invoice:<id>``, once per invoice even across event ids), and a
  past-due workspace is active again.
- ``invoice.payment_failed``: the workspace is past due (new paid work gets 402
  ``payment_past_due``; reads keep working).
- ``customer.subscription.created|updated|deleted``: plan, status, period, trial and
  cancellation as Stripe has them; deleted means back on the free plan.

Events of customers we do not know, and types we do not use, are acknowledged and ignored.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Final, Literal
from uuid import UUID

import stripe

from ..config import Settings
from ..errors import BadRequest, BillingNotConfigured, ValidationFailed
from ..store import billing as store
from ..store import db
from . import ledger
from .plans import Plan, plan_table
from .subscriptions import account_from_subscription, from_unix

__all__ = ["HANDLED", "Outcome", "apply", "verify"]

HANDLED: Final = frozenset(
    {
        "invoice.paid",
        "invoice.payment_failed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)
Outcome = Literal["applied", "duplicate", "ignored"]
MAX_EVENT_BYTES: Final = 512 * 1024


def verify(payload: bytes, signature: str | None, settings: Settings) -> dict[str, Any]:
    """The event ``payload`` carries, once its signature checks out (BadRequest otherwise)."""
    secret = settings.stripe_webhook_secret
    if not secret:
        raise BillingNotConfigured(
            "Stripe events are not accepted: VOICESTREAM_STRIPE_WEBHOOK_SECRET is not set"
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the event is not UTF-8 text") from None
    try:
        stripe.WebhookSignature.verify_header(
            text, signature, secret, settings.stripe_webhook_tolerance_seconds
        )
    except stripe.SignatureVerificationError as exc:
        raise BadRequest(
            f"Stripe-Signature does not verify: {exc.user_message}",
            details={"reason": "signature"},
        ) from None
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        raise BadRequest("the event is not JSON") from None
    data = event.get("data") if isinstance(event, dict) else None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not 0 < len(event["id"]) <= 255
        or not isinstance(event.get("type"), str)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise ValidationFailed("not a Stripe event: it needs an id, a type and data.object")
    return event


def _invoice_plan(invoice: dict[str, Any], settings: Settings, current: str) -> Plan:
    plans = plan_table(settings)
    for line in (invoice.get("lines") or {}).get("data") or []:
        for key in ("price", "plan"):
            found = line.get(key)
            plan = plans.by_price(found.get("id")) if isinstance(found, dict) else None
            if plan is not None:
                return plan
    return plans.get(current)


def _invoice_period(invoice: dict[str, Any]) -> tuple[Any, Any]:
    # A subscription invoice's own period_start/end is the period before it; its lines say
    # which period it pays for.
    for line in (invoice.get("lines") or {}).get("data") or []:
        period = line.get("period")
        if isinstance(period, dict) and period.get("start") and period.get("end"):
            return from_unix(period["start"]), from_unix(period["end"])
    return from_unix(invoice.get("period_start")), from_unix(invoice.get("period_end"))


async def _apply_one(
    conn: db.Connection, settings: Settings, workspace_id: UUID, event: dict[str, Any]
) -> None:
    kind, obj = event["type"], event["data"]["object"]
    account = await store.lock_account(conn, workspace_id)
    if kind == "invoice.paid":
        plan = _invoice_plan(obj, settings, account.plan)
        if plan.included_credits > 0 and isinstance(obj.get("id"), str):
            await ledger.grant(
                conn,
                workspace_id,
                plan.included_credits,
                note=f"{plan.name} plan credits, invoice {obj['id']}",
                ref=f"invoice:{obj['id']}",
            )
        start, end = _invoice_period(obj)
        if obj.get("subscription") and start is not None:
            account = replace(account, current_period_start=start, current_period_end=end)
        if account.status in ("past_due", "unpaid"):
            account = replace(account, status="active")
    elif kind == "invoice.payment_failed":
        account = replace(account, status="past_due")
    else:
        account = account_from_subscription(account, obj, plan_table(settings))
    await store.save_account(conn, account)


async def apply(pool: db.Pool, settings: Settings, event: dict[str, Any]) -> Outcome:
    """Apply a verified event once (``duplicate``: its id was applied before)."""
    if event["type"] not in HANDLED:
        return "ignored"
    customer = event["data"]["object"].get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if not isinstance(customer, str):
        return "ignored"
    workspace_id = await store.workspace_of_customer(pool, customer)
    if workspace_id is None:
        return "ignored"
    async with pool.acquire() as conn, conn.transaction():
        # The account's lock first: two deliveries of one event queue there, and the second
        # then finds the first's id claimed.
        await store.lock_account(conn, workspace_id)
        if not await store.claim_event(conn, workspace_id, event["id"], event["type"]):
            return "duplicate"
        await _apply_one(conn, settings, workspace_id, event)
    return "applied"
