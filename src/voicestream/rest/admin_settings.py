"""``GET``/``PATCH /v1/admin/settings``: the caller's workspace's own settings.

The name, and the pages allowed to use its browser endpoints (the same list, rules and audit
as ``PATCH /v1/workspaces/{id}``: ``rest/workspaces.change_origins``). Who may use single
sign-on, SCIM, billing, retention or moderation is each domain's own ``/v1/admin/...`` route.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ..identity.audit_trail import audit
from ..identity.page_origins import MAX_ORIGINS, PAGE_ORIGINS
from ..identity.request_principal import principal_of
from ..store.workspace_settings import (
    WorkspaceRow,
    name_available,
    read_workspace,
    rename_workspace,
)
from .bodies import read_model
from .resources import POOL
from .workspaces import Origin, change_origins

__all__ = ["AdminSettingsBody", "AdminSettingsModel", "settings_admin_routes"]


class AdminSettingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit; unique.
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    allowed_origins: list[Origin] | None = Field(None, max_length=MAX_ORIGINS)

    @model_validator(mode="after")
    def _something(self) -> AdminSettingsBody:
        if self.name is None and self.allowed_origins is None:
            raise ValueError("send name, allowed_origins or both")
        return self


class AdminSettingsModel(BaseModel):
    id: UUID
    name: str
    created_at: datetime
    members: int
    # Pages (besides the server's own and VOICESTREAM_ALLOWED_ORIGINS) that may use this
    # workspace's browser sockets, WebRTC calls and widget.
    allowed_origins: list[str]


def _model(row: WorkspaceRow, origins: list[str]) -> AdminSettingsModel:
    return AdminSettingsModel(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        members=row.members,
        allowed_origins=origins,
    )


async def get_settings(request: web.Request) -> web.Response:
    principal = principal_of(request)
    row = await read_workspace(request.config_dict[POOL], principal.workspace_id)
    origins = await request.config_dict[PAGE_ORIGINS].read(principal)
    return web.json_response(text=_model(row, origins).model_dump_json())


async def change_settings(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await read_model(request, AdminSettingsBody)
    pool = request.config_dict[POOL]
    if body.name is not None:
        # Every check before any change, so a refused request changes nothing.
        await name_available(pool, principal.workspace_id, body.name)
    origins = await change_origins(request, principal, body.allowed_origins)
    if body.name is not None:
        before, row = await rename_workspace(pool, principal.workspace_id, body.name)
        if before != row.name:
            # After the fact: the name has changed; a failed entry is reported as a 503.
            await audit(
                request,
                "workspace.renamed",
                "workspace",
                principal.workspace_id,
                details={"from": before, "to": row.name},
            )
    row = await read_workspace(pool, principal.workspace_id)
    return web.json_response(text=_model(row, origins).model_dump_json())


def settings_admin_routes() -> list[web.RouteDef]:
    """Paths relative to ``/v1/admin`` (rest/admin.py)."""
    return [
        web.get("/settings", get_settings, allow_head=False),
        web.patch("/settings", change_settings),
    ]
