"""The credits ledger's rules: how a workspace gets credits, and how work holds and spends them.

A workspace's credits live in four accounts (``store/ledger.py``): ``grants`` (their source),
``available``, ``reserved`` and ``spent``. Each operation is one balanced transaction,
decided and posted under the workspace's balance lock, once per ref:

- ``grant``: grants → available (``voicestream credits grant``, the opening grant).
- ``reserve`` (a job is submitted): available → reserved, the job's estimate; refused with
  ``InsufficientCredits`` (402) when enforced and the available credits cannot cover it.
- ``settle`` (the job completed): its reservation leaves ``reserved``; what it used goes to
  ``spent`` and the rest back to ``available``. A job that used more than it reserved draws the
  difference from ``available`` as far as that goes (the work is done; the uncovered rest is
  noted in the transaction's details, never owed as a negative balance).
- ``void`` (the job failed or was cancelled): its reservation goes back to ``available``.
  A job is settled or voided, never both, and only once (one ref, ``job:<id>:resolve``).
- ``post_usage`` (a stream or request used characters or seconds): available → spent at the
  prices of ``billing/prices.py``; ``up_front`` (the size is known before the work, as a TTS
  request's text) refuses like ``reserve``, otherwise the work is done and the posting takes
  what is there. ``refund_usage`` takes an up-front posting back when the work failed.

A workspace with an active (or trialing) paid subscription is never refused for credits:
what its credits cannot cover is granted as ``{"source": "overage"}`` and billed as overage.

With nothing configured credits are not enforced (``VOICESTREAM_CREDITS_ENFORCED``, default
false): every posting is still made, and whatever the available credits cannot cover is
granted on the spot from ``grants`` (details ``{"source": "free"}``), so the balance never
goes negative and the entries show all that was used. Enforced, nothing is granted but by an
operator: ``voicestream credits grant``, and the opening grant
(``VOICESTREAM_CREDITS_OPENING_GRANT``, default 0) each workspace receives once, the first
time its credits are used or read.

A workspace whose subscription is past due (``store/billing.py``, set by Stripe's
``invoice.payment_failed``) gets ``PaymentRequired`` (402 ``payment_past_due``) from every
path that admits new paid work: ``reserve``, an ``up_front`` ``post_usage`` and
``require_credits``. Work already done is still posted, and reads keep working.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Final
from uuid import UUID, uuid4

from ..config import Settings
from ..errors import InsufficientCredits, PaymentRequired, ValidationFailed
from ..store import billing as billing_store
from ..store import db
from ..store import ledger as store
from ..store.ledger import Balances, LedgerPage, Reservation
from ..store.usage import USAGE_KINDS, UsageKind
from .prices import usage_credits

__all__ = [
    "MAX_GRANT",
    "CreditPolicy",
    "CreditStatement",
    "grant",
    "post_usage",
    "refund_usage",
    "require_credits",
    "reserve",
    "settle",
    "statement",
    "void",
]

# Far above any real grant, far below bigint's limit, so sums of many grants cannot overflow.
MAX_GRANT: Final = 10**12


@dataclass(frozen=True, slots=True)
class CreditPolicy:
    """The server's credit settings: whether work is refused without credits, and each
    workspace's opening grant."""

    enforced: bool = False
    opening_grant: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> CreditPolicy:
        return cls(settings.credits_enforced, settings.credits_opening_grant)


@dataclass(frozen=True, slots=True)
class CreditStatement:
    balances: Balances
    reservations: list[Reservation]  # the oldest open ones
    page: LedgerPage


@asynccontextmanager
async def _transaction(target: db.Connection | db.Pool) -> AsyncIterator[db.Connection]:
    """A transaction on ``target``: the caller's own, as a savepoint, when given a connection
    (a refusal then undoes only this posting), else a new one from the pool."""
    if db.is_pool(target):
        async with target.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with target.transaction():
            yield target


