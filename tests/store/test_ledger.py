"""The credits ledger against the real session database (issue 10 §6): many concurrent
reservations against a small balance never overdraw it, every posting happens once per ref,
and the database itself keeps the entries append-only and every transaction balanced."""

from __future__ import annotations

import asyncio
import uuid
from uuid import UUID

import pytest

from fixtures_services import unique_name
from voicestream.billing import ledger
from voicestream.billing.ledger import CreditPolicy
from voicestream.errors import InsufficientCredits, ValidationFailed
from voicestream.store import db
from voicestream.store import ledger as store
from voicestream.store.ledger import Balances
from voicestream.store.workspaces import ensure_workspace

ENFORCED = CreditPolicy(enforced=True)
FREE = CreditPolicy(enforced=False)


async def _workspace(pool: db.Pool) -> UUID:
    async with pool.acquire() as conn:
        return await ensure_workspace(conn, unique_name("ledger"))


async def _balances(pool: db.Pool, workspace_id: UUID) -> Balances:
    """The cached balances, after checking them against the sum of the entries."""
    cached = await store.balances(pool, workspace_id)
    assert cached == await store.derived_balances(pool, workspace_id)
    return cached


async def _reserve(pool: db.Pool, workspace_id: UUID, job_id: UUID, credits: int) -> bool:
    """One submission's transaction; whether the reservation was accepted."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            await ledger.reserve(conn, workspace_id, job_id, credits, policy=ENFORCED)
    except InsufficientCredits:
        return False
    return True


async def test_concurrent_reservations_never_overdraw_a_small_balance(db_pool: db.Pool) -> None:
    workspace_id = await _workspace(db_pool)
    await ledger.grant(db_pool, workspace_id, 10)

    accepted = await asyncio.gather(
        *(_reserve(db_pool, workspace_id, uuid.uuid4(), 3) for _ in range(25))
    )

    assert accepted.count(True) == 3  # 9 of the 10 credits; a fourth would need 12
    assert await _balances(db_pool, workspace_id) == Balances(-10, 1, 9, 0)
    assert len(await store.open_reservations(db_pool, workspace_id, limit=100)) == 3


async def test_concurrent_up_front_usage_never_overdraws(db_pool: db.Pool) -> None:
    workspace_id = await _workspace(db_pool)
    await ledger.grant(db_pool, workspace_id, 20)

    async def charge(n: int) -> int:
        try:
            return await ledger.post_usage(
                db_pool,
                workspace_id,
                "tts_characters",
                6,
                ref=f"req-{n}",
                policy=ENFORCED,
                up_front=True,
            )
        except InsufficientCredits:
            return 0

    spent = await asyncio.gather(*(charge(n) for n in range(12)))

    assert sorted(spent, reverse=True)[:4] == [6, 6, 6, 0]
    assert await _balances(db_pool, workspace_id) == Balances(-20, 2, 0, 18)


async def test_a_refused_reservation_posts_nothing_and_says_why(db_pool: db.Pool) -> None:
    workspace_id = await _workspace(db_pool)
    await ledger.grant(db_pool, workspace_id, 5)
    job_id = uuid.uuid4()

    async with db_pool.acquire() as conn, conn.transaction():
        # A savepoint: the caller's transaction (the job's submission) stays usable.
        with pytest.raises(InsufficientCredits) as refused:
            await ledger.reserve(conn, workspace_id, job_id, 6, policy=ENFORCED)
        assert await conn.fetchval("SELECT 1") == 1

    assert refused.value.http_status == 402
    assert refused.value.code == "insufficient_credits"
    assert refused.value.details == {"available": 5, "required": 6}
    assert await store.posted(db_pool, workspace_id, [f"job:{job_id}:reserve"]) == set()
    assert await _balances(db_pool, workspace_id) == Balances(-5, 5, 0, 0)


async def test_every_posting_happens_once_per_job_or_ref(db_pool: db.Pool) -> None:
    workspace_id = await _workspace(db_pool)
    await ledger.grant(db_pool, workspace_id, 100, ref="top-up-1")
    await ledger.grant(db_pool, workspace_id, 100, ref="top-up-1")  # a retried grant
    settled, voided = uuid.uuid4(), uuid.uuid4()

    async with db_pool.acquire() as conn:
        for _ in range(2):  # a job that ran twice: every effect once
            await ledger.reserve(conn, workspace_id, settled, 30, policy=ENFORCED)
            await ledger.settle(conn, workspace_id, settled, 12, policy=ENFORCED)
            await ledger.void(conn, workspace_id, settled)  # a late failure: already settled
        await ledger.reserve(conn, workspace_id, voided, 20, policy=ENFORCED)
        await ledger.void(conn, workspace_id, voided)
        await ledger.settle(conn, workspace_id, voided, 20, policy=ENFORCED)  # already voided
        await ledger.reserve(conn, workspace_id, voided, 20, policy=ENFORCED)  # and not again
    for _ in range(2):
        await ledger.post_usage(
            db_pool, workspace_id, "stt_seconds", 2.5, ref="rec-1", policy=ENFORCED
        )
        await ledger.refund_usage(db_pool, workspace_id, "rec-1")

    assert await _balances(db_pool, workspace_id) == Balances(-100, 88, 0, 12)
    page = await store.page(db_pool, workspace_id, limit=50, before=None)
    kinds = [t.kind for t in reversed(page.transactions)]
    assert kinds == ["grant", "reserve", "settle", "reserve", "void", "usage", "refund"]
    usage = next(t for t in page.transactions if t.kind == "usage")
    assert usage.entries == {"available": -3, "spent": 3}  # 2.5 s: three started seconds
    assert usage.details == {"kind": "stt_seconds", "quantity": 2.5, "credits": 3}
    assert await store.open_reservations(db_pool, workspace_id, limit=10) == []


async def test_a_job_that_used_more_than_it_reserved(db_pool: db.Pool) -> None:
    workspace_id = await _workspace(db_pool)
    await ledger.grant(db_pool, workspace_id, 10)
    job_id = uuid.uuid4()
    async with db_pool.acquire() as conn:
        await ledger.reserve(conn, workspace_id, job_id, 4, policy=ENFORCED)
        # The work is done: it takes what is available, and the rest is noted, not owed.
        await ledger.settle(conn, workspace_id, job_id, 15, policy=ENFORCED)

    assert await _balances(db_pool, workspace_id) == Balances(-10, 0, 0, 10)
    settle = await store.find(db_pool, workspace_id, f"job:{job_id}:resolve")
    assert settle is not None and settle.kind == "settle"
    assert settle.details == {"credits_used": 15, "reserved": 4, "uncovered": 5}


async def test_not_enforced_the_shortfall_is_granted_free(db_pool: db.Pool) -> None:
    workspace_id = await _workspace(db_pool)
    job_id = uuid.uuid4()
    async with db_pool.acquire() as conn:
        await ledger.reserve(conn, workspace_id, job_id, 40, policy=FREE)
        await ledger.settle(conn, workspace_id, job_id, 25, policy=FREE)
    await ledger.post_usage(db_pool, workspace_id, "tts_characters", 20, ref="r", policy=FREE)

    # 40 granted for the reservation, 15 of it released; the usage's 20 takes those 15 and
    # 5 more granted free.
    assert await _balances(db_pool, workspace_id) == Balances(-45, 0, 0, 45)
    page = await store.page(db_pool, workspace_id, limit=50, before=None)
    free = [t for t in page.transactions if t.kind == "grant"]
    assert [t.details for t in free] == [{"source": "free"}, {"source": "free"}]


async def test_the_opening_grant_is_posted_once(db_pool: db.Pool) -> None:
    workspace_id = await _workspace(db_pool)
    policy = CreditPolicy(enforced=True, opening_grant=50)
    await ledger.require_credits(db_pool, workspace_id, policy=policy)
    await ledger.post_usage(
        db_pool, workspace_id, "conversation_seconds", 10, ref="c", policy=policy
    )
    await ledger.require_credits(db_pool, workspace_id, policy=policy)

    assert await _balances(db_pool, workspace_id) == Balances(-50, 30, 0, 20)
    opening = await store.find(db_pool, workspace_id, "opening")
    assert opening is not None and opening.entries == {"grants": -50, "available": 50}


async def test_streams_are_refused_once_nothing_is_available(db_pool: db.Pool) -> None:
    workspace_id = await _workspace(db_pool)
    with pytest.raises(InsufficientCredits):
        await ledger.require_credits(db_pool, workspace_id, policy=ENFORCED)
    await ledger.require_credits(db_pool, workspace_id, policy=FREE)
    await ledger.grant(db_pool, workspace_id, 1)
    await ledger.require_credits(db_pool, workspace_id, policy=ENFORCED)


async def test_entries_are_append_only(db_pool: db.Pool) -> None:
    workspace_id = await _workspace(db_pool)
    await ledger.grant(db_pool, workspace_id, 7)
    statements = [
        "UPDATE ledger_entries SET amount = amount * 2 WHERE workspace_id = $1",
        "DELETE FROM ledger_entries WHERE workspace_id = $1",
        "UPDATE ledger_transactions SET kind = 'void' WHERE workspace_id = $1",
        "DELETE FROM ledger_transactions WHERE workspace_id = $1",
    ]
    for statement in statements:
        with pytest.raises(db.PostgresError, match="append-only"):
            await db_pool.execute(statement, workspace_id)
    for table in ("ledger_entries", "ledger_transactions"):
        with pytest.raises(db.PostgresError, match="append-only"):
            await db_pool.execute(f"TRUNCATE {table} CASCADE")
    assert await _balances(db_pool, workspace_id) == Balances(-7, 7, 0, 0)

    # Only a workspace's deletion takes its ledger with it.
    await db_pool.execute("DELETE FROM workspaces WHERE id = $1", workspace_id)
    left = await db_pool.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE workspace_id = $1", workspace_id
    )
    assert left == 0


async def test_the_database_refuses_unbalanced_or_negative_postings(db_pool: db.Pool) -> None:
    workspace_id = await _workspace(db_pool)
    await ledger.grant(db_pool, workspace_id, 3)
    async with db_pool.acquire() as conn:
        with pytest.raises(ValueError, match="balance"):
            async with conn.transaction():
                await store.post(
                    conn, workspace_id, ref="lopsided", kind="grant", entries={"available": 5}
                )
        # Past the Python check, straight in SQL: refused at commit.
        with pytest.raises(db.PostgresError, match="does not balance"):
            async with conn.transaction():
                tid = await conn.fetchval(
                    "INSERT INTO ledger_transactions (workspace_id, ref, kind) "
                    "VALUES ($1, 'raw', 'grant') RETURNING id",
                    workspace_id,
                )
                await conn.execute(
                    "INSERT INTO ledger_entries (workspace_id, transaction_id, account, amount) "
                    "VALUES ($1, $2, 'spent', 1)",
                    workspace_id,
                    tid,
                )
        # Balanced, but more than is available: the balance's CHECK refuses it.
        with pytest.raises(db.PostgresError, match="ledger_balances_available_check"):
            async with conn.transaction():
                await store.post(
                    conn,
                    workspace_id,
                    ref="overdraw",
                    kind="usage",
                    entries={"available": -4, "spent": 4},
                )
    assert await _balances(db_pool, workspace_id) == Balances(-3, 3, 0, 0)


async def test_amounts_are_checked(db_pool: db.Pool) -> None:
    workspace_id = await _workspace(db_pool)
    for bad in (0, -1, 10**13):
        with pytest.raises(ValidationFailed):
            await ledger.grant(db_pool, workspace_id, bad)
    async with db_pool.acquire() as conn:
        with pytest.raises(ValidationFailed):
            await ledger.reserve(conn, workspace_id, uuid.uuid4(), -5, policy=ENFORCED)
    with pytest.raises(ValidationFailed):
        await ledger.post_usage(db_pool, workspace_id, "minutes", 1, ref="x", policy=FREE)
    assert await _balances(db_pool, workspace_id) == Balances()
