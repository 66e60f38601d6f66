"""Seat quotas below the HTTP layer: the default seat quota from settings, a member's own
quota over it, whose seat a record is (the user, else the key's maker), and concurrent
charges of one seat that never pass it together."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from uuid import UUID

import pytest

from fixtures_services import unique_name
from voicestream.config import load_settings
from voicestream.errors import QuotaExceeded
from voicestream.identity import quotas
from voicestream.store import db
from voicestream.store.keys import ApiKeyRepository, Principal
from voicestream.store.usage import UsageRepository
from voicestream.store.users import UserRepository

SETTINGS = load_settings({}, seat_quota_tts_characters=10)


@pytest.fixture
def usage(db_pool: db.Pool) -> UsageRepository:
    return UsageRepository(db_pool)


async def _member(db_pool: db.Pool, workspace: str) -> Principal:
    users = UserRepository(db_pool)
    user = await users.create(f"{unique_name('seat')}@example.com", None, verified=True)
    membership = await users.set_membership(user.id, workspace, "editor")
    return Principal(
        key_id=None,
        workspace_id=membership.workspace_id,
        workspace_name=workspace,
        role="editor",
        user_id=user.id,
    )


async def test_the_default_seat_quota_and_a_members_own(
    db_pool: db.Pool, usage: UsageRepository
) -> None:
    workspace = unique_name("seats")
    alice, bob = await _member(db_pool, workspace), await _member(db_pool, workspace)
    assert alice.user_id is not None and bob.user_id is not None

    await quotas.charge(usage, SETTINGS, alice, "tts_characters", 6)
    with pytest.raises(QuotaExceeded) as refused:
        await quotas.charge(usage, SETTINGS, alice, "tts_characters", 6)
    assert refused.value.details is not None
    assert refused.value.details["scope"] == "seat"
    assert refused.value.details["user_id"] == str(alice.user_id)
    assert refused.value.details["limit"] == 10
    # Streams need room left: 6 of 10 has some.
    await quotas.require_headroom(usage, SETTINGS, alice, "tts_characters")

    # Bob's own quota replaces the default for him alone.
    await usage.set_seat_quotas(bob.workspace_id, bob.user_id, {"tts_characters": Decimal(15)})
    await quotas.charge(usage, SETTINGS, bob, "tts_characters", 12)
    with pytest.raises(QuotaExceeded):
        await quotas.charge(usage, SETTINGS, bob, "tts_characters", 4)

    # A key Alice made is Alice's seat; a key nobody made (the CLI's) has no seat.
    keys = ApiKeyRepository(db_pool)
    hers, _ = await keys.create(
        workspace_id=alice.workspace_id, role="editor", created_by_user_id=alice.user_id
    )
    nobodys, _ = await keys.create(workspace_id=alice.workspace_id, role="editor")
    with pytest.raises(QuotaExceeded):
        await quotas.charge(usage, SETTINGS, (alice.workspace_id, hers.id), "tts_characters", 6)
    await quotas.charge(usage, SETTINGS, (alice.workspace_id, nobodys.id), "tts_characters", 60)
    await usage.record((alice.workspace_id, hers.id), "tts_characters", 4)  # after the work
    assert await usage.total(
        alice.workspace_id, "tts_characters", since=quotas.month_start(), user_id=alice.user_id
    ) == Decimal(10)
    with pytest.raises(QuotaExceeded):
        await quotas.require_headroom(usage, SETTINGS, alice, "tts_characters")


async def test_concurrent_charges_of_one_seat_never_pass_it(
    db_pool: db.Pool, usage: UsageRepository
) -> None:
    member = await _member(db_pool, unique_name("seats"))

    async def one() -> bool:
        try:
            await quotas.charge(usage, SETTINGS, member, "tts_characters", 3)
        except QuotaExceeded:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(12)))
    assert sorted(results) == [False] * 9 + [True] * 3
    assert isinstance(member.user_id, UUID)
    used = await usage.total(
        member.workspace_id, "tts_characters", since=quotas.month_start(), user_id=member.user_id
    )
    assert used == Decimal(9)
