"""The one door to Stripe: the official client, behind the ``stripe`` circuit breaker.

Every call goes through ``StripeGateway.call``, which runs it through the breaker (a
connection error, a timeout, a 429 or a 5xx count as Stripe failing; a declined card or an
invalid request do not) and turns Stripe's exceptions into our error tree: Stripe refusing
the request is a 422 that carries Stripe's message and code, Stripe failing is a 503
``dependency_unavailable``. Results come back as plain dicts, so the rest of billing reads
Stripe's JSON as documented, whatever the library's object model does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import stripe

from ..config import Settings
from ..errors import BillingNotConfigured, DependencyUnavailable, ValidationFailed
from ..resilience.circuit_breakers import breaker, endpoint_name

__all__ = ["StripeGateway", "close_gateways", "gateway_for", "require_gateway", "stripe_failed"]

_STRIPE_API: Final = "https://api.stripe.com"
# A failed call is retried once by the library with the same Idempotency-Key.
_RETRIES: Final = 1
_TIMEOUT_S: Final = 20.0
# What a 503 tells the caller to wait when Stripe failed but the circuit is still closed.
_RETRY_AFTER_S: Final = 5


def stripe_failed(exc: BaseException) -> bool:
    """Whether ``exc`` says Stripe itself is failing (trips the breaker), rather than that it
    refused this request."""
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    if isinstance(exc, stripe.StripeError):
        return exc.http_status is None or exc.http_status >= 500
    return True


def _translate(exc: stripe.StripeError) -> Exception:
    if stripe_failed(exc) or isinstance(exc, stripe.AuthenticationError):
        # A wrong API key is the operator's problem, not the caller's: same 503 as an outage.
        return DependencyUnavailable(
            "stripe",
            _RETRY_AFTER_S,
            message=f"Stripe could not handle the request: {exc.user_message or 'no answer'}",
        )
    details: dict[str, Any] = {"stripe_code": exc.code, "stripe_status": exc.http_status}
    param = getattr(exc, "param", None)
    if param:
        details["fields"] = [{"field": str(param), "message": exc.user_message or "refused"}]
    return ValidationFailed(f"Stripe refused the request: {exc.user_message}", details=details)


class StripeGateway:
    def __init__(self, api_key: str, api_base: str | None) -> None:
        http_client = stripe.AIOHTTPClient(timeout=_TIMEOUT_S)
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else {},
            max_network_retries=_RETRIES,
            http_client=http_client,
        )
        self._http = http_client
        self._breaker = breaker(endpoint_name("stripe", api_base or _STRIPE_API))

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]  # untyped in stripe

    @property
    def v1(self) -> Any:
        """The client's v1 services (``customers``, ``subscriptions``, …)."""
        return self.client.v1

    async def call(self, fn: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        """``await fn()`` through the breaker; Stripe's answer as a dict."""
        try:
            found = await self._breaker.call(fn, trips=stripe_failed)
        except stripe.StripeError as exc:
            raise _translate(exc) from None
        result: dict[str, Any] = found.to_dict()
        return result


# One per (key, address) in the process: its HTTP session is shared by every request.
_GATEWAYS: dict[tuple[str, str | None], StripeGateway] = {}


def _gateway(api_key: str, api_base: str | None) -> StripeGateway:
    found = _GATEWAYS.get((api_key, api_base))
    if found is None:
        found = _GATEWAYS[(api_key, api_base)] = StripeGateway(api_key, api_base)
    return found


async def close_gateways() -> None:
    """Close every gateway's HTTP session (the server's cleanup); the next use opens anew."""
    gateways = list(_GATEWAYS.values())
    _GATEWAYS.clear()
    for gateway in gateways:
        await gateway.close()


def gateway_for(settings: Settings) -> StripeGateway | None:
    """The process's gateway for ``settings``; None when Stripe is not configured."""
    if not settings.stripe_api_key:
        return None
    return _gateway(settings.stripe_api_key, settings.stripe_api_base)


def require_gateway(settings: Settings) -> StripeGateway:
    found = gateway_for(settings)
    if found is None:
        raise BillingNotConfigured(
            "billing is not configured on this server (no VOICESTREAM_STRIPE_API_KEY): every "
            "workspace is on the free plan"
        )
    return found
