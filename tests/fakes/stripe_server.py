"""A local Stripe for the billing tests: ``localstripe`` (from PyPI) as a subprocess, behind a
small aiohttp proxy that fills in what localstripe lacks, as today's Stripe API has it.

localstripe speaks an older API: subscription items take ``plan`` (today's ``price``), a trial
leaves the subscription ``incomplete``, and it knows no promotion codes, discounts, purchase-
order invoicing (``collection_method=send_invoice``, ``days_until_due``, invoice custom
fields) or idempotency keys. The proxy, in front of it:

- renames ``items[n][price]`` to ``items[n][plan]`` and ``proration_behavior`` on updates to
  localstripe's ``prorate``;
- takes the parameters localstripe refuses off the request, keeps them per subscription or
  customer, and puts them back on every answer about it (and its invoices);
- shows a subscription created with a trial as ``trialing``, and a send-invoice one as
  ``active`` (its invoice is open, not charged);
- answers ``GET /v1/promotion_codes?code=…`` from ``promotion_codes``;
- replays the first answer for a repeated ``Idempotency-Key``, as Stripe does.

Every request that reached it is in ``requests`` (method, path, form fields) for assertions.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

from server.waiting import eventually

__all__ = ["FakeStripe", "Seen"]

_LOCALSTRIPE = Path(sys.executable).with_name("localstripe")
_SUBSCRIPTION = re.compile(r"^/v1/subscriptions/(sub_\w+)$")
_CUSTOMER = re.compile(r"^/v1/customers/(cus_\w+)$")
# Subscription parameters localstripe refuses, kept by the proxy.
_SUBSCRIPTION_EXTRAS = ("discounts", "collection_method", "days_until_due")


@dataclass
class Seen:
    method: str
    path: str
    form: dict[str, str]
    idempotency_key: str | None


@dataclass
class _Subscription:
    extras: dict[str, Any] = field(default_factory=dict)
    trial_end: int | None = None


def _nest(flat: dict[str, str], prefix: str) -> Any:
    """``discounts[0][coupon]=x`` (flat form fields under ``prefix``) as JSON: [{"coupon": x}]."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if not key.startswith(prefix + "["):
            continue
        parts = re.findall(r"\[([^\]]*)\]", key[len(prefix) :])
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def lists(node: Any) -> Any:
        if isinstance(node, dict):
            if node and all(k.isdigit() for k in node):
                return [lists(node[k]) for k in sorted(node, key=int)]
            return {k: lists(v) for k, v in node.items()}
        return node

    return lists(out)


class FakeStripe:
    def __init__(self) -> None:
        self.promotion_codes: dict[str, dict[str, Any]] = {}
        self.requests: list[Seen] = []
        self._subscriptions: dict[str, _Subscription] = {}
        self._customer_fields: dict[str, list[dict[str, str]]] = {}
        self._replies: dict[str, tuple[int, bytes]] = {}
        self._process: asyncio.subprocess.Process | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._upstream = ""
        self.url = ""

    async def __aenter__(self) -> Self:
        port = await _free_port()
        self._process = await asyncio.create_subprocess_exec(
            str(_LOCALSTRIPE),
            "--port",
            str(port),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._upstream = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession()
        await self._wait_up()
        # localstripe keeps its objects in a file across runs: start from nothing.
        async with self._session.delete(f"{self._upstream}/_config/data") as r:
            assert r.status < 300, await r.text()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, bound = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{bound}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()

    async def _wait_up(self) -> None:
        assert self._session is not None
        session = self._session

        async def answers() -> bool:
            try:
                async with session.get(
                    f"{self._upstream}/v1/balance", headers={"Authorization": "Bearer sk_test_x"}
                ) as r:
                    return r.status < 500
            except aiohttp.ClientError:
                return False

        await eventually(answers, within=20, every=0.1, what="localstripe answering")

    def seen(self, method: str, path_prefix: str) -> list[Seen]:
        return [s for s in self.requests if s.method == method and s.path.startswith(path_prefix)]

    # --- the proxy ---------------------------------------------------------------------------

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        if request.method == "GET":
            form.update(request.query)
        key = request.headers.get("Idempotency-Key")
        self.requests.append(Seen(request.method, request.path, dict(form), key))
        if request.method == "POST" and key and key in self._replies:
            status, cached = self._replies[key]
            return web.Response(status=status, body=cached, content_type="application/json")
        if request.method == "GET" and request.path == "/v1/promotion_codes":
            code = request.query.get("code")
            found = [p for p in self.promotion_codes.values() if p["code"] == code]
            return web.json_response({"object": "list", "data": found, "has_more": False})
        status, answer = await self._forward(request, form)
        raw = json.dumps(answer).encode()
        if request.method == "POST" and key and status < 500:
            self._replies[key] = (status, raw)
        return web.Response(status=status, body=raw, content_type="application/json")

    async def _forward(self, request: web.Request, form: dict[str, str]) -> tuple[int, Any]:
        path = request.path
        extras: dict[str, Any] = {}
        custom_fields: list[dict[str, str]] | None = None
        if request.method == "POST" and (path == "/v1/subscriptions" or _SUBSCRIPTION.match(path)):
            for name in _SUBSCRIPTION_EXTRAS:
                nested = _nest(form, name)
                if nested:
                    extras[name] = nested
                if name in form:
                    extras[name] = form.pop(name)
            form = {k: v for k, v in form.items() if not k.startswith("discounts[")}
            form = {
                re.sub(r"^(items\[\d+\])\[price\]$", r"\1[plan]", k): v for k, v in form.items()
            }
            if path != "/v1/subscriptions" and "proration_behavior" in form:
                form["prorate"] = str(form.pop("proration_behavior") != "none").lower()
            if "days_until_due" in extras:
                extras["days_until_due"] = int(extras["days_until_due"])
            if path == "/v1/subscriptions" and extras.get("collection_method") == "send_invoice":
                # Invoiced, not charged: localstripe would charge at once, so it gets a
                # zero-day trial (no charge) and the open invoice is made below.
                form["trial_period_days"] = "0"
        if request.method == "POST" and (path == "/v1/customers" or _CUSTOMER.match(path)):
            settings = _nest(form, "invoice_settings")
            custom_fields = settings.get("custom_fields") if settings else None
            form = {
                k: v for k, v in form.items() if not k.startswith("invoice_settings[custom_fields]")
            }
        assert self._session is not None
        async with self._session.request(
            request.method,
            self._upstream + path,
            params=None if request.method == "POST" else request.query,
            data=urlencode(form) if request.method == "POST" else None,
            headers={
                "Authorization": request.headers.get("Authorization", ""),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        ) as upstream:
            status, answer = upstream.status, await upstream.json()
        if status >= 400:
            return status, answer
        if custom_fields is not None and answer.get("object") == "customer":
            self._customer_fields[answer["id"]] = custom_fields
        created = request.method == "POST" and path == "/v1/subscriptions"
        self._patch(answer, created, extras)
        if created and extras.get("collection_method") == "send_invoice":
            await self._open_invoice(request, answer)
        return status, answer

    async def _open_invoice(self, request: web.Request, subscription: dict[str, Any]) -> None:
        assert self._session is not None
        form = {"customer": subscription["customer"], "subscription": subscription["id"]}
        async with self._session.post(
            self._upstream + "/v1/invoices",
            data=urlencode(form),
            headers={
                "Authorization": request.headers.get("Authorization", ""),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        ) as upstream:
            assert upstream.status == 200, await upstream.text()

    def _patch(self, answer: Any, created: bool, extras: dict[str, Any]) -> None:
        if not isinstance(answer, dict):
            return
        if answer.get("object") == "list":
            for item in answer.get("data") or []:
                self._patch(item, False, {})
            return
        if answer.get("object") == "subscription":
            self._patch_subscription(answer, created, extras)
        elif answer.get("object") == "invoice":
            sub = self._subscriptions.get(answer.get("subscription") or "")
            if sub is not None and sub.extras.get("collection_method") == "send_invoice":
                answer["collection_method"] = "send_invoice"
                answer["due_date"] = answer["created"] + 86_400 * sub.extras["days_until_due"]
                if answer.get("status") == "draft":
                    answer["status"] = "open"  # finalized and sent to the customer
            answer["custom_fields"] = self._customer_fields.get(answer.get("customer") or "")
        elif answer.get("object") == "customer":
            settings = answer.setdefault("invoice_settings", {})
            settings["custom_fields"] = self._customer_fields.get(answer["id"])

    def _patch_subscription(
        self, answer: dict[str, Any], created: bool, extras: dict[str, Any]
    ) -> None:
        state = self._subscriptions.setdefault(answer["id"], _Subscription())
        state.extras.update(extras)
        if created and answer.get("trial_period_days"):
            state.trial_end = int(time.time()) + 86_400 * int(answer["trial_period_days"])
        answer.update(state.extras)
        for item in (answer.get("items") or {}).get("data") or []:
            item["price"] = item.get("plan")
        if answer.get("status") == "incomplete":
            if state.trial_end is not None:
                answer["status"], answer["trial_end"] = "trialing", state.trial_end
            elif state.extras.get("collection_method") == "send_invoice":
                answer["status"] = "active"


async def _free_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port
