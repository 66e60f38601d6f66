"""Outgoing webhooks: endpoints, events and their Standard Webhooks signature.

A workspace registers endpoints (``Webhooks``); something that happens (a job completes)
calls ``enqueue_event`` in its own transaction, which stores one delivery per subscribed
endpoint, idempotent by (endpoint, event id), so a job that runs twice notifies once. The
sender (``jobs/webhook_sender.py``) then delivers them, signed as Standard Webhooks prescribe:
``webhook-id`` (the event id, the same on every retry), ``webhook-timestamp`` (Unix seconds of
the attempt) and ``webhook-signature`` ``v1,<base64 HMAC-SHA256>`` over
``{id}.{timestamp}.{body}``, keyed with the base64 key inside the endpoint's ``whsec_`` secret.

Secrets are generated here, shown once, and stored sealed with the server's key
(``store/secrets.py``), bound to their endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID, uuid4

from ..errors import Conflict, NotFound, ValidationFailed
from ..store import db
from ..store.secrets import SecretBox
from ..store.webhooks import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    WebhookRepository,
    add_event_deliveries,
)
from .webhook_addresses import check_url

__all__ = [
    "ALL_EVENTS",
    "EVENT_TYPES",
    "SECRET_PREFIX",
    "DeliveryDetail",
    "Webhooks",
    "enqueue_event",
    "event_payload",
    "new_secret",
    "secret_context",
    "sign",
]

# The events there are; later issues add theirs here. ``*`` subscribes to every one.
EVENT_TYPES: Final = ("job.completed", "job.failed", "job.cancelled", "webhook.test")
ALL_EVENTS: Final = "*"
SECRET_PREFIX: Final = "whsec_"
_SECRET_BYTES: Final = 32  # the spec asks for 24 to 64
# The id is signed as "{id}.{timestamp}.{body}": it must not hold a dot.
_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
MAX_ENDPOINTS: Final = 50


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(_SECRET_BYTES)).decode("ascii")


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one attempt: ``v1,<base64 HMAC-SHA256>``."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def secret_context(workspace_id: UUID, endpoint_id: UUID) -> str:
    """What a sealed secret is bound to: it opens in its own endpoint's row only."""
    return f"{workspace_id}:webhook:{endpoint_id}:secret"


def event_payload(event_type: str, data: Mapping[str, Any], at: datetime | None = None) -> str:
    """The body every attempt sends: ``{"type", "timestamp", "data"}`` (Standard Webhooks'
    suggested shape), as compact JSON."""
    when = (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {"type": event_type, "timestamp": when, "data": dict(data)},
        separators=(",", ":"),
        ensure_ascii=False,
    )


