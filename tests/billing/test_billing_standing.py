"""How a workspace's standing with Stripe changes what the credits ledger admits.

Past due: new paid work is refused with ``PaymentRequired`` (402 ``payment_past_due``) on every
admitting path, while work already done is still posted. A paid subscription in good standing
on a server that enforces credits: what its credits cannot cover is overage (granted, billed
through Stripe), not refused.
"""

from __future__ import annotations

import uuid
from uuid import UUID

import pytest

from fixtures_services import unique_name
from voicestream.billing import ledger
from voicestream.billing.ledger import CreditPolicy
from voicestream.errors import InsufficientCredits, PaymentRequired
from voicestream.store import billing as billing_store
from voicestream.store import db
from voicestream.store import ledger as store
from voicestream.store.billing import BillingAccount
from voicestream.store.workspaces import ensure_workspace

ENFORCED = CreditPolicy(enforced=True)


async def _workspace(pool: db.Pool, status: str | None, plan: str = "starter") -> UUID:
    async with pool.acquire() as conn:
        workspace_id = await ensure_workspace(conn, unique_name("standing"))
    if status is not None:
        account = BillingAccount(
            workspace_id,
            stripe_customer_id=f"cus_{uuid.uuid4().hex}",
            stripe_subscription_id=f"sub_{uuid.uuid4().hex}",
            plan=plan,
            status=status,
        )
        await billing_store.save_account(pool, account)
    return workspace_id


async def test_past_due_refuses_new_paid_work_but_posts_work_done(db_pool: db.Pool) -> None:
    workspace_id = await _workspace(db_pool, "past_due")
    await ledger.grant(db_pool, workspace_id, 100)
    with pytest.raises(PaymentRequired) as refused:
        await ledger.post_usage(
            db_pool,
            workspace_id,
            "tts_characters",
            5,
            ref="r1",
            policy=CreditPolicy(),
            up_front=True,
        )
    assert refused.value.code == "payment_past_due" and refused.value.http_status == 402
    with pytest.raises(PaymentRequired):
        await ledger.reserve(db_pool, workspace_id, uuid.uuid4(), 5, policy=CreditPolicy())
    with pytest.raises(PaymentRequired):
        await ledger.require_credits(db_pool, workspace_id, policy=CreditPolicy())
    # A stream that already ran is still charged; a free job reserves nothing and goes on.
    spent = await ledger.post_usage(
        db_pool, workspace_id, "stt_seconds", 3, ref="r2", policy=CreditPolicy()
    )
    assert spent == 3
    await ledger.reserve(db_pool, workspace_id, uuid.uuid4(), 0, policy=CreditPolicy())
    assert (await store.balances(db_pool, workspace_id)).available == 97


async def test_an_enforced_paid_subscription_runs_into_overage_not_refusal(
    db_pool: db.Pool,
) -> None:
    paying = await _workspace(db_pool, "active")
    spent = await ledger.post_usage(
        db_pool, paying, "tts_characters", 40, ref="o1", policy=ENFORCED, up_front=True
    )
    assert spent == 40
    grant = await store.find(db_pool, paying, "usage:o1:overage")
    assert grant is not None and grant.details == {"source": "overage"}

    for status, plan in ((None, "starter"), ("canceled", "starter"), ("active", "free")):
        other = await _workspace(db_pool, status, plan)
        with pytest.raises(InsufficientCredits):
            await ledger.post_usage(
                db_pool, other, "tts_characters", 40, ref="o1", policy=ENFORCED, up_front=True
            )
