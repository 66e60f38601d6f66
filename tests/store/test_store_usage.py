"""Usage records against the real session database."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fixtures_services import unique_name
from voicestream.errors import ValidationFailed
from voicestream.store import db
from voicestream.store.keys import ApiKeyRepository
from voicestream.store.usage import UsageRepository


@pytest.fixture
def usage(db_pool: db.Pool) -> UsageRepository:
    return UsageRepository(db_pool)


async def test_totals_are_summed_per_workspace(db_pool: db.Pool, usage: UsageRepository) -> None:
    keys = ApiKeyRepository(db_pool)
    key_a, plain_a = await keys.create(workspace=unique_name("usage-a"))
    key_b, _ = await keys.create(workspace=unique_name("usage-b"))
    principal = await keys.authenticate(plain_a)
    assert principal is not None

    await usage.record(principal, "tts_characters", 120)
    await usage.record(principal, "tts_characters", 30)
    await usage.record(key_a.workspace_id, "stt_seconds", 1.5)
    await usage.record((key_a.workspace_id, None), "stt_seconds", Decimal("2.25"))
    await usage.record((key_b.workspace_id, key_b.id), "tts_characters", 7)
    await usage.record((key_b.workspace_id, key_b.id), "conversation_seconds", 61.5)

    assert await usage.totals(key_a.workspace_id) == {
        "tts_characters": 150.0,
        "stt_seconds": 3.75,
        "conversation_seconds": 0.0,
    }
    assert await usage.totals(key_b.workspace_id) == {
        "tts_characters": 7.0,
        "stt_seconds": 0.0,
        "conversation_seconds": 61.5,
    }
    by_key = await db_pool.fetchval(
        "SELECT count(*) FROM usage_records WHERE api_key_id = $1", key_a.id
    )
    assert by_key == 2  # the principal's records carry its key


async def test_totals_respect_the_time_range(db_pool: db.Pool, usage: UsageRepository) -> None:
    key, _ = await ApiKeyRepository(db_pool).create(workspace=unique_name("usage-range"))
    await usage.record(key.workspace_id, "stt_seconds", 10)
    now = datetime.now(UTC)
    assert (await usage.totals(key.workspace_id, since=now + timedelta(minutes=1)))[
        "stt_seconds"
    ] == 0.0
    assert (await usage.totals(key.workspace_id, until=now + timedelta(minutes=1)))[
        "stt_seconds"
    ] == 10.0


@pytest.mark.parametrize(
    ("kind", "quantity"),
    [
        ("characters", 1),
        ("tts_characters", -1),
        ("tts_characters", math.nan),
        ("tts_characters", math.inf),
        ("stt_seconds", Decimal("NaN")),
        ("stt_seconds", True),
    ],
)
async def test_invalid_records_are_rejected(
    db_pool: db.Pool, usage: UsageRepository, kind: str, quantity: float
) -> None:
    key, _ = await ApiKeyRepository(db_pool).create(workspace=unique_name("usage-bad"))
    with pytest.raises(ValidationFailed):
        await usage.record(key.workspace_id, kind, quantity)
    nothing = {"tts_characters": 0.0, "stt_seconds": 0.0, "conversation_seconds": 0.0}
    assert await usage.totals(key.workspace_id) == nothing