def _credits(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_GRANT:
        raise ValidationFailed(f"{what} must be a whole number of credits from 0 to {MAX_GRANT}")
    return value


async def _open(conn: db.Connection, workspace_id: UUID, policy: CreditPolicy) -> Balances:
    """Lock the workspace's balances, posting its opening grant first if it is due."""
    balances, opened = await store.lock(conn, workspace_id)
    amount = policy.opening_grant
    if amount > 0 and not opened:
        await store.post(
            conn,
            workspace_id,
            ref="opening",
            kind="grant",
            entries={"grants": -amount, "available": amount},
            details={"source": "opening"},
        )
        balances = replace(
            balances, grants=balances.grants - amount, available=balances.available + amount
        )
    return balances


async def _refuse_past_due(conn: db.Connection | db.Pool, workspace_id: UUID) -> None:
    if await billing_store.is_past_due(conn, workspace_id):
        raise PaymentRequired(
            "the workspace's subscription is past due: pay the open invoice to use paid "
            "features again (reads keep working)",
            details={"status": "past_due"},
        )


def _short(balances: Balances, needed: int) -> InsufficientCredits:
    return InsufficientCredits(
        f"the workspace has {balances.available} credits available and this needs {needed}; "
        "an operator grants credits with `voicestream credits grant`",
        details={"available": balances.available, "required": needed},
    )


async def _cover(
    conn: db.Connection,
    workspace_id: UUID,
    balances: Balances,
    needed: int,
    *,
    ref: str,
    policy: CreditPolicy,
    strict: bool,
) -> tuple[Balances, int]:
    """How much of ``needed`` the available credits cover, after the free grant of the
    shortfall when credits are not enforced. ``strict``: all or InsufficientCredits."""
    shortfall = needed - balances.available
    if shortfall <= 0:
        return balances, needed
    # A paid subscription's use past its credits is overage, billed through Stripe
    # (billing/reconciliation.py), not refused.
    source = "free" if not policy.enforced else "overage"
    if not policy.enforced or await billing_store.bills_overage(conn, workspace_id):
        await store.post(
            conn,
            workspace_id,
            ref=f"{ref}:{source}",
            kind="grant",
            entries={"grants": -shortfall, "available": shortfall},
            details={"source": source},
        )
        return replace(balances, grants=balances.grants - shortfall, available=needed), needed
    if strict:
        raise _short(balances, needed)
    return balances, balances.available


async def reserve(
    conn: db.Connection, workspace_id: UUID, job_id: UUID, credits: int, *, policy: CreditPolicy
) -> None:
    """Hold ``credits`` for a submitted job. Once per job: a repeat, or a reserve after the
    job was settled or voided, does nothing. Raises InsufficientCredits (402) when enforced
    and the available credits cannot cover them; nothing is posted then."""
    _credits(credits, "a reservation")
    ref = f"job:{job_id}:reserve"
    async with _transaction(conn) as tx:
        balances = await _open(tx, workspace_id, policy)
        # After the lock: a concurrent duplicate waits for the first and then sees it.
        if await store.posted(tx, workspace_id, [ref, f"job:{job_id}:resolve"]):
            return
        if credits > 0:
            await _refuse_past_due(tx, workspace_id)
        await _cover(tx, workspace_id, balances, credits, ref=ref, policy=policy, strict=True)
        await store.post(
            tx,
            workspace_id,
            ref=ref,
            kind="reserve",
            job_id=job_id,
            entries={"available": -credits, "reserved": credits},
            details={"credits": credits},
        )
        await store.hold(tx, workspace_id, job_id, credits)


async def settle(
    conn: db.Connection,
    workspace_id: UUID,
    job_id: UUID,
    credits_used: int,
    *,
    policy: CreditPolicy,
) -> None:
    """Post a completed job's actual use and release the rest of its reservation. Once per
    job (and never after a void); a job with no reservation is charged from what is
    available."""
    _credits(credits_used, "credits used")
    ref = f"job:{job_id}:resolve"
    async with _transaction(conn) as tx:
        balances = await _open(tx, workspace_id, policy)
        if await store.posted(tx, workspace_id, [ref]):
            return
        held = await store.release(tx, workspace_id, job_id)
        details: dict[str, Any] = {"credits_used": credits_used, "reserved": held}
        spent = credits_used
        if (extra := credits_used - held) > 0:
            _, covered = await _cover(
                tx, workspace_id, balances, extra, ref=ref, policy=policy, strict=False
            )
            spent = held + covered
            if spent < credits_used:
                details["uncovered"] = credits_used - spent
        await store.post(
            tx,
            workspace_id,
            ref=ref,
            kind="settle",
            job_id=job_id,
            entries={"reserved": -held, "spent": spent, "available": held - spent},
            details=details,
        )


async def void(conn: db.Connection, workspace_id: UUID, job_id: UUID) -> None:
    """Return a failed or cancelled job's reservation to the available credits. Once per job
    (and never after a settle)."""
    ref = f"job:{job_id}:resolve"
    async with _transaction(conn) as tx:
        await store.lock(tx, workspace_id)
        if await store.posted(tx, workspace_id, [ref]):
            return
        held = await store.release(tx, workspace_id, job_id)
        await store.post(
            tx,
            workspace_id,
            ref=ref,
            kind="void",
            job_id=job_id,
            entries={"reserved": -held, "available": held},
            details={"reserved": held},
        )


def _usage_kind(kind: str) -> UsageKind:
    if kind not in USAGE_KINDS:
        raise ValidationFailed(f"unknown usage kind {kind!r}; use one of {', '.join(USAGE_KINDS)}")
    return kind


async def post_usage(
    conn_or_pool: db.Connection | db.Pool,
    workspace_id: UUID,
    kind: str,
    quantity: float | Decimal,
    *,
    ref: str,
    policy: CreditPolicy,
    up_front: bool = False,
) -> int:
    """Spend the price of ``quantity`` of ``kind`` (``billing/prices.py``), once per ``ref``.

    ``up_front``: the work has not happened yet, so it is refused (InsufficientCredits) when
    enforced and the available credits cannot cover it. Otherwise the work is done and the
    posting takes what is available, noting any uncovered rest. Returns the credits spent
    (0 for a ref posted before).
    """
    price = usage_credits(_usage_kind(kind), quantity)
    full_ref = f"usage:{ref}"
    async with _transaction(conn_or_pool) as tx:
        balances = await _open(tx, workspace_id, policy)
        if await store.posted(tx, workspace_id, [full_ref]):
            return 0
        if up_front and price > 0:
            await _refuse_past_due(tx, workspace_id)
        _, covered = await _cover(
            tx, workspace_id, balances, price, ref=full_ref, policy=policy, strict=up_front
        )
        details: dict[str, Any] = {"kind": kind, "quantity": float(quantity), "credits": price}
        if covered < price:
            details["uncovered"] = price - covered
        await store.post(
            tx,
            workspace_id,
            ref=full_ref,
            kind="usage",
            entries={"available": -covered, "spent": covered},
            details=details,
        )
    return covered


async def refund_usage(conn_or_pool: db.Connection | db.Pool, workspace_id: UUID, ref: str) -> None:
    """Give back what the usage posted under ``ref`` spent: its work did not happen after all.
    Once per ref; nothing when nothing was posted."""
    async with _transaction(conn_or_pool) as tx:
        await store.lock(tx, workspace_id)
        original = await store.find(tx, workspace_id, f"usage:{ref}")
        if original is None:
            return
        spent = original.entries.get("spent", 0)
        await store.post(
            tx,
            workspace_id,
            ref=f"usage:{ref}:refund",
            kind="refund",
            entries={"spent": -spent, "available": spent},
            details={"refunds": original.id},
        )


async def grant(
    conn_or_pool: db.Connection | db.Pool,
    workspace_id: UUID,
    credits: int,
    *,
    note: str | None = None,
    ref: str | None = None,
    policy: CreditPolicy | None = None,
) -> Balances:
    """Give the workspace ``credits`` (at least 1); once per ``ref`` when one is given.
    Returns the balances after it."""
    if _credits(credits, "a grant") < 1:
        raise ValidationFailed("a grant must be at least 1 credit")
    if note is not None and len(note) > 500:
        raise ValidationFailed("a grant's note is at most 500 characters")
    details: dict[str, Any] = {"source": "grant"}
    if note:
        details["note"] = note
    async with _transaction(conn_or_pool) as tx:
        balances = await _open(tx, workspace_id, policy or CreditPolicy())
        done = await store.post(
            tx,
            workspace_id,
            ref=ref or f"grant:{uuid4()}",
            kind="grant",
            entries={"grants": -credits, "available": credits},
            details=details,
        )
        if not done:
            return balances
        return replace(
            balances, grants=balances.grants - credits, available=balances.available + credits
        )


async def require_credits(
    conn_or_pool: db.Connection | db.Pool, workspace_id: UUID, *, policy: CreditPolicy
) -> None:
    """Admission of work of unknown size (a stream): InsufficientCredits when credits are
    enforced and none are available, PaymentRequired when the workspace is past due. What
    the stream then uses is posted when it ends."""
    await _refuse_past_due(conn_or_pool, workspace_id)
    if not policy.enforced:
        return
    async with _transaction(conn_or_pool) as tx:
        balances = await _open(tx, workspace_id, policy)
    if balances.available <= 0:
        raise _short(balances, 1)


async def statement(
    pool: db.Pool,
    workspace_id: UUID,
    *,
    policy: CreditPolicy,
    limit: int,
    cursor: str | None = None,
    reservations: int = 100,
) -> CreditStatement:
    """The workspace's balances, its oldest open reservations and a page of its ledger,
    newest first (``cursor``: the previous page's ``next_cursor``)."""
    before = store.decode_cursor(cursor) if cursor is not None else None
    if policy.opening_grant > 0:
        async with _transaction(pool) as tx:
            await _open(tx, workspace_id, policy)  # so that a due opening grant shows
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # One snapshot: the balances, the holds and the page agree with each other.
        balances = await store.balances(conn, workspace_id)
        held = await store.open_reservations(conn, workspace_id, limit=reservations)
        page = await store.page(conn, workspace_id, limit=limit, before=before)
    return CreditStatement(balances, held, page)
