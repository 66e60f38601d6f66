"""``/v1/webhooks…``: a workspace's webhook endpoints, their delivery log and redelivery.

A thin shell over ``jobs/webhooks.py``. Owners and admins only, reads included
(``identity/policy.py``): an endpoint's URL and log say where the workspace's events go. The
signing secret is in the creation answer alone (``Cache-Control: no-store``). Another
workspace's endpoint or delivery, and a malformed id, answer 404 like a missing one.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ..errors import NotFound
from ..identity.audit_trail import audit
from ..identity.request_principal import principal_of
from ..jobs.webhook_addresses import MAX_URL_CHARS
from ..jobs.webhooks import ALL_EVENTS, EVENT_TYPES, Webhooks
from ..store.webhooks import MAX_PAGE_SIZE, Attempt, Delivery, DeliveryStatus, Endpoint
from .bodies import read_model, read_query
from .secret_fields import shown_once

__all__ = [
    "WEBHOOKS",
    "WEBHOOKS_PREFIX",
    "CreateWebhookBody",
    "CreatedWebhook",
    "DeliveryDetailModel",
    "DeliveryModel",
    "DeliveryPage",
    "DeliveryQuery",
    "WebhookList",
    "WebhookModel",
    "WebhookPatchBody",
    "webhooks_app",
]

WEBHOOKS: web.AppKey[Webhooks] = web.AppKey("voicestream_webhooks", Webhooks)

_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_EVENTS_HELP: Final = f"Event types to receive: {ALL_EVENTS} (every one), {', '.join(EVENT_TYPES)}."

Url = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL_CHARS)]
EventName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Events = Annotated[list[EventName], Field(min_length=1, max_length=50, description=_EVENTS_HELP)]
Description = Annotated[str, StringConstraints(max_length=500)]


class CreateWebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url
    events: Events = Field(default_factory=lambda: [ALL_EVENTS])
    description: Description = ""


class WebhookPatchBody(BaseModel):
    """What to change; ``enabled: true`` also resumes an endpoint disabled by a 410."""

    model_config = ConfigDict(extra="forbid")
    url: Url | None = None
    events: Events | None = None
    description: Description | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> WebhookPatchBody:
        if not self.model_fields_set:
            raise ValueError("send at least one of url, events, description, enabled")
        return self


class WebhookModel(BaseModel):
    id: UUID
    url: str
    events: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None  # e.g. the endpoint answered 410 Gone
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: Endpoint) -> WebhookModel:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            events=list(endpoint.events),
            description=endpoint.description,
            enabled=endpoint.enabled,
            disabled_reason=endpoint.disabled_reason,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class CreatedWebhook(WebhookModel):
    secret: str = shown_once(
        "The endpoint's signing secret (`whsec_` + base64): verify each request's "
        "`webhook-signature` with it, as the Standard Webhooks libraries do."
    )


class WebhookList(BaseModel):
    data: list[WebhookModel]


class DeliveryModel(BaseModel):
    id: UUID
    webhook_id: UUID
    event_id: str  # the webhook-id header: the same on every attempt
    event_type: str
    status: DeliveryStatus
    attempts: int  # in the current round (a redelivery starts a new one)
    next_attempt_at: datetime | None  # when pending
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryModel:
        return cls(
            id=delivery.id,
            webhook_id=delivery.endpoint_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
            updated_at=delivery.updated_at,
        )


class AttemptModel(BaseModel):
    attempted_at: datetime
    duration_ms: int
    status_code: int | None  # null: no answer (refused address, timeout, connection)
    error: str | None
    response_body: str | None  # the answer's first bytes

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptModel:
        return cls(
            attempted_at=attempt.attempted_at,
            duration_ms=attempt.duration_ms,
            status_code=attempt.status_code,
            error=attempt.error,
            response_body=attempt.response_body,
        )


class DeliveryDetailModel(DeliveryModel):
    payload: dict[str, Any]  # the body every attempt sends
    log: list[AttemptModel]  # the latest attempts, oldest first


class DeliveryPage(BaseModel):
    data: list[DeliveryModel]
    next_cursor: str | None  # None on the last page


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=MAX_PAGE_SIZE)
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    status: DeliveryStatus | None = None


def _webhooks(request: web.Request) -> Webhooks:
    return request.config_dict[WEBHOOKS]


def _id(request: web.Request, name: str, what: str) -> UUID:
    raw = request.match_info[name]
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound(f"no such {what}", details={"id": raw}) from None


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


async def create_webhook(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await read_model(request, CreateWebhookBody)
    endpoint, secret = await _webhooks(request).create(
        principal.workspace_id, body.url, body.events, body.description
    )
    # After the fact: the endpoint exists; a failed entry is a 503 and the caller never sees
    # the secret, so it is listed (to delete) but cannot be verified against.
    await audit(
        request,
        "webhook.created",
        "webhook",
        endpoint.id,
        details={"url": endpoint.url, "events": list(endpoint.events)},
    )
    created = CreatedWebhook(**WebhookModel.of(endpoint).model_dump(), secret=secret)
    return web.json_response(text=created.model_dump_json(), status=201, headers=_NO_STORE)


async def list_webhooks(request: web.Request) -> web.Response:
    endpoints = await _webhooks(request).list_endpoints(principal_of(request).workspace_id)
    return _json(WebhookList(data=[WebhookModel.of(e) for e in endpoints]))


async def get_webhook(request: web.Request) -> web.Response:
    endpoint_id = _id(request, "webhook_id", "webhook endpoint")
    endpoint = await _webhooks(request).get(principal_of(request).workspace_id, endpoint_id)
    return _json(WebhookModel.of(endpoint))


async def change_webhook(request: web.Request) -> web.Response:
    principal = principal_of(request)
    endpoint_id = _id(request, "webhook_id", "webhook endpoint")
    # Another workspace's endpoint is a 404 whatever the body holds, as a missing one is.
    await _webhooks(request).get(principal.workspace_id, endpoint_id)
    body = await read_model(request, WebhookPatchBody)
    endpoint = await _webhooks(request).update(
        principal.workspace_id,
        endpoint_id,
        url=body.url,
        events=body.events,
        description=body.description,
        enabled=body.enabled,
    )
    await audit(
        request,
        "webhook.changed",
        "webhook",
        endpoint.id,
        details=body.model_dump(mode="json", exclude_unset=True),
    )
    return _json(WebhookModel.of(endpoint))


async def delete_webhook(request: web.Request) -> web.Response:
    principal = principal_of(request)
    endpoint_id = _id(request, "webhook_id", "webhook endpoint")
    await _webhooks(request).delete(principal.workspace_id, endpoint_id)
    await audit(request, "webhook.deleted", "webhook", endpoint_id)
    return web.Response(status=204)


def _query(request: web.Request) -> DeliveryQuery:
    return read_query(request, DeliveryQuery)


async def list_deliveries(request: web.Request) -> web.Response:
    principal = principal_of(request)
    endpoint_id = _id(request, "webhook_id", "webhook endpoint")
    query = _query(request)
    deliveries, next_cursor = await _webhooks(request).deliveries(
        principal.workspace_id,
        endpoint_id,
        limit=query.limit,
        cursor=query.cursor,
        status=query.status,
    )
    page = DeliveryPage(data=[DeliveryModel.of(d) for d in deliveries], next_cursor=next_cursor)
    return _json(page)


async def get_delivery(request: web.Request) -> web.Response:
    principal = principal_of(request)
    endpoint_id = _id(request, "webhook_id", "webhook endpoint")
    delivery_id = _id(request, "delivery_id", "webhook delivery")
    detail = await _webhooks(request).delivery(principal.workspace_id, endpoint_id, delivery_id)
    model = DeliveryDetailModel(
        **DeliveryModel.of(detail.delivery).model_dump(),
        payload=json.loads(detail.delivery.payload),
        log=[AttemptModel.of(a) for a in detail.attempts],
    )
    return _json(model)


async def redeliver(request: web.Request) -> web.Response:
    principal = principal_of(request)
    endpoint_id = _id(request, "webhook_id", "webhook endpoint")
    delivery_id = _id(request, "delivery_id", "webhook delivery")
    delivery = await _webhooks(request).redeliver(principal.workspace_id, endpoint_id, delivery_id)
    await audit(
        request,
        "webhook.redelivered",
        "webhook",
        endpoint_id,
        details={"delivery_id": str(delivery.id), "event_id": delivery.event_id},
    )
    return _json(DeliveryModel.of(delivery), 202)


async def send_test(request: web.Request) -> web.Response:
    principal = principal_of(request)
    endpoint_id = _id(request, "webhook_id", "webhook endpoint")
    delivery = await _webhooks(request).send_test(principal.workspace_id, endpoint_id)
    return _json(DeliveryModel.of(delivery), 202)


WEBHOOKS_PREFIX: Final = "/v1/webhooks"


def webhooks_app() -> web.Application:
    """The sub-app to mount at ``WEBHOOKS_PREFIX`` (paths relative to it; "" is the prefix)."""
    app = web.Application()
    app.add_routes(
        [
            web.post("", create_webhook),
            web.get("", list_webhooks, allow_head=False),
            web.get("/{webhook_id}", get_webhook, allow_head=False),
            web.patch("/{webhook_id}", change_webhook),
            web.delete("/{webhook_id}", delete_webhook),
            web.get("/{webhook_id}/deliveries", list_deliveries, allow_head=False),
            web.get("/{webhook_id}/deliveries/{delivery_id}", get_delivery, allow_head=False),
            web.post("/{webhook_id}/deliveries/{delivery_id}/redeliver", redeliver),
            web.post("/{webhook_id}/test", send_test),
        ]
    )
    return app
