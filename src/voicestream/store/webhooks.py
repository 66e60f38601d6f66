"""Webhook endpoints, their deliveries and the attempt log (migration 0016).

Every lookup takes the workspace: another workspace's endpoint or delivery is as missing as one
that never existed. Secrets arrive sealed (``jobs/webhooks.py`` seals them). Enqueueing takes
the caller's connection, so an event is stored in the same transaction as what it reports,
and is idempotent by (endpoint, event id). Senders claim due deliveries with ``FOR UPDATE SKIP
LOCKED`` and a lease instead of holding a transaction open across the HTTP call.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal
from uuid import UUID

from voicestream.errors import ValidationFailed
from voicestream.store import db

__all__ = [
    "CHANNEL",
    "MAX_PAGE_SIZE",
    "Attempt",
    "AttemptOutcome",
    "Delivery",
    "DeliveryStatus",
    "DueDelivery",
    "Endpoint",
    "WebhookRepository",
    "add_delivery",
    "add_event_deliveries",
    "wake_senders",
]

DeliveryStatus = Literal["pending", "succeeded", "failed"]
# NOTIFY channel: a committed delivery wakes the senders at once (they poll as well).
CHANNEL: Final = "voicestream_webhooks"
MAX_PAGE_SIZE: Final = 100
_ATTEMPTS_SHOWN: Final = 50
_ENDPOINT_COLUMNS: Final = (
    "id, workspace_id, url, events, secret_sealed, description, enabled, disabled_reason, "
    "created_at, updated_at"
)
_DELIVERY_COLUMNS: Final = (
    "id, workspace_id, endpoint_id, event_id, event_type, payload, status, attempts, "
    "next_attempt_at, last_status_code, last_error, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: UUID
    workspace_id: UUID
    url: str
    events: tuple[str, ...]
    secret_sealed: str
    description: str
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    id: UUID
    workspace_id: UUID
    endpoint_id: UUID
    event_id: str
    event_type: str
    payload: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Attempt:
    id: int
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    response_body: str | None


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A claimed delivery with what sending it needs."""

    id: UUID
    workspace_id: UUID
    endpoint_id: UUID
    claim_id: UUID
    event_id: str
    payload: str
    attempts: int  # including this one
    url: str
    secret_sealed: str


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one attempt came to, and what follows: ``status`` and ``next_attempt_at`` for the
    delivery, and ``disable_reason`` to turn the endpoint off (410 Gone)."""

    duration_ms: int
    status_code: int | None
    error: str | None
    response_body: str | None
    status: DeliveryStatus
    next_attempt_at: datetime | None = None
    disable_reason: str | None = None


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        row["id"],
        row["workspace_id"],
        row["url"],
        tuple(row["events"]),
        row["secret_sealed"],
        row["description"],
        row["enabled"],
        row["disabled_reason"],
        row["created_at"],
        row["updated_at"],
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        row["id"],
        row["workspace_id"],
        row["endpoint_id"],
        row["event_id"],
        row["event_type"],
        row["payload"],
        row["status"],
        row["attempts"],
        row["next_attempt_at"],
        row["last_status_code"],
        row["last_error"],
        row["created_at"],
        row["updated_at"],
    )


# --- in the caller's transaction ------------------------------------------------------------


async def add_event_deliveries(
    conn: db.Connection, workspace_id: UUID, event_type: str, event_id: str, payload: str
) -> int:
    """One delivery of the event per endpoint of the workspace subscribed to ``event_type``
    (or to ``*``), enabled or not (a disabled one keeps it until it is enabled again); an
    endpoint that has this event already keeps the one it has. Returns how many were added."""
    status = await conn.execute(
        """
        INSERT INTO webhook_deliveries
            (workspace_id, endpoint_id, event_id, event_type, payload)
        SELECT $1, e.id, $2, $3, $4 FROM webhook_endpoints e
        WHERE e.workspace_id = $1 AND ($3 = ANY (e.events) OR '*' = ANY (e.events))
        ON CONFLICT (endpoint_id, event_id) DO NOTHING
        """,
        workspace_id,
        event_id,
        event_type,
        payload,
    )
    added = int(status.rsplit(" ", 1)[-1])
    if added:
        await wake_senders(conn)
    return added


async def add_delivery(
    conn: db.Connection | db.Pool,
    workspace_id: UUID,
    endpoint_id: UUID,
    event_type: str,
    event_id: str,
    payload: str,
) -> Delivery | None:
    """One delivery to one endpoint, whatever it subscribes to (``webhook.test``); None when
    the endpoint is not the workspace's. The delivery it has already for ``event_id``, if any."""
    row = await conn.fetchrow(
        f"""
        WITH added AS (
            INSERT INTO webhook_deliveries
                (workspace_id, endpoint_id, event_id, event_type, payload)
            SELECT $1, e.id, $3, $4, $5 FROM webhook_endpoints e
            WHERE e.workspace_id = $1 AND e.id = $2
            ON CONFLICT (endpoint_id, event_id) DO NOTHING
            RETURNING {_DELIVERY_COLUMNS}
        )
        SELECT {_DELIVERY_COLUMNS} FROM added
        UNION ALL
        SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries
        WHERE workspace_id = $1 AND endpoint_id = $2 AND event_id = $3
        LIMIT 1
        """,
        workspace_id,
        endpoint_id,
        event_id,
        event_type,
        payload,
    )
    if row is None:
        return None
    await wake_senders(conn)
    return _delivery(row)


