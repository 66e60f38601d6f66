"""Billing over HTTP: ``/v1/admin/billing…`` (the caller's workspace, admins and owners) and
Stripe's webhook, ``POST /v1/billing/stripe/webhook``.

Thin shells over ``billing/``. Without Stripe configured the account reads as the free plan
(``billing_configured: false``) and every route that would talk to Stripe answers 409
``billing_not_configured``. The webhook takes no key: the handler checks ``Stripe-Signature``
itself (400 when it does not verify) and answers 200 to a replayed event without applying it
again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..billing import reconciliation, stripe_events, subscriptions
from ..billing.plans import PLAN_NAMES, Plan, PlanName, plan_table
from ..billing.stripe_gateway import close_gateways, gateway_for, require_gateway
from ..errors import PayloadTooLarge
from ..identity.request_principal import principal_of
from ..store import billing as store
from ..store.billing import BillingAccount, Reconciliation
from .bodies import read_model, read_query
from .resources import POOL, SETTINGS

__all__ = [
    "BILLING_PREFIX",
    "BillingAccountModel",
    "ChangePlanBody",
    "InvoiceModel",
    "InvoicesModel",
    "InvoicesQuery",
    "OverageModel",
    "PaymentMethodModel",
    "PaymentMethodsModel",
    "PlanModel",
    "PlansModel",
    "PurchaseOrderBody",
    "ReconciliationModel",
    "ReconciliationsModel",
    "SubscribeBody",
    "WebhookReceipt",
    "billing_admin_routes",
    "billing_app",
]

BILLING_PREFIX: Final = "/v1/billing"
_NO_STORE: Final = {"Cache-Control": "no-store"}
_Email = Annotated[
    str, StringConstraints(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
]
_Id = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[\w\-]+$")]


class PlanModel(BaseModel):
    name: PlanName
    included_credits: int
    monthly_price_cents: int
    overage_cents_per_1000: int
    seat_price_cents: int
    concurrency_limit: int
    currency: str
    subscribable: bool  # has a Stripe price

    @classmethod
    def of(cls, plan: Plan) -> PlanModel:
        return cls(
            name=plan.name,
            included_credits=plan.included_credits,
            monthly_price_cents=plan.monthly_price_cents,
            overage_cents_per_1000=plan.overage_cents_per_1000,
            seat_price_cents=plan.seat_price_cents,
            concurrency_limit=plan.concurrency_limit,
            currency=plan.currency,
            subscribable=plan.stripe_price_id is not None,
        )


class PlansModel(BaseModel):
    plans: list[PlanModel]


class BillingAccountModel(BaseModel):
    billing_configured: bool
    plan: PlanModel
    # Stripe's subscription status (trialing, active, past_due, canceled, …), or "none"
    status: str
    past_due: bool  # new paid work is refused with 402 payment_past_due
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    cancel_at_period_end: bool
    current_period_start: datetime | None
    current_period_end: datetime | None
    trial_end: datetime | None
    purchase_order: str | None


class PurchaseOrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    net_terms_days: int = Field(30, ge=0, le=365)


class SubscribeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: PlanName
    trial_days: int | None = Field(None, ge=1, le=730)
    coupon: _Id | None = None
    promotion_code: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    # Invoices sent with net terms instead of charging a card (enterprise).
    purchase_order: PurchaseOrderBody | None = None
    email: (
        Annotated[
            str, StringConstraints(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
        ]
        | None
    ) = None


class ChangePlanBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: PlanName
    prorate: bool = True  # credit the unused time of the old plan, charge the new one


class InvoicesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=100)


class InvoiceModel(BaseModel):
    id: str
    status: str | None
    amount_due: int
    amount_paid: int
    currency: str | None
    created: int | None
    collection_method: str | None
    due_date: int | None
    hosted_invoice_url: str | None
    custom_fields: list[dict[str, str]]  # the PO number, for purchase-order invoicing

    @classmethod
    def of(cls, invoice: dict[str, Any]) -> InvoiceModel:
        fields = invoice.get("custom_fields") or []
        return cls(
            id=str(invoice["id"]),
            status=invoice.get("status"),
            amount_due=int(invoice.get("amount_due") or 0),
            amount_paid=int(invoice.get("amount_paid") or 0),
            currency=invoice.get("currency"),
            created=invoice.get("created"),
            collection_method=invoice.get("collection_method"),
            due_date=invoice.get("due_date"),
            hosted_invoice_url=invoice.get("hosted_invoice_url"),
            custom_fields=[
                {"name": str(f.get("name")), "value": str(f.get("value"))}
                for f in fields
                if isinstance(f, dict)
            ],
        )


class InvoicesModel(BaseModel):
    invoices: list[InvoiceModel]


class PaymentMethodModel(BaseModel):
    id: str
    type: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None


class PaymentMethodsModel(BaseModel):
    payment_methods: list[PaymentMethodModel]


class OverageModel(BaseModel):
    reported_credits: int  # by this call; 0 when everything was reported before
    reported_cents: int
    period_spent: int
    included_credits: int


class ReconciliationModel(BaseModel):
    id: int
    job_id: str | None
    drift: list[dict[str, Any]]  # field, ours, stripe: what differed (Stripe's view adopted)
    ran_at: datetime
    overage: OverageModel | None = None

    @classmethod
    def of(cls, found: Reconciliation) -> ReconciliationModel:
        return cls(
            id=found.id,
            job_id=str(found.job_id) if found.job_id else None,
            drift=found.drift,
            ran_at=found.ran_at,
        )


class ReconciliationsModel(BaseModel):
    reconciliations: list[ReconciliationModel]  # newest first


class WebhookReceipt(BaseModel):
    received: Literal[True] = True
    outcome: stripe_events.Outcome  # applied, duplicate (applied before), ignored


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status, headers=_NO_STORE)


def _account_model(request: web.Request, account: BillingAccount) -> BillingAccountModel:
    settings = request.config_dict[SETTINGS]
    return BillingAccountModel(
        billing_configured=gateway_for(settings) is not None,
        plan=PlanModel.of(plan_table(settings).get(account.plan)),
        status=account.status,
        past_due=account.status in ("past_due", "unpaid"),
        stripe_customer_id=account.stripe_customer_id,
        stripe_subscription_id=account.stripe_subscription_id,
        cancel_at_period_end=account.cancel_at_period_end,
        current_period_start=account.current_period_start,
        current_period_end=account.current_period_end,
        trial_end=account.trial_end,
        purchase_order=account.purchase_order,
    )


async def get_account(request: web.Request) -> web.Response:
    found = await store.account(request.config_dict[POOL], principal_of(request).workspace_id)
    return _json(_account_model(request, found))


async def get_plans(request: web.Request) -> web.Response:
    table = plan_table(request.config_dict[SETTINGS])
    return _json(PlansModel(plans=[PlanModel.of(table.get(name)) for name in PLAN_NAMES]))


async def post_subscription(request: web.Request) -> web.Response:
    body = await read_model(request, SubscribeBody)
    order = body.purchase_order
    found = await subscriptions.subscribe(
        request.config_dict[POOL],
        request.config_dict[SETTINGS],
        principal_of(request).workspace_id,
        body.plan,
        trial_days=body.trial_days,
        coupon=body.coupon,
        promotion_code=body.promotion_code,
        purchase_order=(
            subscriptions.PurchaseOrder(order.number, order.net_terms_days) if order else None
        ),
        email=body.email,
    )
    return _json(_account_model(request, found), 201)


async def patch_subscription(request: web.Request) -> web.Response:
    body = await read_model(request, ChangePlanBody)
    found = await subscriptions.change_plan(
        request.config_dict[POOL],
        request.config_dict[SETTINGS],
        principal_of(request).workspace_id,
        body.plan,
        prorate=body.prorate,
    )
    return _json(_account_model(request, found))


async def delete_subscription(request: web.Request) -> web.Response:
    found = await subscriptions.cancel(
        request.config_dict[POOL], request.config_dict[SETTINGS], principal_of(request).workspace_id
    )
    return _json(_account_model(request, found))


async def get_invoices(request: web.Request) -> web.Response:
    query = read_query(request, InvoicesQuery)
    found = await subscriptions.invoices(
        request.config_dict[POOL],
        request.config_dict[SETTINGS],
        principal_of(request).workspace_id,
        query.limit,
    )
    return _json(InvoicesModel(invoices=[InvoiceModel.of(i) for i in found]))


async def get_payment_methods(request: web.Request) -> web.Response:
    found = await subscriptions.payment_methods(
        request.config_dict[POOL], request.config_dict[SETTINGS], principal_of(request).workspace_id
    )
    methods = []
    for method in found:
        card = method.get("card") or {}
        methods.append(
            PaymentMethodModel(
                id=str(method["id"]),
                type=str(method.get("type")),
                brand=card.get("brand"),
                last4=card.get("last4"),
                exp_month=card.get("exp_month"),
                exp_year=card.get("exp_year"),
            )
        )
    return _json(PaymentMethodsModel(payment_methods=methods))


def _overage(found: reconciliation.OverageReport) -> OverageModel:
    return OverageModel(
        reported_credits=found.credits,
        reported_cents=found.amount_cents,
        period_spent=found.period_spent,
        included_credits=found.included_credits,
    )


async def post_usage_report(request: web.Request) -> web.Response:
    found = await reconciliation.report_overage(
        request.config_dict[POOL], request.config_dict[SETTINGS], principal_of(request).workspace_id
    )
    return _json(_overage(found))


async def post_reconciliation(request: web.Request) -> web.Response:
    found, overage = await reconciliation.reconcile(
        request.config_dict[POOL], request.config_dict[SETTINGS], principal_of(request).workspace_id
    )
    model = ReconciliationModel.of(found)
    model.overage = _overage(overage)
    return _json(model, 201)


async def get_reconciliations(request: web.Request) -> web.Response:
    require_gateway(request.config_dict[SETTINGS])
    found = await store.latest_reconciliations(
        request.config_dict[POOL], principal_of(request).workspace_id, 20
    )
    return _json(ReconciliationsModel(reconciliations=[ReconciliationModel.of(r) for r in found]))


def billing_admin_routes() -> list[web.RouteDef]:
    """Paths relative to ``/v1/admin`` (``rest/admin.py``)."""
    return [
        web.get("/billing", get_account, allow_head=False),
        web.get("/billing/plans", get_plans, allow_head=False),
        web.post("/billing/subscription", post_subscription),
        web.patch("/billing/subscription", patch_subscription),
        web.delete("/billing/subscription", delete_subscription),
        web.get("/billing/invoices", get_invoices, allow_head=False),
        web.get("/billing/payment-methods", get_payment_methods, allow_head=False),
        web.post("/billing/usage-reports", post_usage_report),
        web.get("/billing/reconciliation", get_reconciliations, allow_head=False),
        web.post("/billing/reconciliation", post_reconciliation),
    ]


async def post_stripe_webhook(request: web.Request) -> web.Response:
    settings = request.config_dict[SETTINGS]
    if (
        request.content_length is not None
        and request.content_length > stripe_events.MAX_EVENT_BYTES
    ):
        raise PayloadTooLarge(f"a Stripe event is at most {stripe_events.MAX_EVENT_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > stripe_events.MAX_EVENT_BYTES:
            raise PayloadTooLarge(
                f"a Stripe event is at most {stripe_events.MAX_EVENT_BYTES} bytes"
            )
        chunks.append(chunk)
    payload = b"".join(chunks)
    event = stripe_events.verify(payload, request.headers.get("Stripe-Signature"), settings)
    outcome = await stripe_events.apply(request.config_dict[POOL], settings, event)
    return _json(WebhookReceipt(outcome=outcome))


def billing_app() -> web.Application:
    """The sub-app to mount at ``BILLING_PREFIX``: Stripe's webhook."""
    app = web.Application()
    app.add_routes([web.post("/stripe/webhook", post_stripe_webhook)])
    app.on_cleanup.append(_close_stripe)
    return app


async def _close_stripe(_: web.Application) -> None:
    await close_gateways()
