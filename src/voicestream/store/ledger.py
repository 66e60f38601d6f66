"""The credits ledger's SQL: transactions of balanced entries, and each workspace's balances.

Migration 0017 holds the rules the database itself enforces: entries are append-only (UPDATE,
DELETE and TRUNCATE fail), each transaction's entries sum to zero at commit, a trigger keeps
``ledger_balances`` in step with every entry, and no balance but ``grants`` goes below zero.
What to post and when is ``billing/ledger.py``'s business; this module only writes and reads.

Deciding on a balance and posting against it happen under the workspace's balance row lock
(``lock``), in the caller's transaction, so concurrent postings of one workspace queue there
and each sees the others' effects. Every posting has a ``ref`` unique in its workspace:
posting a ref a second time writes nothing (``post`` answers False), which makes every effect
of a retried job or request happen once.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, get_args
from uuid import UUID

from voicestream.errors import ValidationFailed
from voicestream.store import db

__all__ = [
    "ACCOUNTS",
    "MAX_PAGE_SIZE",
    "Account",
    "Balances",
    "LedgerPage",
    "LedgerTransaction",
    "Reservation",
    "TransactionKind",
    "balances",
    "decode_cursor",
    "derived_balances",
    "encode_cursor",
    "find",
    "hold",
    "lock",
    "open_reservations",
    "page",
    "post",
    "posted",
    "release",
]

Account = Literal["grants", "available", "reserved", "spent"]
ACCOUNTS: Final[tuple[Account, ...]] = get_args(Account)
TransactionKind = Literal["grant", "reserve", "settle", "void", "usage", "refund"]

MAX_PAGE_SIZE: Final = 200


@dataclass(frozen=True, slots=True)
class Balances:
    """One workspace's accounts. ``grants`` is the source of every credit: it is minus what
    was ever granted, so the four always sum to zero."""

    grants: int = 0
    available: int = 0
    reserved: int = 0
    spent: int = 0

    @property
    def granted(self) -> int:
        return -self.grants


@dataclass(frozen=True, slots=True)
class LedgerTransaction:
    id: int
    kind: TransactionKind
    ref: str
    job_id: UUID | None
    details: dict[str, Any]
    created_at: datetime
    # account -> amount (what it adds to that account); absent accounts are unchanged
    entries: dict[Account, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reservation:
    """Credits held for a job that has not been settled or voided yet."""

    job_id: UUID
    credits: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerPage:
    transactions: list[LedgerTransaction]
    next_cursor: str | None  # None on the last page


def _balances(row: db.Record | None) -> Balances:
    if row is None:
        return Balances()
    return Balances(row["grants"], row["available"], row["reserved"], row["spent"])


def _require_transaction(conn: db.Connection) -> None:
    # A lock or a posting outside a transaction would end before the decision it guards.
    if not conn.is_in_transaction():
        raise RuntimeError("ledger postings must run inside a database transaction")


async def lock(conn: db.Connection, workspace_id: UUID) -> tuple[Balances, bool]:
    """The workspace's balances, locked until the caller's transaction ends, and whether its
    opening grant (ref ``opening``) has been posted. Creates the row on first use."""
    _require_transaction(conn)
    await conn.execute(
        "INSERT INTO ledger_balances (workspace_id) VALUES ($1) "
        "ON CONFLICT (workspace_id) DO NOTHING",
        workspace_id,
    )
    row = await conn.fetchrow(
        """
        SELECT b.grants, b.available, b.reserved, b.spent,
               EXISTS (SELECT 1 FROM ledger_transactions t
                       WHERE t.workspace_id = b.workspace_id AND t.ref = 'opening') AS opened
        FROM ledger_balances b WHERE b.workspace_id = $1
        FOR UPDATE OF b
        """,
        workspace_id,
    )
    return _balances(row), bool(row["opened"])


async def post(
    conn: db.Connection,
    workspace_id: UUID,
    *,
    ref: str,
    kind: TransactionKind,
    entries: Mapping[Account, int],
    job_id: UUID | None = None,
    details: Mapping[str, Any] | None = None,
) -> bool:
    """Post one transaction; False (and nothing written) when ``ref`` was posted before.

    ``entries`` must sum to zero (the database refuses the commit otherwise); zero amounts are
    left out, so a transaction may have no entries at all and still mark ``ref`` as done.
    """
    _require_transaction(conn)
    if sum(entries.values()) != 0:
        raise ValueError(f"a ledger transaction must balance: {dict(entries)}")
    transaction_id = await conn.fetchval(
        "INSERT INTO ledger_transactions (workspace_id, ref, kind, job_id, details) "
        "VALUES ($1, $2, $3, $4, $5::jsonb) "
        "ON CONFLICT (workspace_id, ref) DO NOTHING RETURNING id",
        workspace_id,
        ref,
        kind,
        job_id,
        json.dumps(dict(details or {})),
    )
    if transaction_id is None:
        return False
    moves = [(account, amount) for account, amount in entries.items() if amount != 0]
    if moves:
        await conn.execute(
            "INSERT INTO ledger_entries (workspace_id, transaction_id, account, amount) "
            "SELECT $1, $2, account, amount FROM unnest($3::text[], $4::bigint[]) "
            "AS e(account, amount)",
            workspace_id,
            transaction_id,
            [account for account, _ in moves],
            [amount for _, amount in moves],
        )
    return True


async def posted(conn: db.Connection | db.Pool, workspace_id: UUID, refs: list[str]) -> set[str]:
    """Which of ``refs`` have been posted in this workspace."""
    rows = await conn.fetch(
        "SELECT ref FROM ledger_transactions WHERE workspace_id = $1 AND ref = any($2::text[])",
        workspace_id,
        refs,
    )
    return {row["ref"] for row in rows}


_TRANSACTION_COLUMNS: Final = """
    t.id, t.kind, t.ref, t.job_id, t.details, t.created_at,
    coalesce((SELECT jsonb_object_agg(e.account, e.amount) FROM ledger_entries e
              WHERE e.transaction_id = t.id), '{}'::jsonb) AS entries
