"""``/v1/operator/...``: the server operator's cross-workspace views, read-only.

Only an operator key reaches these (``identity/policy.py``'s ``operator`` access: a workspace's
keys and members, owners included, get 403), and an operator key reaches nothing else: it
cannot synthesize, transcribe or act inside any workspace. Usage is over ``since`` (inclusive)
and ``until`` (exclusive), ISO 8601; a time without a zone is UTC; the default is this
calendar month so far.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ..errors import NotFound
from ..identity.quotas import month_start
from ..store.operator_views import (
    Period,
    WorkspaceSummary,
    list_workspaces,
    server_usage,
    workspace_summary,
)
from ..store.usage import decode_cursor
from .bodies import read_query
from .resources import POOL
from .usage import UsageTotals, utc

__all__ = [
    "OPERATOR_PREFIX",
    "OperatorUsage",
    "OperatorWorkspace",
    "OperatorWorkspacePage",
    "PeriodQuery",
    "WorkspacesQuery",
    "operator_app",
]

OPERATOR_PREFIX: Final = "/v1/operator"


class PeriodQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: datetime | None = None
    until: datetime | None = None

    @model_validator(mode="after")
    def _window(self) -> PeriodQuery:
        self.since = utc(self.since)
        self.until = utc(self.until)
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise ValueError("until must be later than since")
        return self

    def period(self) -> Period:
        return Period(self.since or month_start(), self.until)


class WorkspacesQuery(PeriodQuery):
    limit: int = Field(100, ge=1, le=500)
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class OperatorWorkspace(BaseModel):
    id: UUID
    name: str
    created_at: datetime
    members: int
    live_keys: int  # neither revoked nor expired
    plan: str  # the billing plan (free without a subscription)
    billing_status: str  # the subscription's status (past_due, active, ...; none before one)
    usage: UsageTotals  # over the period asked

    @classmethod
    def of(cls, summary: WorkspaceSummary) -> OperatorWorkspace:
        return cls(
            id=summary.id,
            name=summary.name,
            created_at=summary.created_at,
            members=summary.members,
            live_keys=summary.live_keys,
            plan=summary.plan,
            billing_status=summary.billing_status,
            usage=UsageTotals(**summary.usage),
        )


class OperatorWorkspacePage(BaseModel):
    since: datetime
    until: datetime | None
    workspaces: list[OperatorWorkspace]
    next_cursor: str | None  # None on the last page


class OperatorUsage(BaseModel):
    since: datetime
    until: datetime | None
    totals: UsageTotals  # the whole server's
    active_workspaces: int  # workspaces with any usage in the period


def _json(model: BaseModel) -> web.Response:
    return web.json_response(text=model.model_dump_json())


async def get_workspaces(request: web.Request) -> web.Response:
    query = read_query(request, WorkspacesQuery)
    period = query.period()
    after = decode_cursor(query.cursor) if query.cursor is not None else None
    summaries, next_cursor = await list_workspaces(
        request.config_dict[POOL], period, limit=query.limit, after=after
    )
    return _json(
        OperatorWorkspacePage(
            since=period.since,
            until=period.until,
            workspaces=[OperatorWorkspace.of(summary) for summary in summaries],
            next_cursor=next_cursor,
        )
    )


async def get_workspace(request: web.Request) -> web.Response:
    query = read_query(request, PeriodQuery)
    raw = request.match_info["workspace_id"]
    try:
        workspace_id = UUID(raw)
    except ValueError:
        raise NotFound("no such workspace", details={"workspace_id": raw}) from None
    summary = await workspace_summary(request.config_dict[POOL], workspace_id, query.period())
    return _json(OperatorWorkspace.of(summary))


async def get_usage(request: web.Request) -> web.Response:
    query = read_query(request, PeriodQuery)
    period = query.period()
    totals, active = await server_usage(request.config_dict[POOL], period)
    return _json(
        OperatorUsage(
            since=period.since,
            until=period.until,
            totals=UsageTotals(**totals),
            active_workspaces=active,
        )
    )


def operator_app() -> web.Application:
    """The sub-app to mount at ``OPERATOR_PREFIX``."""
    app = web.Application()
    app.add_routes(
        [
            web.get("/workspaces", get_workspaces, allow_head=False),
            web.get("/workspaces/{workspace_id}", get_workspace, allow_head=False),
            web.get("/usage", get_usage, allow_head=False),
        ]
    )
    return app
