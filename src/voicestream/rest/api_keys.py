"""``/v1/api-keys``: a workspace's API keys as resources — mint, list, revoke.

Owners and admins only (``identity/policy.py``). A caller cannot mint a key that could do
more than itself: not a role above its own, and, when the caller is a limited key, no scope
it lacks. The secret is in the creation answer alone (``Cache-Control: no-store``); listings
show the display prefix. Revocation is immediate for new requests, and the socket registry
closes the key's open sockets on its next poll, as for ``voicestream keys revoke``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final
from uuid import UUID

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from ..errors import Forbidden, NotFound, ValidationFailed
from ..identity.audit_trail import audit
from ..identity.request_principal import principal_of
from ..store.keys import SCOPES, ApiKey, Role, Scope
from .bodies import read_model
from .resources import API_KEYS
from .secret_fields import shown_once

__all__ = [
    "API_KEYS",
    "API_KEYS_PREFIX",
    "ApiKeyList",
    "ApiKeyModel",
    "CreateApiKeyBody",
    "CreatedApiKey",
    "api_keys_app",
]


_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class CreateApiKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    role: Role
    # None: every scope.
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(SCOPES))] | None = None
    expires_at: AwareDatetime | None = None
    project: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None


class ApiKeyModel(BaseModel):
    id: UUID
    prefix: str  # the key's first characters, to recognise it; never the secret
    name: str | None
    role: Role
    scopes: list[Scope]
    project: str | None
    created_by_user_id: UUID | None
    created_at: datetime
    last_used_at: datetime | None  # kept to the minute
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyModel:
        return cls(
            id=key.id,
            prefix=key.prefix,
            name=key.name,
            role=key.role,
            scopes=list(key.scopes if key.scopes is not None else SCOPES),
            project=key.project,
            created_by_user_id=key.created_by_user_id,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )


class CreatedApiKey(ApiKeyModel):
    key: str = shown_once(
        "The key, to send as `Authorization: Bearer <key>`; the server keeps only its hash."
    )


class ApiKeyList(BaseModel):
    data: list[ApiKeyModel]


async def create_key(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await read_model(request, CreateApiKeyBody)
    if not principal.has_role(body.role):
        raise Forbidden(
            f"a {principal.role} cannot mint a key with the {body.role} role",
            details={"role": principal.role, "requested": body.role},
        )
    wanted = set(body.scopes if body.scopes is not None else SCOPES)
    if principal.scopes is not None and not wanted <= principal.scopes:
        raise Forbidden(
            "a key cannot mint a key with scopes it does not have",
            details={"missing": sorted(wanted - principal.scopes)},
        )
    expires_in = None
    if body.expires_at is not None:
        expires_in = body.expires_at - datetime.now(UTC)
        if expires_in.total_seconds() <= 0:
            raise ValidationFailed(
                "expires_at must be in the future",
                details={"fields": [{"field": "expires_at", "message": "in the past"}]},
            )
    key, plaintext = await request.config_dict[API_KEYS].create(
        role=body.role,
        name=body.name,
        workspace_id=principal.workspace_id,
        scopes=body.scopes,
        expires_in=expires_in,
        created_by_user_id=principal.user_id,
        project=body.project,
    )
    # After the fact: the key exists; a failed entry is a 503 and the caller never sees the
    # secret, so the key is unusable and the next listing shows it (to revoke).
    await audit(
        request,
        "key.created",
        "api_key",
        key.id,
        details={
            "prefix": key.prefix,
            "name": key.name,
            "role": key.role,
            "scopes": list(key.scopes) if key.scopes is not None else None,
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        },
    )
    created = CreatedApiKey(**ApiKeyModel.of(key).model_dump(), key=plaintext)
    return web.json_response(text=created.model_dump_json(), status=201, headers=_NO_STORE)


async def list_keys(request: web.Request) -> web.Response:
    principal = principal_of(request)
    keys = await request.config_dict[API_KEYS].list_in(principal.workspace_id)
    body = ApiKeyList(data=[ApiKeyModel.of(key) for key in keys])
    return web.json_response(text=body.model_dump_json())


async def revoke_key(request: web.Request) -> web.Response:
    principal = principal_of(request)
    raw = request.match_info["key_id"]
    try:
        key_id = UUID(raw)
    except ValueError:
        raise NotFound("no such API key", details={"id": raw}) from None
    key = await request.config_dict[API_KEYS].revoke_in(principal.workspace_id, key_id)
    # After the fact: the key is revoked whether or not the entry could be written.
    await audit(request, "key.revoked", "api_key", key.id, details={"prefix": key.prefix})
    return web.json_response(text=ApiKeyModel.of(key).model_dump_json())


API_KEYS_PREFIX: Final = "/v1/api-keys"


def api_keys_app() -> web.Application:
    """The sub-app to mount at ``API_KEYS_PREFIX`` (paths relative to it; "" is the prefix)."""
    app = web.Application()
    app.add_routes(
        [
            web.post("", create_key),
            web.get("", list_keys, allow_head=False),
            web.delete("/{key_id}", revoke_key),
        ]
    )
    return app
