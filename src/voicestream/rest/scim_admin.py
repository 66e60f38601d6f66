"""``/v1/admin/scim``: the SCIM bearer tokens a workspace's identity provider provisions it
with (minted, listed, revoked; a token is shown once) and how SCIM groups map to roles. Admins
and owners only (``identity/policy.py``); the SCIM protocol itself is ``rest/scim.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..errors import NotFound
from ..identity.audit_trail import audit
from ..identity.request_principal import principal_of
from ..store.keys import Role
from ..store.scim_tokens import ScimSettings
from .bodies import read_model
from .resources import SETTINGS
from .scim import SCIM_PREFIX, scim_provisioning

__all__ = [
    "ScimSettingsModel",
    "ScimTokenCreate",
    "ScimTokenCreated",
    "ScimTokenList",
    "ScimTokenModel",
    "scim_admin_routes",
]

# --- /v1/admin/scim -----------------------------------------------------------------------


class ScimTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class ScimTokenModel(BaseModel):
    id: UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ScimTokenCreated(ScimTokenModel):
    token: str  # shown this once; only its digest is kept
    scim_base_url: str


class ScimTokenList(BaseModel):
    tokens: list[ScimTokenModel]


GrantedRole = Literal["admin", "editor", "viewer"]


class ScimSettingsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The role of a provisioned member in no mapped group.
    default_role: GrantedRole = "viewer"
    # A SCIM group's displayName -> the role its members get (the highest of theirs wins).
    group_roles: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=512)], GrantedRole
    ] = Field(default_factory=dict, max_length=200)


async def get_scim_tokens(request: web.Request) -> web.Response:
    principal = principal_of(request)
    found = await scim_provisioning(request).tokens.list(principal.workspace_id)
    body = ScimTokenList(tokens=[ScimTokenModel(**_token_fields(t)) for t in found])
    return web.json_response(text=body.model_dump_json())


async def post_scim_token(request: web.Request) -> web.Response:
    principal = principal_of(request)
    asked = await read_model(request, ScimTokenCreate)
    provisioning = scim_provisioning(request)
    token, stored = await provisioning.mint_token(principal.workspace_id, asked.name)
    details = {"name": asked.name}
    await audit(request, "scim.token_created", "scim_token", stored.id, details=details)
    public = request.config_dict[SETTINGS].public_origin
    base = public.rstrip("/") if public else f"{request.scheme}://{request.host}"
    body = ScimTokenCreated(
        **_token_fields(stored), token=token, scim_base_url=f"{base}{SCIM_PREFIX}"
    )
    return web.json_response(text=body.model_dump_json(), status=201)


async def delete_scim_token(request: web.Request) -> web.Response:
    principal = principal_of(request)
    try:
        token_id = UUID(request.match_info["scim_token_id"])
    except ValueError:
        raise NotFound("no such SCIM token") from None
    revoked = await scim_provisioning(request).tokens.revoke(principal.workspace_id, token_id)
    await audit(request, "scim.token_revoked", "scim_token", token_id)
    return web.json_response(text=ScimTokenModel(**_token_fields(revoked)).model_dump_json())


async def get_scim_settings(request: web.Request) -> web.Response:
    found = await scim_provisioning(request).tokens.settings(principal_of(request).workspace_id)
    # Validated as it is read back: save_settings never stores an owner.
    body = ScimSettingsModel.model_validate(
        {"default_role": found.default_role, "group_roles": found.group_roles}
    )
    return web.json_response(text=body.model_dump_json())


async def put_scim_settings(request: web.Request) -> web.Response:
    principal = principal_of(request)
    asked = await read_model(request, ScimSettingsModel)
    roles: dict[str, Role] = dict(asked.group_roles)
    await scim_provisioning(request).save_settings(
        principal.workspace_id, ScimSettings(asked.default_role, roles)
    )
    await audit(request, "scim.settings_changed", details=asked.model_dump())
    return web.json_response(text=asked.model_dump_json())


def _token_fields(token: Any) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "revoked_at": token.revoked_at,
    }


def scim_admin_routes() -> list[web.RouteDef]:
    """Paths relative to ``/v1/admin`` (``rest/admin.py``)."""
    return [
        web.get("/scim/tokens", get_scim_tokens, allow_head=False),
        web.post("/scim/tokens", post_scim_token),
        web.delete("/scim/tokens/{scim_token_id}", delete_scim_token),
        web.get("/scim/settings", get_scim_settings, allow_head=False),
        web.put("/scim/settings", put_scim_settings),
    ]
