"""A job's effects beyond its own row: credits and webhook events, in the caller's transaction.

The lifecycle calls these inside the transaction that changes the job's state, so the state
and its effects commit together or not at all; each is idempotent by the job's id (the
ledger's ``job:<id>:…`` references, the event id ``evt_<id>_<status>``), so an attempt that
runs twice posts once and announces once.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ..billing import ledger
from ..billing.ledger import CreditPolicy
from ..store import db
from .webhooks import enqueue_event

__all__ = ["event_id", "job_finished", "reserve_credits", "settle_credits", "void_credits"]


async def reserve_credits(
    conn: db.Connection, workspace_id: UUID, job_id: UUID, credits: int, policy: CreditPolicy
) -> None:
    """Raises InsufficientCredits (402): the caller's transaction then stores nothing."""
    await ledger.reserve(conn, workspace_id, job_id, credits, policy=policy)


async def settle_credits(
    conn: db.Connection,
    workspace_id: UUID,
    job_id: UUID,
    credits_used: int,
    policy: CreditPolicy,
) -> None:
    await ledger.settle(conn, workspace_id, job_id, credits_used, policy=policy)


async def void_credits(conn: db.Connection, workspace_id: UUID, job_id: UUID) -> None:
    await ledger.void(conn, workspace_id, job_id)


def event_id(job_id: UUID, status: str) -> str:
    return f"evt_{job_id}_{status}"


async def job_finished(
    conn: db.Connection, workspace_id: UUID, job_id: UUID, status: str, data: dict[str, Any]
) -> None:
    """The ``job.<status>`` event, one id per job and outcome."""
    await enqueue_event(
        conn, workspace_id, f"job.{status}", data, event_id=event_id(job_id, status)
    )
