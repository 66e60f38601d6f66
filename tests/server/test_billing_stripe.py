"""Billing through Stripe (issue 12 §1) against localstripe, behind the proxy of
``tests/fakes/stripe_server.py`` that fills in what it lacks.

One server of its own has Stripe configured (the fake's address, a webhook secret, a plan
table with small figures); Stripe's events are built and signed by the tests with the
endpoint's secret, as Stripe signs them (``t=<ts>,v1=HMAC-SHA256(secret, "<ts>.<body>")``).
The session server, with nothing configured, shows the free plan and refuses billing with 409
``billing_not_configured``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import aiohttp
import httpx
import pytest
import stripe
from elevenlabs.client import AsyncElevenLabs
from waiting import eventually

from fakes.stripe_server import FakeStripe
from fixtures_services import own_database, unique_name
from helpers import StartedServer, settings_for_test_server, start_test_server
from server.workspace_people import person
from voicestream.billing.stripe_gateway import StripeGateway, gateway_for
from voicestream.engines.catalog import EngineRegistry
from voicestream.errors import DependencyUnavailable, ValidationFailed
from voicestream.resilience.circuit_breakers import CircuitOpen, breaker, endpoint_name
from voicestream.rest.resources import POOL
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKeyRepository

SECRET = "whsec_voicestream_tests"
INCLUDED = 20  # the starter plan's credits per period here
SEAT_CENTS = 1500  # the creator plan's price of a member a period here
# 1 cent per credit of overage, so amounts are easy to check
PLANS = {
    "starter": {"included_credits": INCLUDED, "overage_cents_per_1000": 1000},
    "creator": {"included_credits": 50, "seat_price_cents": SEAT_CENTS},
    "free": {"concurrency_limit": 1},  # starter keeps its 3
}
TEXT = "Billing speaks past what the plan includes."  # 43 characters: 43 credits


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as started:
        yield started


@pytest.fixture(scope="module")
async def stripe_client(fake: FakeStripe) -> AsyncIterator[stripe.StripeClient]:
    """The test's own Stripe client (a Stripe dashboard, say), with the plans' prices made."""
    http_client = stripe.AIOHTTPClient()
    client = stripe.StripeClient(
        "sk_test_voicestream", base_addresses={"api": fake.url}, http_client=http_client
    )
    prices = (("starter", 500), ("creator", 2200), ("pro", 9900), ("enterprise", 33000))
    for name, cents in prices:
        await client.v1.products.create_async(params={"id": f"prod_{name}", "name": name})
        await client.v1.plans.create_async(
            params={
                "id": f"price_{name}",
                "product": f"prod_{name}",
                "amount": cents,
                "currency": "usd",
                "interval": "month",
            }
        )
    yield client
    await http_client.close_async()


@pytest.fixture(scope="module")
async def billed(
    fake: FakeStripe,
    stripe_client: stripe.StripeClient,
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[StartedServer]:
    # A database and job stream of its own: the jobs it submits are run by its own worker,
    # with its Stripe settings, never by another test server's.
    async with own_database(embedded_services) as own:
        settings = settings_for_test_server(
            embedded_services,
            tmp_path_factory.mktemp("billing"),
            database_url=own.url,
            jobs_stream=f"billing-test-{uuid.uuid4().hex[:8]}",
            stripe_api_key="sk_test_voicestream",
            stripe_api_base=fake.url,
            stripe_webhook_secret=SECRET,
            billing_plans=json.dumps(PLANS),
        )
        async with start_test_server(settings, registry) as started:
            yield started


async def _member(
    server: StartedServer, role: str = "owner", workspace: str | None = None
) -> tuple[UUID, str]:
    api_key, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace=workspace or unique_name("billing"), role=role
    )
    return api_key.workspace_id, key


async def _call(
    http: aiohttp.ClientSession,
    server: StartedServer,
    key: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    data: bytes | None = None,
) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body}
    async with http.request(method, server.url + path, headers=server.headers(key), **kwargs) as r:
        return r.status, await r.json()


def _sign(payload: bytes, secret: str = SECRET, at: int | None = None) -> str:
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _event(kind: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "data": {"object": obj},
        }
    ).encode()


def _subscription(sub: str, customer: str, price: str, status: str, start: int) -> dict[str, Any]:
    return {
        "id": sub,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "cancel_at_period_end": False,
        "current_period_start": start,
        "current_period_end": start + 30 * 86_400,
        "items": {"object": "list", "data": [{"id": "si_x", "price": {"id": price}}]},
    }


def _invoice(invoice_id: str, customer: str, sub: str, price: str, start: int) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "subscription": sub,
        "lines": {
            "object": "list",
            "data": [
                {"price": {"id": price}, "period": {"start": start, "end": start + 30 * 86_400}}
            ],
        },
    }


async def _deliver(
    http: aiohttp.ClientSession,
    server: StartedServer,
    payload: bytes,
    signature: str | None = "sign",
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = _sign(payload) if signature == "sign" else signature
    async with http.post(
        f"{server.url}/v1/billing/stripe/webhook", data=payload, headers=headers
    ) as r:
        return r.status, await r.json()


async def _el_subscription(server: StartedServer, key: str) -> Any:
    """ElevenLabs' subscription, through the official SDK."""
    # Our own httpx client, so its connections are closed when the call ends.
    async with httpx.AsyncClient(timeout=30) as client:
        sdk = AsyncElevenLabs(base_url=f"{server.url}/elevenlabs", api_key=key, httpx_client=client)
        return await sdk.user.subscription.get()


