"""Billing's SQL (migration 0021): each workspace's account with Stripe, the Stripe events
applied, overage reports and reconciliation findings. Every lookup takes the workspace id.

What the rows mean and when they change is ``billing/``'s business; this module only writes
and reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from . import db

__all__ = [
    "NO_ACCOUNT",
    "BillingAccount",
    "Reconciliation",
    "SeatCharge",
    "UsageReport",
    "account",
    "bills_overage",
    "claim_event",
    "claim_seat_charge",
    "is_past_due",
    "latest_reconciliations",
    "lock_account",
    "mark_reported",
    "mark_seat_charge",
    "member_count",
    "period_spent",
    "record_reconciliation",
    "reported_credits",
    "save_account",
    "start_usage_report",
    "unreported",
    "workspace_of_customer",
    "workspaces_with_subscriptions",
]


@dataclass(frozen=True, slots=True)
class BillingAccount:
    workspace_id: UUID
    stripe_customer_id: str | None = None
    stripe_subscription_id: str | None = None
    plan: str = "free"
    status: str = "none"
    cancel_at_period_end: bool = False
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    trial_end: datetime | None = None
    purchase_order: str | None = None


NO_ACCOUNT: Final = BillingAccount(UUID(int=0))

_COLUMNS: Final = (
    "workspace_id, stripe_customer_id, stripe_subscription_id, plan, status, "
    "cancel_at_period_end, current_period_start, current_period_end, trial_end, purchase_order"
)


def _account(row: db.Record) -> BillingAccount:
    return BillingAccount(**{name: row[name] for name in _COLUMNS.split(", ")})


async def account(conn: db.Connection | db.Pool, workspace_id: UUID) -> BillingAccount:
    """The workspace's account; a fresh one (free plan, no customer) when it has none yet."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM billing_accounts WHERE workspace_id = $1", workspace_id
    )
    return BillingAccount(workspace_id) if row is None else _account(row)


async def save_account(conn: db.Connection | db.Pool, found: BillingAccount) -> None:
    await conn.execute(
        f"INSERT INTO billing_accounts ({_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) "
        "ON CONFLICT (workspace_id) DO UPDATE SET "
        "stripe_customer_id = EXCLUDED.stripe_customer_id, "
        "stripe_subscription_id = EXCLUDED.stripe_subscription_id, plan = EXCLUDED.plan, "
        "status = EXCLUDED.status, cancel_at_period_end = EXCLUDED.cancel_at_period_end, "
        "current_period_start = EXCLUDED.current_period_start, "
        "current_period_end = EXCLUDED.current_period_end, trial_end = EXCLUDED.trial_end, "
        "purchase_order = EXCLUDED.purchase_order, updated_at = now()",
        found.workspace_id,
        found.stripe_customer_id,
        found.stripe_subscription_id,
        found.plan,
        found.status,
        found.cancel_at_period_end,
        found.current_period_start,
        found.current_period_end,
        found.trial_end,
        found.purchase_order,
    )


async def lock_account(conn: db.Connection, workspace_id: UUID) -> BillingAccount:
    """The account, row-locked until the caller's transaction ends (created if missing), so
    two events or two admin calls for one workspace apply one after the other."""
    await conn.execute(
        "INSERT INTO billing_accounts (workspace_id) VALUES ($1) ON CONFLICT DO NOTHING",
        workspace_id,
    )
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM billing_accounts WHERE workspace_id = $1 FOR UPDATE",
        workspace_id,
    )
    return _account(row)


async def is_past_due(conn: db.Connection | db.Pool, workspace_id: UUID) -> bool:
    status = await conn.fetchval(
        "SELECT status FROM billing_accounts WHERE workspace_id = $1", workspace_id
    )
    return status in ("past_due", "unpaid")


