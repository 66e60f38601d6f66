"""Passwords: the minimum policy, argon2id hashes made off the event loop, rehash on sign-in."""

from __future__ import annotations

import asyncio

import pytest
from argon2 import PasswordHasher

from voicestream.errors import ValidationFailed
from voicestream.identity.passwords import Passwords, check_password_policy

# Cheap parameters: these tests are about behaviour, not cost.
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "at least 10"),
        ("x" * 257, "at most 256"),
        ("Ada.Lovelace@Example.com", "e-mail"),
        ("  ada.lovelace@example.com ", "e-mail"),
        ("ada.lovelace", "e-mail"),  # the mailbox name alone
    ],
    ids=["short", "long", "address", "address-spaced", "mailbox"],
)
def test_the_policy_refuses_with_a_clear_422(password: str, problem: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_password_policy(password, email="ada.lovelace@example.com")
    err = caught.value
    assert err.http_status == 422 and problem in err.message
    assert err.details["fields"][0]["field"] == "password"
    assert password.strip() not in str(err.to_dict())  # a refused password is never echoed


def test_the_policy_accepts_ten_characters_that_are_not_the_address() -> None:
    check_password_policy("correct horse", email="ada@example.com")
    check_password_policy("x" * 256, email="ada@example.com")


async def test_hashes_are_argon2id_and_verify() -> None:
    passwords = Passwords(CHEAP)
    stored = await passwords.hash("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert (await passwords.verify(stored, "correct horse battery")).ok
    assert not (await passwords.verify(stored, "correct horse battery!")).ok
    assert not (await passwords.verify("not a hash", "correct horse battery")).ok
    assert not (await passwords.verify(None, "decoy password, never matches")).ok


async def test_a_hash_with_old_parameters_is_replaced_at_sign_in() -> None:
    old = await Passwords(CHEAP).hash("correct horse battery")
    current = Passwords(PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    check = await current.verify(old, "correct horse battery")
    assert check.ok and check.new_hash is not None
    assert "m=16,t=2,p=1" in check.new_hash
    again = await current.verify(check.new_hash, "correct horse battery")
    assert again.ok and again.new_hash is None
    wrong = await current.verify(old, "wrong horse battery")
    assert not wrong.ok and wrong.new_hash is None


async def test_hashing_leaves_the_event_loop_free() -> None:
    # The default (slow, memory-hard) parameters: run inline, they would stop every other
    # task until done, and the ticker below would not move at all.
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await Passwords().hash("correct horse battery")
    during = ticks - before
    task.cancel()
    assert during > 0
