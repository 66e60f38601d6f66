"""``/v1/workspaces/{workspace_id}/translation``: the workspace's own translator for dubbing.

A thin shell over ``dubbing/workspace_translators.py``. Any member may read it (whether dubs
into other languages will work, and through what); owners and admins set and remove it
(``identity/policy.py``). The ``api_key`` is write-only: answers say ``api_key_set`` and
never the key. A PUT without ``api_key`` keeps the stored key while ``base_url`` stays the
same (so a client can change the model without knowing it), and drops it when the endpoint
changes; ``"api_key": null`` removes it. A workspace the caller does not act in, or a
malformed id, answers 404 like one that does not exist (as ``rest/workspaces.py`` does).

The routes join the workspaces sub-app (``translation_routes``), whose prefix they share.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..dubbing.translation import translator_from_settings
from ..dubbing.workspace_translators import KEEP_KEY, WorkspaceTranslators
from ..identity.audit_trail import audit
from ..jobs.webhook_addresses import MAX_URL_CHARS
from ..store.workspace_translators import StoredTranslator
from .bodies import read_model
from .resources import SETTINGS
from .secret_fields import optional_secret
from .workspaces import in_workspace

__all__ = [
    "TRANSLATORS",
    "TranslationBody",
    "TranslationModel",
    "translation_routes",
]

TRANSLATORS: web.AppKey[WorkspaceTranslators] = web.AppKey(
    "voicestream_workspace_translators", WorkspaceTranslators
)

_BASE_URL_HELP: Final = (
    "The OpenAI-compatible API's base URL, an absolute http(s) URL (the one "
    "`/chat/completions` is under, usually ending in `/v1`). Its host must be a public address "
    "unless the operator allows private ones (VOICESTREAM_WEBHOOK_ALLOW_PRIVATE)."
)


class TranslationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL_CHARS)] = Field(
        description=_BASE_URL_HELP
    )
    model: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    api_key: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = (
        optional_secret()
    )


class TranslationModel(BaseModel):
    configured: bool  # whether the workspace has a translator of its own
    base_url: str | None
    model: str | None
    api_key_set: bool
    updated_at: datetime | None
    # Whether the server has one, which the workspace's dubs use when it has none.
    server_translator: bool


def _answer(request: web.Request, stored: StoredTranslator | None) -> web.Response:
    model = TranslationModel(
        configured=stored is not None,
        base_url=stored.base_url if stored else None,
        model=stored.model if stored else None,
        api_key_set=bool(stored and stored.api_key_sealed),
        updated_at=stored.updated_at if stored else None,
        server_translator=translator_from_settings(request.config_dict[SETTINGS]) is not None,
    )
    return web.json_response(text=model.model_dump_json(), headers={"Cache-Control": "no-store"})


async def get_translation(request: web.Request) -> web.Response:
    workspace_id = in_workspace(request).workspace_id
    return _answer(request, await request.config_dict[TRANSLATORS].get(workspace_id))


async def put_translation(request: web.Request) -> web.Response:
    workspace_id = in_workspace(request).workspace_id
    body = await read_model(request, TranslationBody)
    stored = await request.config_dict[TRANSLATORS].put(
        workspace_id,
        base_url=body.base_url,
        model=body.model,
        api_key=body.api_key if "api_key" in body.model_fields_set else KEEP_KEY,
    )
    # After the fact: the setting has changed; a failed entry is reported as a 503.
    await audit(
        request,
        "workspace.translation_changed",
        "workspace",
        workspace_id,
        details={
            "base_url": stored.base_url,
            "model": stored.model,
            "api_key_set": stored.api_key_sealed is not None,
        },
    )
    return _answer(request, stored)


async def delete_translation(request: web.Request) -> web.Response:
    """Idempotent: 204 whether or not the workspace had one."""
    workspace_id = in_workspace(request).workspace_id
    if await request.config_dict[TRANSLATORS].delete(workspace_id):
        await audit(request, "workspace.translation_removed", "workspace", workspace_id)
    return web.Response(status=204)


def translation_routes() -> list[web.RouteDef]:
    """For the workspaces sub-app (paths relative to ``/v1/workspaces``)."""
    return [
        web.get("/{workspace_id}/translation", get_translation, allow_head=False),
        web.put("/{workspace_id}/translation", put_translation),
        web.delete("/{workspace_id}/translation", delete_translation),
    ]