async def bills_overage(conn: db.Connection | db.Pool, workspace_id: UUID) -> bool:
    """Whether the workspace has a paid subscription in good standing, whose use past its
    credits is billed rather than refused."""
    found = await conn.fetchval(
        "SELECT true FROM billing_accounts WHERE workspace_id = $1 AND plan <> 'free' "
        "AND stripe_subscription_id IS NOT NULL AND status IN ('active', 'trialing')",
        workspace_id,
    )
    return bool(found)


async def workspace_of_customer(conn: db.Connection | db.Pool, customer_id: str) -> UUID | None:
    found: UUID | None = await conn.fetchval(
        "SELECT workspace_id FROM billing_accounts WHERE stripe_customer_id = $1", customer_id
    )
    return found


async def workspaces_with_subscriptions(conn: db.Connection | db.Pool) -> list[UUID]:
    rows = await conn.fetch(
        "SELECT workspace_id FROM billing_accounts WHERE stripe_subscription_id IS NOT NULL"
    )
    return [row["workspace_id"] for row in rows]


async def claim_event(
    conn: db.Connection, workspace_id: UUID, event_id: str, event_type: str
) -> bool:
    """Mark a Stripe event as applied, in the caller's transaction (which applies it); False
    when it was applied before."""
    claimed = await conn.fetchval(
        "INSERT INTO billing_events (event_id, workspace_id, type) VALUES ($1, $2, $3) "
        "ON CONFLICT (event_id) DO NOTHING RETURNING true",
        event_id,
        workspace_id,
        event_type,
    )
    return bool(claimed)


async def period_spent(
    conn: db.Connection | db.Pool, workspace_id: UUID, since: datetime | None
) -> tuple[int, int]:
    """Credits spent since ``since`` (all time when None), and the last ledger transaction
    counted (0 when none)."""
    row = await conn.fetchrow(
        "SELECT coalesce(sum(e.amount), 0) AS spent, coalesce(max(e.transaction_id), 0) AS last "
        "FROM ledger_entries e WHERE e.workspace_id = $1 AND e.account = 'spent' "
        "AND ($2::timestamptz IS NULL OR e.created_at >= $2)",
        workspace_id,
        since,
    )
    return int(row["spent"]), int(row["last"])


@dataclass(frozen=True, slots=True)
class UsageReport:
    id: int
    credits: int
    amount_cents: int
    idempotency_key: str
    stripe_item_id: str | None
    reported_at: datetime | None


def _report(row: db.Record) -> UsageReport:
    return UsageReport(
        row["id"],
        int(row["credits"]),
        int(row["amount_cents"]),
        row["idempotency_key"],
        row["stripe_item_id"],
        row["reported_at"],
    )


async def reported_credits(
    conn: db.Connection | db.Pool, workspace_id: UUID, period_start: datetime
) -> int:
    """Overage credits already claimed by reports of the period (sent or not yet)."""
    total = await conn.fetchval(
        "SELECT coalesce(sum(credits), 0) FROM billing_usage_reports "
        "WHERE workspace_id = $1 AND period_start = $2",
        workspace_id,
        period_start,
    )
    return int(total)


async def start_usage_report(
    conn: db.Connection,
    workspace_id: UUID,
    *,
    period_start: datetime,
    through_transaction_id: int,
    credits: int,
    amount_cents: int,
) -> UsageReport:
    """The report of the period's overage up to ``through_transaction_id``: written now,
    before Stripe is called; the existing one when that position was claimed before."""
    key = f"overage:{workspace_id}:{period_start.timestamp():.0f}:{through_transaction_id}"
    row = await conn.fetchrow(
        "INSERT INTO billing_usage_reports (workspace_id, period_start, through_transaction_id, "
        "credits, amount_cents, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT (workspace_id, idempotency_key) DO UPDATE SET credits = "
        "billing_usage_reports.credits RETURNING *",
        workspace_id,
        period_start,
        through_transaction_id,
        credits,
        amount_cents,
        key,
    )
    return _report(row)


