"""Usage records and their credits in one transaction (``billing/metering.py``): a charge the
credits cannot cover writes no usage record either, a refund gives both back, and a record
made after the work posts what is there without refusing it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fixtures_services import unique_name
from voicestream.billing import ledger
from voicestream.billing.ledger import CreditPolicy
from voicestream.billing.metering import CreditMeter
from voicestream.config import load_settings
from voicestream.errors import InsufficientCredits
from voicestream.identity import quotas
from voicestream.store import db
from voicestream.store import ledger as store
from voicestream.store.ledger import Balances
from voicestream.store.usage import UsageRepository
from voicestream.store.workspaces import ensure_workspace

SETTINGS = load_settings({})


async def test_credits_and_usage_records_go_together(db_pool: db.Pool) -> None:
    usage = UsageRepository(db_pool, CreditMeter(db_pool, CreditPolicy(enforced=True)))
    async with db_pool.acquire() as conn:
        workspace_id = await ensure_workspace(conn, unique_name("meter"))
    await ledger.grant(db_pool, workspace_id, 10)

    charge = await quotas.charge(usage, SETTINGS, workspace_id, "tts_characters", 8)
    with pytest.raises(InsufficientCredits):
        await quotas.charge(usage, SETTINGS, workspace_id, "tts_characters", 8)
    assert await usage.totals(workspace_id) == {
        "tts_characters": 8.0,
        "stt_seconds": 0.0,
        "conversation_seconds": 0.0,
    }
    await charge.settle()  # recorded up front already: not a second time
    assert await store.balances(db_pool, workspace_id) == Balances(-10, 2, 0, 8)

    await charge.refund(workspace_id)  # the synthesis failed after all
    assert (await usage.totals(workspace_id))["tts_characters"] == 0
    assert await store.balances(db_pool, workspace_id) == Balances(-10, 10, 0, 0)

    # After the work nothing is refused: a stream's 12.5 s take the 10 credits there are.
    await usage.record(workspace_id, "stt_seconds", Decimal("12.5"))
    assert (await usage.totals(workspace_id))["stt_seconds"] == 12.5
    assert await store.balances(db_pool, workspace_id) == Balances(-10, 0, 0, 10)
    page = await store.page(db_pool, workspace_id, limit=1, before=None)
    assert page.transactions[0].details == {
        "kind": "stt_seconds",
        "quantity": 12.5,
        "credits": 13,
        "uncovered": 3,
    }
    with pytest.raises(InsufficientCredits):
        await quotas.require_headroom(usage, SETTINGS, workspace_id, "stt_seconds")
