"""A property-based model of the credits ledger (issue 10 §6): grants, reservations,
settlements, voids, usage and refunds in any order, repeated and interleaved, against the real
database, must leave exactly the balances a few lines of Python arithmetic say.

Hypothesis drives the rules synchronously; the database calls run on an event loop of this
module's own, in a thread, with a pool of its own (the session's loop is not running between
the rules of a synchronous test).
"""

from __future__ import annotations

import asyncio
import math
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from fixtures_services import unique_name
from voicestream.billing import ledger
from voicestream.billing.ledger import CreditPolicy
from voicestream.billing.prices import CREDITS_PER_UNIT
from voicestream.errors import InsufficientCredits
from voicestream.store import db
from voicestream.store import ledger as store
from voicestream.store.embedded import ServiceURLs
from voicestream.store.ledger import Balances
from voicestream.store.workspaces import ensure_workspace

_T = TypeVar("_T")

JOBS = st.integers(0, 2)
REFS = st.sampled_from(["a", "b", "c"])


class _Database:
    """A pool on an event loop running in a thread of its own."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.pool: db.Pool = self.run(db.create_pool(url, max_size=2))

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.run(db.close_pool(self.pool))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def database(embedded_services: ServiceURLs, db_pool: db.Pool) -> Iterator[_Database]:
    # db_pool: the session's, which migrates the schema first.
    database = _Database(embedded_services.database_url)
    try:
        yield database
    finally:
        database.close()


@dataclass
class Model:
    """What the ledger should hold: the four accounts and what was posted once already."""

    enforced: bool
    opening_grant: int
    granted: int = 0
    available: int = 0
    reserved: int = 0
    spent: int = 0
    opened: bool = False
    holds: dict[UUID, int] = field(default_factory=dict)
    reserved_jobs: set[UUID] = field(default_factory=set)
    resolved_jobs: set[UUID] = field(default_factory=set)
    usage: dict[str, int] = field(default_factory=dict)  # ref -> credits spent
    refunded: set[str] = field(default_factory=set)

    def balances(self) -> Balances:
        return Balances(-self.granted, self.available, self.reserved, self.spent)

    def snapshot(self) -> dict[str, Any]:
        return {k: (v.copy() if hasattr(v, "copy") else v) for k, v in vars(self).items()}

    def restore(self, saved: dict[str, Any]) -> None:
        for k, v in saved.items():
            setattr(self, k, v)

    def open(self) -> None:
        if self.opening_grant and not self.opened:
            self.opened = True
            self.grant(self.opening_grant)

    def grant(self, credits: int) -> None:
        self.granted += credits
        self.available += credits

    def cover(self, needed: int, *, strict: bool) -> int:
        """How much of ``needed`` is covered; raises when strict and enforced."""
        if needed <= self.available:
            return needed
        if not self.enforced:
            self.grant(needed - self.available)
            return needed
        if strict:
            raise InsufficientCredits("model")
        return self.available


class LedgerMachine(RuleBasedStateMachine):
    database: _Database  # set by the test before it runs

    def __init__(self) -> None:
        super().__init__()
        self.workspace_id: UUID = self.database.run(self._new_workspace())
        # A few jobs and refs only, so that the rules keep meeting the same ones: reserve
        # then settle or void, a second settle, a refund of what was posted.
        self.jobs = [uuid.uuid4() for _ in range(3)]
        self.model = Model(enforced=True, opening_grant=0)
        self.policy = CreditPolicy()

    async def _new_workspace(self) -> UUID:
        async with self.database.pool.acquire() as conn:
            return await ensure_workspace(conn, unique_name("model"))

    @initialize(enforced=st.booleans(), opening_grant=st.sampled_from([0, 25, 100]))
    def configure(self, enforced: bool, opening_grant: int) -> None:
        self.model = Model(enforced=enforced, opening_grant=opening_grant)
        self.policy = CreditPolicy(enforced=enforced, opening_grant=opening_grant)

    def _expect(self, call: Coroutine[Any, Any, Any], model_step: Any) -> None:
        """Run ``call`` on the database and ``model_step`` on the model: both refuse, or
        neither (a refusal changes nothing in either)."""
        saved = self.model.snapshot()
        try:
            model_step()
            model_refused = False
        except InsufficientCredits:
            self.model.restore(saved)
            model_refused = True
        try:
            self.database.run(call)
            db_refused = False
        except InsufficientCredits:
            db_refused = True
        assert db_refused == model_refused

    @rule(credits=st.integers(1, 60))
    def grant(self, credits: int) -> None:
        def step() -> None:
            self.model.open()
            self.model.grant(credits)

        self._expect(
            ledger.grant(self.database.pool, self.workspace_id, credits, policy=self.policy), step
        )

    async def _in_transaction(self, call: Any) -> None:
        async with self.database.pool.acquire() as conn, conn.transaction():
            await call(conn)

    @rule(n=JOBS, credits=st.integers(0, 40))
    def reserve(self, n: int, credits: int) -> None:
        m, job = self.model, self.jobs[n]

        def step() -> None:
            m.open()
            if job in m.reserved_jobs or job in m.resolved_jobs:
                return
            m.cover(credits, strict=True)
            m.available -= credits
            m.reserved += credits
            m.holds[job] = credits
            m.reserved_jobs.add(job)

        self._expect(
            self._in_transaction(
                lambda conn: ledger.reserve(
                    conn, self.workspace_id, job, credits, policy=self.policy
                )
            ),
            step,
        )

    @rule(n=JOBS, used=st.integers(0, 60))
    def settle(self, n: int, used: int) -> None:
        m, job = self.model, self.jobs[n]

        def step() -> None:
            m.open()
            if job in m.resolved_jobs:
                return
            m.resolved_jobs.add(job)
            held = m.holds.pop(job, 0)
            covered = m.cover(used - held, strict=False) if used > held else used - held
            m.reserved -= held
            m.spent += held + covered
            m.available -= covered

        self._expect(
            self._in_transaction(
                lambda conn: ledger.settle(conn, self.workspace_id, job, used, policy=self.policy)
            ),
            step,
        )

    @rule(n=JOBS)
    def void(self, n: int) -> None:
        m, job = self.model, self.jobs[n]

        def step() -> None:
            if job in m.resolved_jobs:
                return
            m.resolved_jobs.add(job)
            held = m.holds.pop(job, 0)
            m.reserved -= held
            m.available += held

        self._expect(
            self._in_transaction(lambda conn: ledger.void(conn, self.workspace_id, job)), step
        )

    @rule(
        ref=REFS,
        kind=st.sampled_from(sorted(CREDITS_PER_UNIT)),
        quantity=st.floats(0, 30, allow_nan=False).map(lambda q: round(q, 2)),
        up_front=st.booleans(),
    )
    def post_usage(self, ref: str, kind: str, quantity: float, up_front: bool) -> None:
        m = self.model
        price = math.ceil(quantity) * CREDITS_PER_UNIT[kind]  # type: ignore[index]

        def step() -> None:
            m.open()
            if ref in m.usage:
                return
            covered = m.cover(price, strict=up_front)
            m.available -= covered
            m.spent += covered
            m.usage[ref] = covered

        self._expect(
            ledger.post_usage(
                self.database.pool,
                self.workspace_id,
                kind,
                quantity,
                ref=ref,
                policy=self.policy,
                up_front=up_front,
            ),
            step,
        )

    @rule(ref=REFS)
    def refund(self, ref: str) -> None:
        m = self.model

        def step() -> None:
            if ref not in m.usage or ref in m.refunded:
                return
            m.refunded.add(ref)
            m.spent -= m.usage[ref]
            m.available += m.usage[ref]

        self._expect(ledger.refund_usage(self.database.pool, self.workspace_id, ref), step)

    @invariant()
    def the_database_agrees_with_the_model(self) -> None:
        pool = self.database.pool
        cached = self.database.run(store.balances(pool, self.workspace_id))
        assert cached == self.model.balances()
        assert cached == self.database.run(store.derived_balances(pool, self.workspace_id))
        holds = self.database.run(store.open_reservations(pool, self.workspace_id, limit=1000))
        assert {h.job_id: h.credits for h in holds} == self.model.holds


def test_the_ledger_agrees_with_its_model(database: _Database) -> None:
    LedgerMachine.database = database
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=15,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