async def unreported(conn: db.Connection | db.Pool, workspace_id: UUID) -> list[UsageReport]:
    """Reports written but not confirmed by Stripe (the process stopped between the two)."""
    rows = await conn.fetch(
        "SELECT * FROM billing_usage_reports WHERE workspace_id = $1 AND reported_at IS NULL "
        "ORDER BY id",
        workspace_id,
    )
    return [_report(row) for row in rows]


async def mark_reported(
    conn: db.Connection | db.Pool, workspace_id: UUID, report_id: int, stripe_item_id: str
) -> None:
    await conn.execute(
        "UPDATE billing_usage_reports SET reported_at = now(), stripe_item_id = $3 "
        "WHERE workspace_id = $1 AND id = $2",
        workspace_id,
        report_id,
        stripe_item_id,
    )


@dataclass(frozen=True, slots=True)
class Reconciliation:
    id: int
    job_id: UUID | None
    drift: list[dict[str, Any]]
    ran_at: datetime


async def record_reconciliation(
    conn: db.Connection | db.Pool,
    workspace_id: UUID,
    drift: list[dict[str, Any]],
    job_id: UUID | None,
) -> Reconciliation:
    row = await conn.fetchrow(
        "INSERT INTO billing_reconciliations (workspace_id, job_id, drift) "
        "VALUES ($1, $2, $3::jsonb) RETURNING id, job_id, drift, ran_at",
        workspace_id,
        job_id,
        json.dumps(drift),
    )
    return _reconciliation(row)


def _reconciliation(row: db.Record) -> Reconciliation:
    drift = row["drift"]
    return Reconciliation(
        row["id"],
        row["job_id"],
        json.loads(drift) if isinstance(drift, str) else drift,
        row["ran_at"],
    )


async def latest_reconciliations(
    conn: db.Connection | db.Pool, workspace_id: UUID, limit: int
) -> list[Reconciliation]:
    rows = await conn.fetch(
        "SELECT id, job_id, drift, ran_at FROM billing_reconciliations WHERE workspace_id = $1 "
        "ORDER BY id DESC LIMIT $2",
        workspace_id,
        limit,
    )
    return [_reconciliation(row) for row in rows]


@dataclass(frozen=True, slots=True)
class SeatCharge:
    period_start: datetime
    seats: int
    amount_cents: int
    invoice_item_id: str | None  # None: claimed, Stripe's answer not recorded yet

    def idempotency_key(self, workspace_id: UUID) -> str:
        return f"seats:{workspace_id}:{int(self.period_start.timestamp())}"


async def member_count(conn: db.Connection | db.Pool, workspace_id: UUID) -> int:
    """The workspace's seats: its members (API keys are not seats)."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM memberships WHERE workspace_id = $1", workspace_id
    )
    return count


async def claim_seat_charge(
    conn: db.Connection, workspace_id: UUID, period_start: datetime, seats: int, cents: int
) -> SeatCharge:
    """The period's seat charge: the one claimed before (whatever its seats), or this one."""
    await conn.execute(
        "INSERT INTO billing_seat_charges (workspace_id, period_start, seats, amount_cents) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        workspace_id,
        period_start,
        seats,
        cents,
    )
    row = await conn.fetchrow(
        "SELECT period_start, seats, amount_cents, invoice_item_id FROM billing_seat_charges "
        "WHERE workspace_id = $1 AND period_start = $2",
        workspace_id,
        period_start,
    )
    return SeatCharge(
        row["period_start"], row["seats"], row["amount_cents"], row["invoice_item_id"]
    )


async def mark_seat_charge(
    conn: db.Connection | db.Pool, workspace_id: UUID, period_start: datetime, item_id: str
) -> None:
    await conn.execute(
        "UPDATE billing_seat_charges SET invoice_item_id = $3 "
        "WHERE workspace_id = $1 AND period_start = $2",
        workspace_id,
        period_start,
        item_id,
    )
