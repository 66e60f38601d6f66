"""``GET /v1/usage``: what the caller's workspace consumed, by key or by day, a page at a time.

``group_by=key|day`` (default ``day``, UTC days), ``since`` and ``until`` (ISO 8601 dates or
date-times; a time without a zone is UTC; default: this calendar month so far), ``limit``
(1–1000 groups, default 100) and ``cursor`` (the ``next_cursor`` of the page before). Only
the caller's own workspace is ever read. Grouping by seat (member) follows once usage
records name their user.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ..identity.quotas import month_start, quota_limit
from ..identity.request_principal import principal_of
from ..protocols.json_messages import validate_model
from ..store.usage import USAGE_KINDS, decode_cursor
from ..transports.context import RUNTIME

__all__ = ["UsagePage", "get_usage"]


class UsageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_by: Literal["key", "day"] = "day"
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(100, ge=1, le=1000)
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _window(self) -> UsageQuery:
        self.since = _utc(self.since)
        self.until = _utc(self.until)
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be later than since")
        return self


def _utc(value: datetime | None) -> datetime | None:
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


class QuotaModel(BaseModel):
    """This calendar month's quota of one kind, in its recorded unit; null: unlimited."""

    kind: str
    limit: float | None


class UsagePage(BaseModel):
    workspace_id: UUID
    group_by: Literal["key", "day"]
    since: datetime
    until: datetime | None
    data: list[UsageGroupModel]
    next_cursor: str | None
    quotas: list[QuotaModel]


async def get_usage(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    principal = principal_of(request)
    query = validate_model(UsageQuery, dict(request.query), "the query")
    after = decode_cursor(query.cursor) if query.cursor is not None else None
    since = query.since or month_start()
    groups, next_cursor = await rt.usage.groups(
        principal.workspace_id,
        query.group_by,
        since=since,
        until=query.until,
        limit=query.limit,
        after=after,
    )
    page = UsagePage(
        workspace_id=principal.workspace_id,
        group_by=query.group_by,
        since=since,
        until=query.until,
        data=[
            UsageGroupModel(
                key_id=g.key_id,
                day=g.day,
                tts_characters=g.totals["tts_characters"],
                stt_seconds=g.totals["stt_seconds"],
                conversation_seconds=g.totals["conversation_seconds"],
            )
            for g in groups
        ],
        next_cursor=next_cursor,
        quotas=[
            QuotaModel(kind=kind, limit=_float(quota_limit(rt.settings, kind)))
            for kind in USAGE_KINDS
        ],
    )
    return web.json_response(text=page.model_dump_json())


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)