async def wake_senders(conn: db.Connection | db.Pool) -> None:
    # Inside a transaction PostgreSQL sends it on commit, and never on rollback.
    await conn.execute("SELECT pg_notify($1, '')", CHANNEL)


# --- cursors --------------------------------------------------------------------------------


def _cursor(delivery: Delivery) -> str:
    micros = int(delivery.created_at.timestamp() * 1_000_000)
    raw = f"d1:{micros}:{delivery.id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _cursor_position(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        tag, micros, delivery_id = raw.split(":")
        if tag != "d1" or not micros.isdigit() or len(micros) > 18:
            raise ValueError(tag)
        return datetime.fromtimestamp(int(micros) / 1_000_000, UTC), UUID(delivery_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        message = "not a cursor this server gave out"
        raise ValidationFailed(
            f"cursor: {message}", details={"fields": [{"field": "cursor", "message": message}]}
        ) from None


class WebhookRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    # --- endpoints ----------------------------------------------------------------------

    async def create(
        self,
        workspace_id: UUID,
        endpoint_id: UUID,
        *,
        url: str,
        events: Sequence[str],
        secret_sealed: str,
        description: str = "",
        max_endpoints: int = 50,
    ) -> Endpoint | None:
        """Add an endpoint; None when the workspace has ``max_endpoints`` already (a soft cap:
        two creations at once may both see one place left)."""
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO webhook_endpoints
                (id, workspace_id, url, events, secret_sealed, description)
            SELECT $1, $2, $3, $4, $5, $6
            WHERE (SELECT count(*) FROM webhook_endpoints WHERE workspace_id = $2) < $7
            RETURNING {_ENDPOINT_COLUMNS}
            """,
            endpoint_id,
            workspace_id,
            url,
            list(events),
            secret_sealed,
            description,
            max_endpoints,
        )
        return None if row is None else _endpoint(row)

    async def list_endpoints(self, workspace_id: UUID) -> list[Endpoint]:
        rows = await self._pool.fetch(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE workspace_id = $1 "
            "ORDER BY created_at, id",
            workspace_id,
        )
        return [_endpoint(row) for row in rows]

    async def get(self, workspace_id: UUID, endpoint_id: UUID) -> Endpoint | None:
        row = await self._pool.fetchrow(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints "
            "WHERE workspace_id = $1 AND id = $2",
            workspace_id,
            endpoint_id,
        )
        return None if row is None else _endpoint(row)

    async def update(
        self,
        workspace_id: UUID,
        endpoint_id: UUID,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> Endpoint | None:
        """Change what is given (None: unchanged). Enabling clears the disabled reason, and
        disabling by hand records one."""
        row = await self._pool.fetchrow(
            f"""
            UPDATE webhook_endpoints SET
                url = coalesce($3, url),
                events = coalesce($4, events),
                description = coalesce($5, description),
                enabled = coalesce($6, enabled),
                disabled_reason = CASE
                    WHEN $6::boolean IS NULL THEN disabled_reason
                    WHEN $6 THEN NULL
                    ELSE coalesce(disabled_reason, 'disabled by a member')
                END,
                updated_at = now()
            WHERE workspace_id = $1 AND id = $2
            RETURNING {_ENDPOINT_COLUMNS}
            """,
            workspace_id,
            endpoint_id,
            url,
            None if events is None else list(events),
            description,
            enabled,
        )
        if row is not None and enabled:
            await wake_senders(self._pool)  # its waiting deliveries are due again
        return None if row is None else _endpoint(row)

    async def delete(self, workspace_id: UUID, endpoint_id: UUID) -> bool:
        deleted = await self._pool.fetchval(
            "DELETE FROM webhook_endpoints WHERE workspace_id = $1 AND id = $2 RETURNING id",
            workspace_id,
            endpoint_id,
        )
        return deleted is not None

    # --- deliveries and their log -------------------------------------------------------

    async def add_delivery(
        self,
        workspace_id: UUID,
        endpoint_id: UUID,
        event_type: str,
        event_id: str,
        payload: str,
    ) -> Delivery | None:
        """``add_delivery`` on a connection of the pool."""
        return await add_delivery(
            self._pool, workspace_id, endpoint_id, event_type, event_id, payload
        )

    async def deliveries(
        self,
        workspace_id: UUID,
        endpoint_id: UUID,
        *,
        limit: int,
        cursor: str | None = None,
        status: DeliveryStatus | None = None,
    ) -> tuple[list[Delivery], str | None]:
        """One page of an endpoint's deliveries, newest first, and the next page's cursor
        (None on the last page)."""
        args: list[Any] = [workspace_id, endpoint_id, status, min(max(limit, 1), MAX_PAGE_SIZE)]
        after = ""
        if cursor is not None:
            created_at, delivery_id = _cursor_position(cursor)
            args += [created_at, delivery_id]
            # Keyset paging: stable however many deliveries arrive meanwhile.
            after = "AND (created_at, id) < ($5, $6)"
        rows = await self._pool.fetch(
            f"""
            SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries
            WHERE workspace_id = $1 AND endpoint_id = $2
                AND ($3::text IS NULL OR status = $3) {after}
            ORDER BY created_at DESC, id DESC
            LIMIT $4 + 1
            """,
            *args,
        )
        page = [_delivery(row) for row in rows[: args[3]]]
        more = len(rows) > args[3]
        return page, _cursor(page[-1]) if more and page else None

    async def delivery(
        self, workspace_id: UUID, endpoint_id: UUID, delivery_id: UUID
    ) -> Delivery | None:
        row = await self._pool.fetchrow(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries "
            "WHERE workspace_id = $1 AND endpoint_id = $2 AND id = $3",
            workspace_id,
            endpoint_id,
            delivery_id,
        )
        return None if row is None else _delivery(row)

    async def attempts(self, workspace_id: UUID, delivery_id: UUID) -> list[Attempt]:
        """The delivery's latest attempts, oldest first."""
        rows = await self._pool.fetch(
            """
            SELECT * FROM (
                SELECT id, attempted_at, duration_ms, status_code, error, response_body
                FROM webhook_attempts WHERE workspace_id = $1 AND delivery_id = $2
                ORDER BY id DESC LIMIT $3
            ) latest ORDER BY id
            """,
            workspace_id,
            delivery_id,
            _ATTEMPTS_SHOWN,
        )
        return [
            Attempt(
                r["id"],
                r["attempted_at"],
                r["duration_ms"],
                r["status_code"],
                r["error"],
                r["response_body"],
            )
            for r in rows
        ]

    async def redeliver(
        self, workspace_id: UUID, endpoint_id: UUID, delivery_id: UUID
    ) -> Delivery | None:
        """Send the delivery again now, with a fresh round of retries; an attempt in flight
        no longer counts for it."""
        row = await self._pool.fetchrow(
            f"""
            UPDATE webhook_deliveries SET status = 'pending', attempts = 0,
                next_attempt_at = now(), claim_id = NULL, updated_at = now()
            WHERE workspace_id = $1 AND endpoint_id = $2 AND id = $3
            RETURNING {_DELIVERY_COLUMNS}
            """,
            workspace_id,
            endpoint_id,
            delivery_id,
        )
        if row is None:
            return None
        await wake_senders(self._pool)
        return _delivery(row)

    # --- the senders' side --------------------------------------------------------------

    async def claim_due(self, limit: int, lease_s: float) -> list[DueDelivery]:
        """Claim up to ``limit`` due deliveries of enabled endpoints: each counts an attempt
        and is not due again until the lease lapses (a sender that dies mid-send leaves it
        to the next one); concurrent senders skip each other's rows."""
        rows = await self._pool.fetch(
            """
            WITH due AS (
                SELECT d.id FROM webhook_deliveries d
                JOIN webhook_endpoints e ON e.id = d.endpoint_id
                WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND e.enabled
                ORDER BY d.next_attempt_at
                LIMIT $1
                FOR UPDATE OF d SKIP LOCKED
            )
            UPDATE webhook_deliveries d SET
                attempts = d.attempts + 1,
                claim_id = gen_random_uuid(),
                next_attempt_at = now() + make_interval(secs => $2),
                updated_at = now()
            FROM due, webhook_endpoints e
            WHERE d.id = due.id AND e.id = d.endpoint_id
            RETURNING d.id, d.workspace_id, d.endpoint_id, d.claim_id, d.event_id, d.payload,
                d.attempts, e.url, e.secret_sealed
            """,
            limit,
            float(lease_s),
        )
        return [
            DueDelivery(
                r["id"],
                r["workspace_id"],
                r["endpoint_id"],
                r["claim_id"],
                r["event_id"],
                r["payload"],
                r["attempts"],
                r["url"],
                r["secret_sealed"],
            )
            for r in rows
        ]

    async def seconds_to_next_due(self) -> float | None:
        """Seconds until the next pending delivery of an enabled endpoint is due (0 when one
        is due now); None when none is waiting."""
        value = await self._pool.fetchval(
            """
            SELECT extract(epoch FROM min(d.next_attempt_at) - now())
            FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
            WHERE d.status = 'pending' AND e.enabled
            """
        )
        return None if value is None else max(0.0, float(value))

    async def record(self, due: DueDelivery, outcome: AttemptOutcome) -> bool:
        """Log the attempt and, if the claim still holds, apply its outcome to the delivery
        (and to the endpoint, for 410); False when a redelivery or another sender has taken
        the delivery over meanwhile."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                INSERT INTO webhook_attempts (workspace_id, delivery_id, duration_ms,
                    status_code, error, response_body)
                VALUES ($1, $2, $3, $4, $5, $6)
                """,
                due.workspace_id,
                due.id,
                outcome.duration_ms,
                outcome.status_code,
                outcome.error,
                outcome.response_body,
            )
            applied = await conn.fetchval(
                """
                UPDATE webhook_deliveries SET status = $3,
                    next_attempt_at = coalesce($4, next_attempt_at),
                    last_status_code = $5, last_error = $6, claim_id = NULL,
                    updated_at = now()
                WHERE id = $1 AND claim_id = $2
                RETURNING id
                """,
                due.id,
                due.claim_id,
                outcome.status,
                outcome.next_attempt_at,
                outcome.status_code,
                outcome.error,
            )
            if applied is not None and outcome.disable_reason is not None:
                await conn.execute(
                    "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, "
                    "updated_at = now() WHERE id = $1",
                    due.endpoint_id,
                    outcome.disable_reason,
                )
            return applied is not None
