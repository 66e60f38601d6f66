"""``GET /v1/usage``: what the caller's workspace consumed, by key, day or seat, a page at a time.

``group_by=key|day|user`` (default ``day``, UTC days; ``user``: by seat, the member who caused
it), ``user_id`` (only that seat's usage), ``since`` and ``until`` (ISO 8601 dates or
date-times; a time without a zone is UTC; default: this calendar month so far), ``limit``
(1–1000 groups, default 100) and ``cursor`` (the ``next_cursor`` of the page before). Only
the caller's own workspace is ever read.

Who sees what: owners and admins, and API keys (a key's role was chosen by the admin who
made it), see the whole workspace. A signed-in editor or viewer sees only their own seat:
every listing is narrowed to it, and ``user_id`` naming another member is 403.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Final, Literal
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ..config import Settings
from ..errors import Forbidden
from ..identity.quotas import month_start, quota_limit, seat_quota_default
from ..identity.request_principal import principal_of
from ..protocols.json_messages import validate_model
from ..store.keys import Principal
from ..store.usage import USAGE_KINDS, UsageRepository, decode_cursor
from .resources import SETTINGS, USAGE

__all__ = ["USAGE_PREFIX", "UsagePage", "UsageTotals", "get_usage", "usage_app", "utc"]

USAGE_PREFIX: Final = "/v1/usage"


class UsageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_by: Literal["key", "day", "user"] = "day"
    user_id: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(100, ge=1, le=1000)
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _window(self) -> UsageQuery:
        self.since = utc(self.since)
        self.until = utc(self.until)
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be later than since")
        return self


def utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class UsageTotals(BaseModel):
    tts_characters: float = 0.0
    stt_seconds: float = 0.0
    conversation_seconds: float = 0.0


class UsageGroupModel(UsageTotals):
    # group_by=key: the key (null: usage of no key, such as a signed-in session's)
    key_id: UUID | None = None
    day: date | None = None  # group_by=day, UTC
    # group_by=user: the seat (null: usage of no member, such as a command-line key's)
    user_id: UUID | None = None


class QuotaModel(BaseModel):
    """This calendar month's quota of one kind, in its recorded unit; null: unlimited."""

    kind: str
    limit: float | None


class UsagePage(BaseModel):
    workspace_id: UUID
    group_by: Literal["key", "day", "user"]
    # The seat the listing is narrowed to (asked for, or the caller's own); null: every seat
    user_id: UUID | None = None
    since: datetime
    until: datetime | None
    data: list[UsageGroupModel]
    next_cursor: str | None
    quotas: list[QuotaModel]  # the workspace's
    # The seat's own quotas (its member's, else the default) when narrowed to one seat
    seat_quotas: list[QuotaModel] | None = None


def _seat_of_listing(principal: Principal, asked: UUID | None) -> UUID | None:
    """The seat the caller may see: any (or the one asked for) for admins and keys, their
    own for a signed-in editor or viewer."""
    if principal.user_id is None or principal.has_role("admin"):
        return asked
    if asked is not None and asked != principal.user_id:
        raise Forbidden(
            "an editor or viewer sees only their own usage; an owner or admin sees every seat",
            details={"role": principal.role, "required": "admin"},
        )
    return principal.user_id


async def _seat_quotas(
    usage: UsageRepository, settings: Settings, workspace_id: UUID, user_id: UUID
) -> list[QuotaModel]:
    own = await usage.seat_quotas(workspace_id, user_id)
    return [
        QuotaModel(kind=kind, limit=_float(own.get(kind, seat_quota_default(settings, kind))))
        for kind in USAGE_KINDS
    ]


def usage_app() -> web.Application:
    """The sub-app to mount at ``USAGE_PREFIX`` ("" is the prefix itself)."""
    app = web.Application()
    app.add_routes([web.get("", get_usage)])
    return app


async def get_usage(request: web.Request) -> web.Response:
    principal = principal_of(request)
    query = validate_model(UsageQuery, dict(request.query), "the query")
    after = decode_cursor(query.cursor) if query.cursor is not None else None
    since = query.since or month_start()
    seat = _seat_of_listing(principal, query.user_id)
    usage = request.config_dict[USAGE]
    settings = request.config_dict[SETTINGS]
    # A seat of no member here answers 404, like any object of another workspace.
    seat_quotas = (
        await _seat_quotas(usage, settings, principal.workspace_id, seat)
        if seat is not None
        else None
    )
    groups, next_cursor = await usage.groups(
        principal.workspace_id,
        query.group_by,
        since=since,
        until=query.until,
        limit=query.limit,
        after=after,
        user_id=seat,
    )
    page = UsagePage(
        workspace_id=principal.workspace_id,
        group_by=query.group_by,
        user_id=seat,
        since=since,
        until=query.until,
        data=[
            UsageGroupModel(
                key_id=g.key_id,
                day=g.day,
                user_id=g.user_id,
                tts_characters=g.totals["tts_characters"],
                stt_seconds=g.totals["stt_seconds"],
                conversation_seconds=g.totals["conversation_seconds"],
            )
            for g in groups
        ],
        next_cursor=next_cursor,
        quotas=[
            QuotaModel(kind=kind, limit=_float(quota_limit(settings, kind))) for kind in USAGE_KINDS
        ],
        seat_quotas=seat_quotas,
    )
    return web.json_response(text=page.model_dump_json())


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)
