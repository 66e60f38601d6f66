"""Streaming usage in credits: the meter ``store/usage.py`` calls for every usage record.

Every place that records usage today (TTS, STT and conversations over HTTP, sockets, Wyoming,
telephony) goes through ``UsageRepository``; with this meter attached each record also posts
its price to the ledger, in the record's own transaction and once per record (ref
``usage:<record id>``). A TTS request's characters are charged before synthesis
(``identity/quotas.charge``): when credits are enforced and cannot cover them, that is the
402 ``insufficient_credits``, and a request that then fails gets its credits back with its
record. Streams, whose size nobody knows when they open, are admitted while the workspace
has credits available (the socket's own error and close 4402 otherwise) and post what they
used when it is recorded.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from ..store import db
from ..store.usage import UsageKind
from . import ledger
from .ledger import CreditPolicy

__all__ = ["CreditMeter"]


class CreditMeter:
    """``store.usage.UsageMeter`` over the credits ledger."""

    def __init__(self, pool: db.Pool, policy: CreditPolicy) -> None:
        self._pool = pool
        self.policy = policy

    async def recorded(
        self,
        conn: db.Connection,
        workspace_id: UUID,
        kind: UsageKind,
        quantity: Decimal,
        record_id: int,
        *,
        up_front: bool,
    ) -> None:
        await ledger.post_usage(
            conn,
            workspace_id,
            kind,
            quantity,
            ref=str(record_id),
            policy=self.policy,
            up_front=up_front,
        )

    async def refunded(self, conn: db.Connection, workspace_id: UUID, record_id: int) -> None:
        await ledger.refund_usage(conn, workspace_id, str(record_id))

    async def admit(self, workspace_id: UUID, kind: UsageKind) -> None:
        await ledger.require_credits(self._pool, workspace_id, policy=self.policy)
