"""The OpenAPI entries of billing (rest/billing.py): ``/v1/admin/billing…`` and Stripe's
webhook, merged into ``OPERATIONS``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..rest.billing import (
    BillingAccountModel,
    ChangePlanBody,
    InvoicesModel,
    InvoicesQuery,
    OverageModel,
    PaymentMethodsModel,
    PlansModel,
    ReconciliationModel,
    ReconciliationsModel,
    SubscribeBody,
    WebhookReceipt,
)
from ..rest.openapi import OBJECT_BODY, Op, ok

__all__ = ["BILLING_OPERATIONS"]

_TAG: Final = "billing"
_ADMINS: Final = " (owners and admins)"
_STRIPE: Final = " Without Stripe configured: 409 billing_not_configured."

BILLING_OPERATIONS: Final[Mapping[tuple[str, str], Op]] = {
    ("GET", "/v1/admin/billing"): Op(
        "The workspace's plan and subscription" + _ADMINS,
        _TAG,
        responses=ok(BillingAccountModel),
    ),
    ("GET", "/v1/admin/billing/plans"): Op(
        "The plans and what each includes" + _ADMINS, _TAG, responses=ok(PlansModel)
    ),
    ("POST", "/v1/admin/billing/subscription"): Op(
        "Subscribe to a plan: trial, coupon or promotion code, purchase-order invoicing" + _ADMINS,
        _TAG,
        description=_STRIPE,
        body=SubscribeBody,
        responses=ok(BillingAccountModel, 201, "The workspace's account, subscribed."),
    ),
    ("PATCH", "/v1/admin/billing/subscription"): Op(
        "Upgrade or downgrade, prorated by default" + _ADMINS,
        _TAG,
        description=_STRIPE,
        body=ChangePlanBody,
        responses=ok(BillingAccountModel),
    ),
    ("DELETE", "/v1/admin/billing/subscription"): Op(
        "Cancel at the end of the paid period" + _ADMINS,
        _TAG,
        description=_STRIPE,
        responses=ok(BillingAccountModel),
    ),
    ("GET", "/v1/admin/billing/invoices"): Op(
        "The workspace's invoices, newest first" + _ADMINS,
        _TAG,
        description=_STRIPE,
        query=InvoicesQuery,
        responses=ok(InvoicesModel),
    ),
    ("GET", "/v1/admin/billing/payment-methods"): Op(
        "The workspace's saved cards" + _ADMINS,
        _TAG,
        description=_STRIPE,
        responses=ok(PaymentMethodsModel),
    ),
    ("POST", "/v1/admin/billing/usage-reports"): Op(
        "Report the period's unreported overage to Stripe now (once per usage)" + _ADMINS,
        _TAG,
        description=_STRIPE,
        responses=ok(OverageModel),
    ),
    ("GET", "/v1/admin/billing/reconciliation"): Op(
        "What the last reconciliations with Stripe found, newest first" + _ADMINS,
        _TAG,
        description=_STRIPE,
        responses=ok(ReconciliationsModel),
    ),
    ("POST", "/v1/admin/billing/reconciliation"): Op(
        "Reconcile with Stripe now (the billing_reconcile job's work)" + _ADMINS,
        _TAG,
        description=_STRIPE,
        responses=ok(ReconciliationModel, 201, "What it found; Stripe's view adopted."),
    ),
    ("POST", "/v1/billing/stripe/webhook"): Op(
        "Stripe's events (Stripe-Signature checked; each event applied once)",
        _TAG,
        auth="public",
        description="A forged or stale signature: 400. A replayed event: 200, no effect.",
        body_media=OBJECT_BODY,
        responses=ok(WebhookReceipt),
    ),
}