async def _grants(
    http: aiohttp.ClientSession, server: StartedServer, key: str, ref: str
) -> list[Any]:
    status, body = await _call(http, server, key, "GET", "/v1/credits?limit=200")
    assert status == 200, body
    return [t for t in body["transactions"] if t["ref"] == ref]


async def _trialing(
    http: aiohttp.ClientSession, server: StartedServer, key: str, plan: str = "starter"
) -> dict[str, Any]:
    status, account = await _call(
        http,
        server,
        key,
        "POST",
        "/v1/admin/billing/subscription",
        {"plan": plan, "trial_days": 14, "email": "owner@example.com"},
    )
    assert status == 201, account
    return account


async def test_trial_then_paid_then_overage_reported_once_and_invoice_grants_credits(
    http: aiohttp.ClientSession,
    billed: StartedServer,
    fake: FakeStripe,
    stripe_client: stripe.StripeClient,
) -> None:
    workspace_id, key = await _member(billed)
    account = await _trialing(http, billed, key)
    assert account["status"] == "trialing" and account["plan"]["name"] == "starter"
    assert account["trial_end"] is not None and not account["past_due"]
    customer, sub = account["stripe_customer_id"], account["stripe_subscription_id"]
    created = fake.seen("POST", "/v1/subscriptions")[-1].form
    assert created["items[0][price]"] == "price_starter" and created["trial_period_days"] == "14"
    assert created["metadata[workspace_id]"] == str(workspace_id)

    # The trial ends: Stripe says active, for a period that began a minute ago.
    start = int(time.time()) - 60
    event = _event(
        "customer.subscription.updated",
        _subscription(sub, customer, "price_starter", "active", start),
    )
    assert await _deliver(http, billed, event) == (200, {"received": True, "outcome": "applied"})
    _, account = await _call(http, billed, key, "GET", "/v1/admin/billing")
    assert account["status"] == "active"
    assert account["current_period_start"] is not None

    # The period's invoice is paid: its included credits are granted, once.
    paid = _event("invoice.paid", _invoice("in_flow1", customer, sub, "price_starter", start))
    assert (await _deliver(http, billed, paid))[0] == 200
    (grant,) = await _grants(http, billed, key, "invoice:in_flow1")
    assert {e["account"]: e["amount"] for e in grant["entries"]}["available"] == INCLUDED

    # Usage past the included credits (the server does not enforce credits: the rest is free).
    async with http.post(
        f"{billed.url}/v1/tts",
        json={"text": TEXT, "voice": "slt", "format": "pcm_16000"},
        headers=billed.headers(key),
    ) as r:
        assert r.status == 200, await r.text()
        await r.read()
    overage = len(TEXT) - INCLUDED
    status, report = await _call(http, billed, key, "POST", "/v1/admin/billing/usage-reports")
    assert status == 200, report
    assert report["reported_credits"] == overage and report["reported_cents"] == overage
    assert report["period_spent"] == len(TEXT)
    # Reported once: a second run finds nothing new.
    _, again = await _call(http, billed, key, "POST", "/v1/admin/billing/usage-reports")
    assert again["reported_credits"] == 0

    # The process stopped between claiming the report and Stripe's answer: the next run sends
    # it again with the same Idempotency-Key, and Stripe keeps one invoice item.
    await billed.app[POOL].execute(
        "UPDATE billing_usage_reports SET reported_at = NULL WHERE workspace_id = $1", workspace_id
    )
    _, retry = await _call(http, billed, key, "POST", "/v1/admin/billing/usage-reports")
    assert retry["reported_credits"] == 0
    sent = [s for s in fake.seen("POST", "/v1/invoiceitems") if s.form["customer"] == customer]
    assert len(sent) == 2 and sent[0].idempotency_key == sent[1].idempotency_key
    assert sent[0].form["amount"] == str(overage) and sent[0].form["subscription"] == sub
    items = await stripe_client.v1.invoice_items.list_async(params={"customer": customer})
    assert [item.amount for item in items.data] == [overage]

    # ElevenLabs' subscription shows the plan and the period's use.
    shown = await _el_subscription(billed, key)
    assert shown.tier == "starter" and shown.status == "active"
    assert shown.character_limit == INCLUDED and shown.character_count == len(TEXT)
    assert shown.next_character_count_reset_unix == start + 30 * 86_400


