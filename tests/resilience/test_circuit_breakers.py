"""The circuit breaker's states on a clock the test moves: closed → open after repeated
failures → half-open with exactly one probe → closed or open again."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from voicestream.errors import DependencyUnavailable, ServiceUnavailable
from voicestream.resilience.circuit_breakers import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitBreakerCollector,
    CircuitOpen,
    breaker,
    endpoint_name,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Down(Exception):
    pass


class Declined(Exception):
    """An answer about one request (a declined card): never the service's failure."""


def _breaker(clock: Clock, failures: int = 3, reset_s: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker("stripe:test", BreakerPolicy(failures, reset_s), clock=clock)


async def _fail(cb: CircuitBreaker, exc: Exception | None = None) -> None:
    async def broken() -> None:
        raise exc or Down()

    with pytest.raises(type(exc or Down())):
        await cb.call(broken, trips=lambda e: isinstance(e, Down))


async def _ok() -> str:
    return "ok"


async def test_it_opens_after_the_threshold_and_refuses_without_calling() -> None:
    clock = Clock()
    cb = _breaker(clock)
    for _ in range(2):
        await _fail(cb)
    assert cb.state == "closed"
    await _fail(cb)
    assert cb.state == "open"

    calls = 0

    async def counted() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    clock.now += 10
    with pytest.raises(CircuitOpen) as refused:
        await cb.call(counted)
    assert calls == 0
    err = refused.value
    # A 503 the error middleware answers with Retry-After: the rest of the open period.
    assert isinstance(err, DependencyUnavailable) and isinstance(err, ServiceUnavailable)
    assert err.http_status == 503 and err.code == "dependency_unavailable"
    assert err.retry_after_s == 20
    assert err.to_dict()["error"]["details"] == {"dependency": "stripe:test", "retry_after_s": 20}
    assert cb.refused_total == 1 and cb.opened_total == 1


async def test_a_success_resets_the_count_of_failures_in_a_row() -> None:
    cb = _breaker(Clock())
    await _fail(cb)
    await _fail(cb)
    assert await cb.call(_ok) == "ok"
    await _fail(cb)
    await _fail(cb)
    assert cb.state == "closed"


async def test_answers_about_one_request_never_open_it() -> None:
    cb = _breaker(Clock(), failures=1)
    for _ in range(5):
        await _fail(cb, Declined())
    assert cb.state == "closed"
    # A returned answer can count as a failure too (a 5xx that is not raised).
    assert await cb.call(lambda: asyncio.sleep(0, 503), fails=lambda status: status >= 500) == 503
    assert cb.state == "open"


async def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock = Clock()
    cb = _breaker(clock, failures=1, reset_s=30)
    await _fail(cb)
    clock.now += 30
    assert cb.state == "half_open"

    release = asyncio.Event()

    async def slow_probe() -> str:
        await release.wait()
        return "back"

    probe = asyncio.create_task(cb.call(slow_probe))
    await asyncio.sleep(0)  # the probe is admitted and waits
    with pytest.raises(CircuitOpen) as refused:
        await cb.call(_ok)  # a second caller while the probe decides
    assert refused.value.retry_after_s == 1
    release.set()
    assert await probe == "back"
    assert cb.state == "closed"
    assert await cb.call(_ok) == "ok"


async def test_a_failed_probe_opens_it_for_another_period() -> None:
    clock = Clock()
    cb = _breaker(clock, failures=2, reset_s=30)
    await _fail(cb)
    await _fail(cb)
    clock.now += 31
    await _fail(cb)  # the probe: one failure is enough to re-open
    assert cb.state == "open" and cb.opened_total == 2
    clock.now += 29
    with pytest.raises(CircuitOpen):
        await cb.call(_ok)
    clock.now += 1
    assert await cb.call(_ok) == "ok"


async def test_a_cancelled_probe_frees_the_slot_for_the_next() -> None:
    clock = Clock()
    cb = _breaker(clock, failures=1)
    await _fail(cb)
    clock.now += 30
    probe = asyncio.create_task(cb.call(asyncio.Event().wait))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert cb.state == "half_open"
    assert await cb.call(_ok) == "ok"
    assert cb.state == "closed"


async def test_states_are_exported_when_scraped() -> None:
    name = endpoint_name("llm", "http://127.0.0.1:1/v1")
    assert name == "llm:127.0.0.1:1"
    assert endpoint_name("stripe", "https://api.stripe.com") == "stripe:api.stripe.com:443"
    cb = breaker(name)
    assert breaker(name) is cb
    for _ in range(cb.policy.failure_threshold):
        await _fail(cb)
    registry = CollectorRegistry()
    registry.register(CircuitBreakerCollector())
    text = generate_latest(registry).decode()
    assert f'voicestream_circuit_state{{dependency="{name}"}} 2.0' in text
    assert f'voicestream_circuit_opened_total{{dependency="{name}"}} 1.0' in text


def test_a_policy_must_be_able_to_close() -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(0, 30)
    with pytest.raises(ValueError):
        BreakerPolicy(3, 0)