async def enqueue_event(
    conn: db.Connection,
    workspace_id: UUID,
    event_type: str,
    data: Mapping[str, Any],
    *,
    event_id: str,
) -> None:
    """Store the event for every endpoint of the workspace subscribed to it, in the caller's
    transaction (it is sent once that commits; nothing is sent if it rolls back).

    Idempotent: an endpoint that has ``event_id`` already gets no second delivery, so a job
    that completes twice is announced once (``evt_<job id>_completed``).

    Raises:
        ValueError: an unknown event type, or an event id that is not 1–200 of
            ``[A-Za-z0-9_-]`` (it is signed with dots as separators).
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    if not _EVENT_ID.fullmatch(event_id):
        raise ValueError(f"webhook event id {event_id!r} must be 1-200 of [A-Za-z0-9_-]")
    await add_event_deliveries(
        conn, workspace_id, event_type, event_id, event_payload(event_type, data)
    )


def check_events(events: Sequence[str]) -> list[str]:
    """The events an endpoint subscribes to, deduplicated; ValidationFailed for unknown ones."""
    unknown = sorted({e for e in events if e not in EVENT_TYPES and e != ALL_EVENTS})
    if unknown or not events:
        message = f"events must be a non-empty list of {ALL_EVENTS}, {', '.join(EVENT_TYPES)}"
        raise ValidationFailed(
            message if not unknown else f"unknown events {unknown}: {message}",
            details={"fields": [{"field": "events", "message": message}]},
        )
    return list(dict.fromkeys(events))


@dataclass(frozen=True, slots=True)
class DeliveryDetail:
    delivery: Delivery
    attempts: list[Attempt]


class Webhooks:
    """A workspace's webhook endpoints and their delivery log; every call takes the workspace,
    and another workspace's endpoint is NotFound like a missing one."""

    def __init__(self, repo: WebhookRepository, box: SecretBox, *, allow_private: bool) -> None:
        self.repo = repo
        self._box = box
        self._allow_private = allow_private

    async def create(
        self, workspace_id: UUID, url: str, events: Sequence[str], description: str = ""
    ) -> tuple[Endpoint, str]:
        """A new endpoint and its secret (in clear: the only time it is)."""
        await check_url(url, allow_private=self._allow_private)
        subscribed = check_events(events)
        endpoint_id = uuid4()
        secret = new_secret()
        sealed = self._box.seal(secret, context=secret_context(workspace_id, endpoint_id))
        endpoint = await self.repo.create(
            workspace_id,
            endpoint_id,
            url=url,
            events=subscribed,
            secret_sealed=sealed,
            description=description,
            max_endpoints=MAX_ENDPOINTS,
        )
        if endpoint is None:
            raise Conflict(
                f"a workspace has at most {MAX_ENDPOINTS} webhook endpoints; delete one first",
                details={"limit": MAX_ENDPOINTS},
            )
        return endpoint, secret

    async def list_endpoints(self, workspace_id: UUID) -> list[Endpoint]:
        return await self.repo.list_endpoints(workspace_id)

    async def get(self, workspace_id: UUID, endpoint_id: UUID) -> Endpoint:
        endpoint = await self.repo.get(workspace_id, endpoint_id)
        if endpoint is None:
            raise _missing_endpoint(endpoint_id)
        return endpoint

    async def update(
        self,
        workspace_id: UUID,
        endpoint_id: UUID,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> Endpoint:
        if url is not None:
            await check_url(url, allow_private=self._allow_private)
        endpoint = await self.repo.update(
            workspace_id,
            endpoint_id,
            url=url,
            events=None if events is None else check_events(events),
            description=description,
            enabled=enabled,
        )
        if endpoint is None:
            raise _missing_endpoint(endpoint_id)
        return endpoint

    async def delete(self, workspace_id: UUID, endpoint_id: UUID) -> None:
        if not await self.repo.delete(workspace_id, endpoint_id):
            raise _missing_endpoint(endpoint_id)

    async def deliveries(
        self,
        workspace_id: UUID,
        endpoint_id: UUID,
        *,
        limit: int,
        cursor: str | None,
        status: DeliveryStatus | None,
    ) -> tuple[list[Delivery], str | None]:
        await self.get(workspace_id, endpoint_id)  # a missing endpoint is a 404, not []
        return await self.repo.deliveries(
            workspace_id, endpoint_id, limit=limit, cursor=cursor, status=status
        )

    async def delivery(
        self, workspace_id: UUID, endpoint_id: UUID, delivery_id: UUID
    ) -> DeliveryDetail:
        delivery = await self.repo.delivery(workspace_id, endpoint_id, delivery_id)
        if delivery is None:
            raise _missing_delivery(delivery_id)
        return DeliveryDetail(delivery, await self.repo.attempts(workspace_id, delivery_id))

    async def redeliver(self, workspace_id: UUID, endpoint_id: UUID, delivery_id: UUID) -> Delivery:
        """Send the delivery again now, with a fresh round of retries.

        Raises:
            NotFound: no such delivery of this workspace's endpoint.
            Conflict: the endpoint is disabled (enable it first: its deliveries then resume).
        """
        endpoint = await self.get(workspace_id, endpoint_id)
        if not endpoint.enabled:
            if await self.repo.delivery(workspace_id, endpoint_id, delivery_id) is None:
                raise _missing_delivery(delivery_id)
            raise Conflict(
                "the endpoint is disabled; enable it (PATCH enabled=true) to send again",
                details={"disabled_reason": endpoint.disabled_reason},
            )
        delivery = await self.repo.redeliver(workspace_id, endpoint_id, delivery_id)
        if delivery is None:
            raise _missing_delivery(delivery_id)
        return delivery

    async def send_test(self, workspace_id: UUID, endpoint_id: UUID) -> Delivery:
        """Queue a ``webhook.test`` event for this endpoint alone, whatever it subscribes to."""
        event_id = f"evt_test_{uuid4().hex}"
        data = {"endpoint_id": str(endpoint_id)}
        payload = event_payload("webhook.test", data)
        delivery = await self.repo.add_delivery(
            workspace_id, endpoint_id, "webhook.test", event_id, payload
        )
        if delivery is None:
            raise _missing_endpoint(endpoint_id)
        return delivery


def _missing_endpoint(endpoint_id: UUID) -> NotFound:
    return NotFound("no such webhook endpoint", details={"id": str(endpoint_id)})


def _missing_delivery(delivery_id: UUID) -> NotFound:
    return NotFound("no such webhook delivery", details={"id": str(delivery_id)})
