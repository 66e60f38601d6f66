"""``GET /v1/credits``: the caller's workspace's credits: balances, open reservations and the
ledger, newest first, a page at a time.

A thin shell over ``billing/ledger.py``. Any member reads it (``identity/policy.py``); only
the caller's own workspace is ever read. ``limit`` (1–200, default 50) and ``cursor`` (the
previous page's ``next_cursor``) page through the ledger's transactions; each shows its
balanced entries, what it added to each account. Unknown parameters are refused (422).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..billing.ledger import CreditPolicy, statement
from ..identity.request_principal import principal_of
from ..protocols.json_messages import validate_model
from ..store.ledger import MAX_PAGE_SIZE, Account, LedgerTransaction, TransactionKind
from .resources import POOL, SETTINGS

__all__ = [
    "CREDITS_PREFIX",
    "CreditEntryModel",
    "CreditTransactionModel",
    "CreditsQuery",
    "CreditsResponse",
    "ReservationModel",
    "credits_app",
]

CREDITS_PREFIX: Final = "/v1/credits"


class CreditsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None


class CreditEntryModel(BaseModel):
    account: Account
    amount: int  # what it added to the account (negative: taken from it)


class CreditTransactionModel(BaseModel):
    id: int
    type: TransactionKind
    # Unique in the workspace: what makes it happen once ("job:<id>:reserve", "usage:<n>", …)
    ref: str
    job_id: UUID | None
    details: dict[str, Any]
    created_at: datetime
    entries: list[CreditEntryModel]  # they sum to zero

    @classmethod
    def of(cls, transaction: LedgerTransaction) -> CreditTransactionModel:
        return cls(
            id=transaction.id,
            type=transaction.kind,
            ref=transaction.ref,
            job_id=transaction.job_id,
            details=transaction.details,
            created_at=transaction.created_at,
            entries=[
                CreditEntryModel(account=account, amount=amount)
                for account, amount in sorted(transaction.entries.items())
            ],
        )


class ReservationModel(BaseModel):
    job_id: UUID
    credits: int
    created_at: datetime


class CreditsResponse(BaseModel):
    workspace_id: UUID
    # Whether work the available credits cannot cover is refused (402 insufficient_credits)
    enforced: bool
    balance: int  # available to new work
    reserved: int  # held for submitted jobs
    spent: int
    granted: int  # ever granted, free grants included
    reservations: list[ReservationModel]  # open ones, oldest first (at most 100)
    transactions: list[CreditTransactionModel]  # newest first
    next_cursor: str | None  # None on the last page


async def get_credits(request: web.Request) -> web.Response:
    principal = principal_of(request)
    query = validate_model(CreditsQuery, dict(request.query), "the query")
    policy = CreditPolicy.from_settings(request.config_dict[SETTINGS])
    found = await statement(
        request.config_dict[POOL],
        principal.workspace_id,
        policy=policy,
        limit=query.limit,
        cursor=query.cursor,
    )
    balances = found.balances
    body = CreditsResponse(
        workspace_id=principal.workspace_id,
        enforced=policy.enforced,
        balance=balances.available,
        reserved=balances.reserved,
        spent=balances.spent,
        granted=balances.granted,
        reservations=[
            ReservationModel(job_id=r.job_id, credits=r.credits, created_at=r.created_at)
            for r in found.reservations
        ],
        transactions=[CreditTransactionModel.of(t) for t in found.page.transactions],
        next_cursor=found.page.next_cursor,
    )
    return web.json_response(text=body.model_dump_json())


def credits_app() -> web.Application:
    """The sub-app to mount at ``CREDITS_PREFIX`` ("" is the prefix itself)."""
    app = web.Application()
    app.add_routes([web.get("", get_credits, allow_head=False)])
    return app
