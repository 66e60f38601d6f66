"""Circuit breakers around every outside service: Stripe, LLM endpoints, translators, the
moderation endpoint and webhook receivers.

A service that fails keeps failing for a while. Without a breaker every request waits out its
own timeout against it, and every retry adds to the load that may be why it fails. A breaker
counts consecutive failures of one dependency; at ``failure_threshold`` it opens, and for
``reset_timeout_s`` calls are refused at once with ``DependencyUnavailable`` (503 with
``Retry-After``, close 1013 on sockets) without touching the service. Then it is half-open: one
probe call goes through (others are still refused) and its outcome closes the circuit again or
opens it for another period.

What counts as the service failing is the caller's to say (``trips``): a timeout, a refused
connection or a 5xx are the service's fault; a declined card or a 4xx for a bad request are
not, and must never open the circuit for everybody else. Either way the exception reaches the
caller unchanged.

Breakers are process-wide, one per dependency name. Name a dependency by its endpoint
(``"llm:api.example.com:443"``, ``"stripe:api.stripe.com"``), so two endpoints never share a
fate, and so do tests with their own fake servers. Webhook receivers are named by endpoint
(``"webhook:<endpoint id>"``): many customers' receivers share a host, and one broken receiver
must not stop the others. ``CircuitBreakerCollector`` exports the
state of each to Prometheus at scrape time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Final, Literal, TypeVar
from urllib.parse import urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..config import Settings
from ..errors import DependencyUnavailable

__all__ = [
    "STATE_VALUES",
    "BreakerPolicy",
    "CircuitBreaker",
    "CircuitBreakerCollector",
    "CircuitOpen",
    "State",
    "breaker",
    "breakers",
    "configure_breakers",
    "endpoint_name",
]

T = TypeVar("T")
State = Literal["closed", "half_open", "open"]
# The gauge's values: ordered by how bad it is, so max() over instances means something.
STATE_VALUES: Final[dict[State, int]] = {"closed": 0, "half_open": 1, "open": 2}


class CircuitOpen(DependencyUnavailable):
    """Refused without calling: the dependency's circuit is open (or a probe is under way)."""


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens, and for how long (``VOICESTREAM_BREAKER_*``)."""

    failure_threshold: int = 5
    reset_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or not self.reset_timeout_s > 0:
            raise ValueError("a breaker needs failure_threshold >= 1 and reset_timeout_s > 0")

    @classmethod
    def from_settings(cls, settings: Settings) -> BreakerPolicy:
        return cls(settings.breaker_failures, settings.breaker_reset_seconds)


def _every_exception(_: BaseException) -> bool:
    return True


class CircuitBreaker:
    """One dependency's circuit. ``call`` runs through it; the state is only read, never set,
    from outside (tests and metrics)."""

    def __init__(
        self,
        name: str,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._state: State = "closed"
        self._failures = 0  # consecutive, while closed
        self._opened_at = 0.0
        self._probing = False
        self.opened_total = 0
        self.refused_total = 0

    @property
    def state(self) -> State:
        """The state as the next call would find it (open turns half-open when its time is up)."""
        if self._state == "open" and self._clock() >= self._opened_at + self.policy.reset_timeout_s:
            return "half_open"
        return self._state

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        trips: Callable[[BaseException], bool] = _every_exception,
        fails: Callable[[T], bool] | None = None,
    ) -> T:
        """``await fn()`` unless the circuit is open; record whether the dependency failed:
        an exception that ``trips``, or a result that ``fails`` (say, a 5xx answer returned
        rather than raised)."""
        probe = self._admit()
        try:
            result = await fn()
        except asyncio.CancelledError:
            # The caller gave up: says nothing about the service. Free the probe slot.
            if probe:
                self._probing = False
            raise
        except Exception as exc:
            if trips(exc):
                self._failed(probe)
            else:
                self._succeeded(probe)  # the service answered, if not what was hoped
            raise
        if fails is not None and fails(result):
            self._failed(probe)
        else:
            self._succeeded(probe)
        return result

    def _admit(self) -> bool:
        """Whether the call may go (True: it is the half-open probe); else CircuitOpen."""
        state = self.state
        if state == "closed":
            return False
        if state == "half_open" and not self._probing:
            self._state = "half_open"
            self._probing = True
            return True
        self.refused_total += 1
        if state == "open":
            left = self._opened_at + self.policy.reset_timeout_s - self._clock()
        else:
            left = 1.0  # a probe is deciding it now
        raise CircuitOpen(self.name, max(1, math.ceil(left)))

    def _succeeded(self, probe: bool) -> None:
        if probe or self._state == "closed":
            self._state = "closed"
            self._failures = 0
            self._probing = False

    def _failed(self, probe: bool) -> None:
        if probe:
            self._open()
            return
        if self._state != "closed":
            return  # a call admitted before the circuit opened; it is open already
        self._failures += 1
        if self._failures >= self.policy.failure_threshold:
            self._open()

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._probing = False
        self._failures = 0
        self.opened_total += 1


_BREAKERS: dict[str, CircuitBreaker] = {}
_default_policy = BreakerPolicy()


def configure_breakers(policy: BreakerPolicy) -> None:
    """The policy of every breaker from now on (a server sets it from its settings at start)."""
    global _default_policy
    _default_policy = policy
    for existing in _BREAKERS.values():
        existing.policy = policy


def breaker(name: str) -> CircuitBreaker:
    """The process's breaker for the dependency ``name``, made on first use."""
    found = _BREAKERS.get(name)
    if found is None:
        found = _BREAKERS[name] = CircuitBreaker(name, _default_policy)
    return found


def breakers() -> list[CircuitBreaker]:
    """Every breaker made so far, by name."""
    return [_BREAKERS[name] for name in sorted(_BREAKERS)]


def endpoint_name(kind: str, url: str) -> str:
    """``kind:host:port`` for a URL: the breaker name of one endpoint of that kind."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{kind}:{parts.hostname or ''}:{port}"


class CircuitBreakerCollector:
    """Each breaker's state and counts as Prometheus metrics, read when scraped."""

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "voicestream_circuit_state",
            "Each outside dependency's circuit: 0 closed, 1 half-open (a probe may go), 2 open "
            "(calls refused with 503 and Retry-After).",
            labels=["dependency"],
        )
        opened = CounterMetricFamily(
            "voicestream_circuit_opened",
            "Times each dependency's circuit opened after repeated failures.",
            labels=["dependency"],
        )
        refused = CounterMetricFamily(
            "voicestream_circuit_refused",
            "Calls refused without trying because the dependency's circuit was open.",
            labels=["dependency"],
        )
        for each in breakers():
            state.add_metric([each.name], STATE_VALUES[each.state])
            opened.add_metric([each.name], each.opened_total)
            refused.add_metric([each.name], each.refused_total)
        yield state
        yield opened
        yield refused