async def _team_of_two(billed: StartedServer) -> str:
    """A workspace's key (a key is not a seat) and its two members (people are)."""
    name = unique_name("seats")
    _, key = await _member(billed, workspace=name)
    for role in ("owner", "editor"):
        await person(billed, name, role)
    return key


async def test_a_plans_seats_are_billed_once_a_period_and_not_during_a_trial(
    http: aiohttp.ClientSession,
    billed: StartedServer,
    fake: FakeStripe,
    stripe_client: stripe.StripeClient,
) -> None:
    def seat_charges(customer: str) -> list[Any]:
        return [
            s
            for s in fake.seen("POST", "/v1/invoiceitems")
            if s.form["customer"] == customer and s.form["description"].startswith("Seats")
        ]

    trial_key = await _team_of_two(billed)
    trial = await _trialing(http, billed, trial_key, plan="creator")
    status, _ = await _call(http, billed, trial_key, "POST", "/v1/admin/billing/reconciliation")
    assert status == 201
    assert seat_charges(trial["stripe_customer_id"]) == []  # free during a trial, as its plan

    key = await _team_of_two(billed)
    order = {"number": "PO-0815", "net_terms_days": 30}  # invoiced: active at once
    status, account = await _call(
        http,
        billed,
        key,
        "POST",
        "/v1/admin/billing/subscription",
        {"plan": "creator", "purchase_order": order},
    )
    assert status == 201 and account["status"] == "active", account
    customer = account["stripe_customer_id"]
    for _ in range(2):
        status, found = await _call(http, billed, key, "POST", "/v1/admin/billing/reconciliation")
        assert status == 201, found
    (charge,) = seat_charges(customer)  # once, however often the period is reconciled
    assert charge.form["amount"] == str(2 * SEAT_CENTS)
    assert charge.form["description"] == "Seats: 2 x creator"
    assert charge.form["subscription"] == account["stripe_subscription_id"]
    assert charge.idempotency_key is not None and charge.idempotency_key.startswith("seats:")
    items = await stripe_client.v1.invoice_items.list_async(params={"customer": customer})
    assert [item.amount for item in items.data] == [2 * SEAT_CENTS]