"""


def _transaction(row: db.Record) -> LedgerTransaction:
    details = row["details"]
    entries = row["entries"]
    return LedgerTransaction(
        id=row["id"],
        kind=row["kind"],
        ref=row["ref"],
        job_id=row["job_id"],
        details=json.loads(details) if isinstance(details, str) else dict(details),
        created_at=row["created_at"],
        entries={
            account: int(amount)
            for account, amount in (
                json.loads(entries) if isinstance(entries, str) else entries
            ).items()
        },
    )


async def find(
    conn: db.Connection | db.Pool, workspace_id: UUID, ref: str
) -> LedgerTransaction | None:
    """The transaction posted under ``ref`` in this workspace, if any."""
    row = await conn.fetchrow(
        f"SELECT {_TRANSACTION_COLUMNS} FROM ledger_transactions t "
        "WHERE t.workspace_id = $1 AND t.ref = $2",
        workspace_id,
        ref,
    )
    return None if row is None else _transaction(row)


async def balances(conn: db.Connection | db.Pool, workspace_id: UUID) -> Balances:
    """The cached balances, unlocked (all zero before the workspace's first posting)."""
    row = await conn.fetchrow(
        "SELECT grants, available, reserved, spent FROM ledger_balances WHERE workspace_id = $1",
        workspace_id,
    )
    return _balances(row)


async def derived_balances(conn: db.Connection | db.Pool, workspace_id: UUID) -> Balances:
    """The balances summed from the entries themselves: what the cached row must equal."""
    rows = await conn.fetch(
        "SELECT account, sum(amount) AS total FROM ledger_entries "
        "WHERE workspace_id = $1 GROUP BY account",
        workspace_id,
    )
    totals = {row["account"]: int(row["total"]) for row in rows}
    return Balances(**{account: totals.get(account, 0) for account in ACCOUNTS})


def encode_cursor(transaction_id: int) -> str:
    return base64.urlsafe_b64encode(f"l:{transaction_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The transaction id a page continues below; ValidationFailed for a cursor not ours."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text.startswith("l:") and text[2:].isdigit() and len(text) <= 24:
            return int(text[2:])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        pass
    raise ValidationFailed("cursor is not one this server handed out")


async def page(
    conn: db.Connection | db.Pool, workspace_id: UUID, *, limit: int, before: int | None
) -> LedgerPage:
    """A page of the workspace's transactions, newest first, below id ``before`` if given."""
    rows = await conn.fetch(
        f"SELECT {_TRANSACTION_COLUMNS} FROM ledger_transactions t "
        "WHERE t.workspace_id = $1 AND ($2::bigint IS NULL OR t.id < $2) "
        "ORDER BY t.id DESC LIMIT $3",
        workspace_id,
        before,
        limit + 1,
    )
    found = [_transaction(row) for row in rows[:limit]]
    more = len(rows) > limit
    return LedgerPage(found, encode_cursor(found[-1].id) if more and found else None)


async def hold(conn: db.Connection, workspace_id: UUID, job_id: UUID, credits: int) -> None:
    """Note that ``job_id`` holds ``credits`` (with its reserve transaction)."""
    _require_transaction(conn)
    await conn.execute(
        "INSERT INTO ledger_holds (workspace_id, job_id, credits) VALUES ($1, $2, $3) "
        "ON CONFLICT (workspace_id, job_id) DO NOTHING",
        workspace_id,
        job_id,
        credits,
    )


async def release(conn: db.Connection, workspace_id: UUID, job_id: UUID) -> int:
    """Forget ``job_id``'s hold (with its settle or void transaction); the credits it held,
    0 when it held none."""
    _require_transaction(conn)
    credits = await conn.fetchval(
        "DELETE FROM ledger_holds WHERE workspace_id = $1 AND job_id = $2 RETURNING credits",
        workspace_id,
        job_id,
    )
    return 0 if credits is None else int(credits)


async def open_reservations(
    conn: db.Connection | db.Pool, workspace_id: UUID, *, limit: int
) -> list[Reservation]:
    """Jobs holding credits (reserved, neither settled nor voided yet), oldest first."""
    rows = await conn.fetch(
        "SELECT job_id, credits, created_at FROM ledger_holds WHERE workspace_id = $1 "
        "ORDER BY created_at, job_id LIMIT $2",
        workspace_id,
        limit,
    )
    return [Reservation(row["job_id"], int(row["credits"]), row["created_at"]) for row in rows]
