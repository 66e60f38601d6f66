"""``GET /v1/audit-logs``: the caller's workspace's audit log, newest first.

Owners and admins only (``identity/policy.py`` refuses the other roles before this runs).
Paged by an opaque ``cursor`` (the previous page's ``next_cursor``) and filtered by
``action`` (exact, or a family: ``key.`` / ``key.*``), ``actor`` (a user or key id, a key
prefix, an e-mail, ``cli``), ``target_type``/``target_id`` and ``since`` (inclusive) /
``until`` (exclusive), ISO 8601 with an offset. Unknown or repeated parameters are refused
(422) rather than ignored: a mistyped filter must not quietly return everything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from ..identity.audit_trail import AUDIT_TRAIL
from ..identity.request_principal import principal_of
from ..store.audit import MAX_PAGE_SIZE, AuditEntry, AuditFilters
from .bodies import read_query

__all__ = [
    "AUDIT_LOGS_PREFIX",
    "AuditEntryModel",
    "AuditFilterQuery",
    "AuditLogPage",
    "AuditLogQuery",
    "audit_logs_app",
]

Text = Annotated[str, StringConstraints(min_length=1, max_length=320)]


class AuditFilterQuery(BaseModel):
    """Which entries: the filters of the listing and of the export (``/v1/admin/audit-logs``)."""

    model_config = ConfigDict(extra="forbid")
    action: Annotated[str, StringConstraints(max_length=100)] | None = None
    actor: Text | None = None
    target_type: Annotated[str, StringConstraints(max_length=64)] | None = None
    target_id: Annotated[str, StringConstraints(max_length=200)] | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None

    def filters(self) -> AuditFilters:
        return AuditFilters(
            action=self.action,
            actor=self.actor,
            target_type=self.target_type,
            target_id=self.target_id,
            since=self.since,
            until=self.until,
        )


class AuditLogQuery(AuditFilterQuery):
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    cursor: Annotated[str, StringConstraints(max_length=100)] | None = None


class ActorModel(BaseModel):
    display: str  # a key prefix, an e-mail, or "cli"
    user_id: UUID | None
    api_key_id: UUID | None


class TargetModel(BaseModel):
    type: str | None
    id: str | None


class AuditEntryModel(BaseModel):
    id: int
    created_at: datetime
    workspace_id: UUID | None
    action: str
    actor: ActorModel
    target: TargetModel
    ip: str | None
    user_agent: str | None
    details: dict[str, Any]
    prev_hash: str  # hex: the previous entry's hash
    hash: str  # hex SHA-256 over prev_hash and this entry (``voicestream audit verify``)

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryModel:
        return cls(
            id=entry.id,
            created_at=entry.created_at,
            workspace_id=entry.workspace_id,
            action=entry.action,
            actor=ActorModel(
                display=entry.actor_display,
                user_id=entry.actor_user_id,
                api_key_id=entry.actor_key_id,
            ),
            target=TargetModel(type=entry.target_type, id=entry.target_id),
            ip=entry.ip,
            user_agent=entry.user_agent,
            details=entry.details,
            prev_hash=entry.prev_hash.hex(),
            hash=entry.hash.hex(),
        )


class AuditLogPage(BaseModel):
    data: list[AuditEntryModel]
    next_cursor: str | None  # None on the last page


def _query(request: web.Request) -> AuditLogQuery:
    return read_query(request, AuditLogQuery)  # an empty value is no filter, as in a blank form


async def list_audit_logs(request: web.Request) -> web.Response:
    principal = principal_of(request)
    query = _query(request)
    page = await request.config_dict[AUDIT_TRAIL].log.list(
        principal.workspace_id,
        limit=query.limit,
        cursor=query.cursor,
        filters=query.filters(),
    )
    body = AuditLogPage(
        data=[AuditEntryModel.of(entry) for entry in page.entries],
        next_cursor=page.next_cursor,
    )
    return web.json_response(text=body.model_dump_json())


AUDIT_LOGS_PREFIX: Final = "/v1/audit-logs"


def audit_logs_app() -> web.Application:
    """The sub-app to mount at ``AUDIT_LOGS_PREFIX`` ("" is the prefix itself)."""
    app = web.Application()
    app.add_routes([web.get("", list_audit_logs, allow_head=False)])
    return app