async def test_two_simultaneous_subscriptions_make_one(
    http: aiohttp.ClientSession, billed: StartedServer, fake: FakeStripe
) -> None:
    _, key = await _member(billed)
    body = {"plan": "starter", "trial_days": 7}
    answers = await asyncio.gather(
        *(_call(http, billed, key, "POST", "/v1/admin/billing/subscription", body) for _ in "ab")
    )
    assert sorted(status for status, _ in answers) == [201, 409], answers
    (created,) = [account for status, account in answers if status == 201]
    made = [
        s
        for s in fake.seen("POST", "/v1/subscriptions")
        if s.form.get("customer") == created["stripe_customer_id"]
    ]
    assert len(made) == 1


async def test_payment_failure_makes_the_workspace_past_due_until_an_invoice_is_paid(
    http: aiohttp.ClientSession, billed: StartedServer
) -> None:
    _, key = await _member(billed)
    account = await _trialing(http, billed, key)
    customer, sub = account["stripe_customer_id"], account["stripe_subscription_id"]
    failed = _event(
        "invoice.payment_failed",
        {"id": "in_due1", "object": "invoice", "customer": customer, "subscription": sub},
    )
    assert (await _deliver(http, billed, failed))[0] == 200

    _, account = await _call(http, billed, key, "GET", "/v1/admin/billing")
    assert account["status"] == "past_due" and account["past_due"]
    # Reads keep working; new paid work is a clear 402.
    assert (await _call(http, billed, key, "GET", "/v1/credits"))[0] == 200
    status, body = await _call(
        http,
        billed,
        key,
        "POST",
        "/v1/tts",
        {"text": "Hello.", "voice": "slt", "format": "pcm_16000"},
    )
    assert status == 402 and body["error"]["code"] == "payment_past_due"
    status, body = await _call(
        http, billed, key, "POST", "/v1/jobs", {"type": "tts", "input": {"text": "Hello."}}
    )
    assert status == 402 and body["error"]["code"] == "payment_past_due"
    # Sockets too: refused before the upgrade, or with the protocol's close code.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{billed.ws_url}/v1/tts/stream", headers=billed.headers(key))
    assert refused.value.status == 402
    el_url = f"{billed.ws_url}/elevenlabs/v1/text-to-speech/slt/stream-input"
    async with http.ws_connect(el_url) as ws:
        await ws.send_json({"text": " ", "xi_api_key": key})
        texts = [m.data async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
        assert ws.close_code == 4402, (ws.close_code, texts)
    assert any("past due" in text for text in texts), texts
    shown = await _el_subscription(billed, key)
    assert shown.status == "past_due"

    start = int(time.time()) - 60
    paid = _event("invoice.paid", _invoice("in_due1", customer, sub, "price_starter", start))
    assert (await _deliver(http, billed, paid))[0] == 200
    _, account = await _call(http, billed, key, "GET", "/v1/admin/billing")
    assert account["status"] == "active" and not account["past_due"]


async def test_webhook_refuses_forged_and_stale_signatures_and_applies_each_event_once(
    http: aiohttp.ClientSession, billed: StartedServer
) -> None:
    _, key = await _member(billed)
    account = await _trialing(http, billed, key)
    customer, sub = account["stripe_customer_id"], account["stripe_subscription_id"]
    start = int(time.time()) - 60
    paid = _event(
        "invoice.paid",
        _invoice("in_once", customer, sub, "price_starter", start),
        "evt_once_" + uuid.uuid4().hex,
    )

    for signature in (
        _sign(paid, "whsec_forged"),
        _sign(paid, at=int(time.time()) - 3600),  # older than the tolerance
        "t=1,v1=00",
        None,
    ):
        status, body = await _deliver(http, billed, paid, signature)
        assert status == 400 and body["error"]["code"] == "bad_request", (signature, body)
    assert await _grants(http, billed, key, "invoice:in_once") == []
    # Signed, but not an event.
    status, body = await _deliver(http, billed, b'{"id": "evt_x"}')
    assert status == 422, body
    status, body = await _deliver(http, billed, b"not json")
    assert status == 400, body

    assert (await _deliver(http, billed, paid))[1]["outcome"] == "applied"
    assert (await _deliver(http, billed, paid))[1]["outcome"] == "duplicate"
    # Another event about the same invoice grants nothing more either.
    again = _event("invoice.paid", _invoice("in_once", customer, sub, "price_starter", start))
    assert (await _deliver(http, billed, again))[1]["outcome"] == "applied"
    assert len(await _grants(http, billed, key, "invoice:in_once")) == 1
    # A customer we do not know, and a type we do not use: acknowledged, ignored.
    stranger = _event(
        "invoice.paid", _invoice("in_x", "cus_unknown", "sub_x", "price_starter", start)
    )
    assert (await _deliver(http, billed, stranger))[1]["outcome"] == "ignored"
    other = _event("charge.refunded", {"id": "ch_1", "customer": customer})
    assert (await _deliver(http, billed, other))[1]["outcome"] == "ignored"

    # The subscription is deleted in Stripe: back on the free plan.
    gone = _event(
        "customer.subscription.deleted",
        _subscription(sub, customer, "price_starter", "canceled", start),
    )
    assert (await _deliver(http, billed, gone))[1]["outcome"] == "applied"
    _, account = await _call(http, billed, key, "GET", "/v1/admin/billing")
    assert account["plan"]["name"] == "free" and account["stripe_subscription_id"] is None


async def test_coupons_promotion_codes_plan_changes_cancellation_and_payment_methods(
    http: aiohttp.ClientSession,
    billed: StartedServer,
    fake: FakeStripe,
    stripe_client: stripe.StripeClient,
) -> None:
    coupon = f"LAUNCH{uuid.uuid4().hex[:6]}"
    await stripe_client.v1.coupons.create_async(
        params={"id": coupon, "percent_off": 20, "duration": "once"}
    )
    _, key = await _member(billed)
    status, account = await _call(
        http,
        billed,
        key,
        "POST",
        "/v1/admin/billing/subscription",
        {"plan": "creator", "coupon": coupon, "trial_days": 7},
    )
    assert status == 201, account
    assert fake.seen("POST", "/v1/subscriptions")[-1].form["discounts[0][coupon]"] == coupon

    fake.promotion_codes["promo_spring"] = {
        "id": "promo_spring",
        "object": "promotion_code",
        "code": "SPRING",
        "active": True,
    }
    _, other = await _member(billed)
    status, _ = await _call(
        http,
        billed,
        other,
        "POST",
        "/v1/admin/billing/subscription",
        {"plan": "starter", "promotion_code": "SPRING", "trial_days": 7},
    )
    assert status == 201
    assert (
        fake.seen("POST", "/v1/subscriptions")[-1].form["discounts[0][promotion_code]"]
        == "promo_spring"
    )

    # Upgrade without proration, then cancel at the period's end.
    status, account = await _call(
        http,
        billed,
        key,
        "PATCH",
        "/v1/admin/billing/subscription",
        {"plan": "pro", "prorate": False},
    )
    assert status == 200 and account["plan"]["name"] == "pro", account
    update = fake.seen("POST", f"/v1/subscriptions/{account['stripe_subscription_id']}")[-1].form
    assert update["items[0][price]"] == "price_pro" and update["proration_behavior"] == "none"
    status, account = await _call(http, billed, key, "DELETE", "/v1/admin/billing/subscription")
    assert status == 200 and account["cancel_at_period_end"] and account["plan"]["name"] == "pro"

    method = await stripe_client.v1.payment_methods.create_async(
        params={
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    await stripe_client.v1.payment_methods.attach_async(
        method.id, params={"customer": account["stripe_customer_id"]}
    )
    status, methods = await _call(http, billed, key, "GET", "/v1/admin/billing/payment-methods")
    assert status == 200 and [m["last4"] for m in methods["payment_methods"]] == ["4242"]


async def test_enterprise_purchase_order_invoices_with_net_terms(
    http: aiohttp.ClientSession, billed: StartedServer, fake: FakeStripe
) -> None:
    _, key = await _member(billed)
    order = {"number": "PO-4711", "net_terms_days": 45}
    status, account = await _call(
        http,
        billed,
        key,
        "POST",
        "/v1/admin/billing/subscription",
        {"plan": "enterprise", "purchase_order": order},
    )
    assert status == 201, account
    assert account["purchase_order"] == "PO-4711" and account["plan"]["name"] == "enterprise"
    sent = fake.seen("POST", "/v1/subscriptions")[-1].form
    assert sent["collection_method"] == "send_invoice" and sent["days_until_due"] == "45"
    assert sent["metadata[po_number]"] == "PO-4711"
    status, found = await _call(http, billed, key, "GET", "/v1/admin/billing/invoices")
    assert status == 200, found
    (invoice,) = found["invoices"]
    assert invoice["collection_method"] == "send_invoice"
    assert invoice["custom_fields"] == [{"name": "PO number", "value": "PO-4711"}]
    assert invoice["due_date"] is not None


async def test_reconciliation_reports_drift_and_adopts_stripes_view(
    http: aiohttp.ClientSession, billed: StartedServer, stripe_client: stripe.StripeClient
) -> None:
    workspace_id, key = await _member(billed)
    account = await _trialing(http, billed, key)
    status, first = await _call(http, billed, key, "POST", "/v1/admin/billing/reconciliation")
    assert status == 201 and first["drift"] == [], first

    # Deleted in Stripe, and its event never reached us.
    await stripe_client.v1.subscriptions.cancel_async(account["stripe_subscription_id"])
    status, found = await _call(http, billed, key, "POST", "/v1/admin/billing/reconciliation")
    assert status == 201, found
    drift = {d["field"]: (d["ours"], d["stripe"]) for d in found["drift"]}
    assert drift["status"] == ("trialing", "canceled") and drift["plan"] == ("starter", "free")
    _, account = await _call(http, billed, key, "GET", "/v1/admin/billing")
    assert account["plan"]["name"] == "free"
    _, listed = await _call(http, billed, key, "GET", "/v1/admin/billing/reconciliation")
    assert [r["id"] for r in listed["reconciliations"]] == [found["id"], first["id"]]
    audited = await billed.app[POOL].fetchval(
        "SELECT count(*) FROM audit_log WHERE workspace_id = $1 AND action = 'billing.drift'",
        workspace_id,
    )
    assert audited == 1

    # The job type, submitted by hand: nothing left to find.
    status, job = await _call(http, billed, key, "POST", "/v1/jobs", {"type": "billing_reconcile"})
    assert status in (200, 201, 202), job

    async def done() -> Any:
        _, found = await _call(http, billed, key, "GET", f"/v1/jobs/{job['id']}")
        return found if found["status"] in ("completed", "failed") else None

    finished = await eventually(done, within=30, what="the billing_reconcile job")
    assert finished["status"] == "completed", finished
    assert finished["result"]["drift"] == []


async def test_billing_routes_refuse_bad_input(
    http: aiohttp.ClientSession, billed: StartedServer
) -> None:
    _, key = await _member(billed)
    route = "/v1/admin/billing/subscription"
    for body in (
        {"plan": "platinum"},
        {"plan": "starter", "surprise": 1},
        {"plan": "starter", "trial_days": 0},
        {"plan": "free"},
        {"plan": "starter", "coupon": "A", "promotion_code": "B"},
        {"plan": "starter", "promotion_code": "NOSUCHCODE"},
        {"plan": "enterprise", "purchase_order": {"number": "", "net_terms_days": 30}},
        {"plan": "starter", "email": "not-an-address"},
    ):
        status, found = await _call(http, billed, key, "POST", route, body)
        assert status == 422 and found["error"]["code"] == "invalid_request", (body, found)
    status, found = await _call(http, billed, key, "POST", route, data=b"{not json")
    assert status == 400 and found["error"]["code"] == "invalid_json"
    for method, body in (("PATCH", {"plan": "pro"}), ("DELETE", None)):
        status, found = await _call(http, billed, key, method, route, body)
        assert status == 409 and found["error"]["code"] == "conflict", found
    status, found = await _call(http, billed, key, "GET", "/v1/admin/billing/invoices?limit=0")
    assert status == 422
    await _trialing(http, billed, key)
    status, found = await _call(http, billed, key, "POST", route, {"plan": "creator"})
    assert status == 409 and found["error"]["code"] == "conflict"
    # Billing is for owners and admins.
    _, editor = await _member(billed, "editor")
    status, found = await _call(http, billed, editor, "GET", "/v1/admin/billing")
    assert status == 403 and found["error"]["code"] == "forbidden"


async def test_without_stripe_every_workspace_is_free_and_billing_says_why(
    http: aiohttp.ClientSession, server: StartedServer
) -> None:
    _, key = await _member(server)
    status, account = await _call(http, server, key, "GET", "/v1/admin/billing")
    assert status == 200, account
    assert account["billing_configured"] is False and account["plan"]["name"] == "free"
    for method, path, body in (
        ("POST", "/v1/admin/billing/subscription", {"plan": "starter"}),
        ("GET", "/v1/admin/billing/invoices", None),
        ("POST", "/v1/admin/billing/reconciliation", None),
    ):
        status, found = await _call(http, server, key, method, path, body)
        assert status == 409 and found["error"]["code"] == "billing_not_configured", found
    status, found = await _deliver(http, server, _event("invoice.paid", {"id": "in_1"}))
    assert status == 409 and found["error"]["code"] == "billing_not_configured"
    shown = await _el_subscription(server, key)
    assert shown.tier == "self-hosted"


async def test_stripe_failing_opens_its_circuit_but_refusals_do_not(
    billed: StartedServer,
) -> None:
    gateway = gateway_for(billed.settings)
    assert gateway is not None
    # A refused request is Stripe answering: however many, the circuit stays closed.
    closed = breaker(endpoint_name("stripe", billed.settings.stripe_api_base or ""))
    for _ in range(closed.policy.failure_threshold + 1):
        with pytest.raises(ValidationFailed) as refused:
            await gateway.call(lambda: gateway.v1.subscriptions.retrieve_async("sub_missing"))
        assert refused.value.details["stripe_status"] == 404
    assert closed.state == "closed"

    # A Stripe that does not answer: 503s, then refused at once without calling.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{s.getsockname()[1]}"
    dead = StripeGateway("sk_test_voicestream", dead_url)
    try:
        policy = breaker(endpoint_name("stripe", dead_url)).policy
        for _ in range(policy.failure_threshold):
            with pytest.raises(DependencyUnavailable) as failed:
                await dead.call(lambda: dead.v1.customers.create_async(params={}))
            assert not isinstance(failed.value, CircuitOpen)
        with pytest.raises(CircuitOpen):
            await dead.call(lambda: dead.v1.customers.create_async(params={}))
    finally:
        await dead.close()


async def test_the_plan_sets_the_workspaces_concurrent_streams(
    http: aiohttp.ClientSession, billed: StartedServer
) -> None:
    _, key = await _member(billed)
    url = f"{billed.ws_url}/v1/tts/stream"
    first = await http.ws_connect(url, params={"voice": "slt"}, headers=billed.headers(key))
    try:
        # The free plan here allows one stream.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, params={"voice": "slt"}, headers=billed.headers(key))
        assert refused.value.status == 429
        await _trialing(http, billed, key)  # starter: three
        second = await http.ws_connect(url, params={"voice": "slt"}, headers=billed.headers(key))
        await second.close()
    finally:
        await first.close()
