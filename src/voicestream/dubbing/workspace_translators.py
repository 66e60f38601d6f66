"""Which translator a workspace's dubs use: its own OpenAI-compatible chat endpoint when it
has set one (``/v1/workspaces/{id}/translation``), else the server's
(``translator_from_settings``), else none (same-language and supplied-translation dubs only).

The endpoint is the workspace's, not the operator's, so it gets the webhooks' address rule
(``jobs/webhook_addresses.py``): an absolute http(s) URL whose host is a public address unless
the operator allows private ones (``VOICESTREAM_WEBHOOK_ALLOW_PRIVATE``); otherwise anyone who
may configure it could make the server post dialogue into its own network. The rule is checked
when it is set and again each time a dub is about to use it (DNS may answer differently by
then). Its API key is sealed with the server's key, bound to the workspace's row, and never
shown again.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from ..config import Settings
from ..errors import ValidationFailed
from ..jobs.webhook_addresses import check_url
from ..store import db
from ..store.secrets import SecretBox, SecretUnreadable, load_or_create_secret
from ..store.workspace_translators import StoredTranslator, WorkspaceTranslatorRepository
from .translation import ChatTranslator, translator_from_settings

__all__ = [
    "KEEP_KEY",
    "WorkspaceTranslators",
    "api_key_context",
    "translator_for_workspace",
]


class _Keep:
    """The PUT left ``api_key`` out: keep the stored one (if the endpoint stays the same)."""


KEEP_KEY = _Keep()


def api_key_context(workspace_id: UUID) -> str:
    """What a sealed key is bound to: it opens in this workspace's translator row only."""
    return f"{workspace_id}:translation:api_key"


class WorkspaceTranslators:
    """A workspace's translator settings; every call takes the workspace."""

    def __init__(
        self, repo: WorkspaceTranslatorRepository, box: SecretBox, *, allow_private: bool
    ) -> None:
        self.repo = repo
        self._box = box
        self._allow_private = allow_private

    async def get(self, workspace_id: UUID) -> StoredTranslator | None:
        return await self.repo.get(workspace_id)

    async def put(
        self, workspace_id: UUID, *, base_url: str, model: str, api_key: str | _Keep | None
    ) -> StoredTranslator:
        """Set the workspace's translator. ``api_key``: a key, None for none, or ``KEEP_KEY``
        to keep the stored one; a kept key stays only while ``base_url`` does, so changing
        the endpoint can never send the old key to a new host.

        Raises:
            ValidationFailed: ``base_url`` is not an absolute http(s) URL, or (unless the
                operator allows private addresses) its host is not a public address.
        """
        await _check_base_url(base_url, allow_private=self._allow_private)
        sealed: str | None
        if isinstance(api_key, _Keep):
            before = await self.repo.get(workspace_id)
            kept = before is not None and before.base_url == base_url
            sealed = before.api_key_sealed if kept and before is not None else None
        elif api_key is None:
            sealed = None
        else:
            sealed = self._box.seal(api_key, context=api_key_context(workspace_id))
        return await self.repo.put(
            workspace_id, base_url=base_url, model=model, api_key_sealed=sealed
        )

    async def delete(self, workspace_id: UUID) -> bool:
        return await self.repo.delete(workspace_id)

    async def translator(self, workspace_id: UUID, settings: Settings) -> ChatTranslator | None:
        """The translator a dub of this workspace uses now: its own, else the server's.

        Raises:
            ValidationFailed: the workspace's endpoint no longer passes the address rule, or
                its key does not open with this server's secret (set it again).
        """
        stored = await self.repo.get(workspace_id)
        if stored is None:
            return translator_from_settings(settings)
        await _check_base_url(stored.base_url, allow_private=self._allow_private)
        api_key = None
        if stored.api_key_sealed is not None:
            try:
                api_key = self._box.open(
                    stored.api_key_sealed, context=api_key_context(workspace_id)
                )
            except SecretUnreadable:
                raise ValidationFailed(
                    "the workspace translator's api_key cannot be read with this server's "
                    "secret: set it again (PUT /v1/workspaces/{workspace_id}/translation)",
                    details={"field": "api_key"},
                ) from None
        return ChatTranslator(stored.base_url, stored.model, api_key)


async def _check_base_url(base_url: str, *, allow_private: bool) -> None:
    try:
        await check_url(base_url, allow_private=allow_private)
    except ValidationFailed as exc:
        # check_url speaks of webhooks' "url"; here the field is base_url.
        message = exc.message.removeprefix("url ").replace(
            "webhooks go to public addresses only", "translators must be on public addresses"
        )
        raise ValidationFailed(
            f"base_url {message}",
            details={"fields": [{"field": "base_url", "message": message}]},
        ) from None


async def translator_for_workspace(
    pool: db.Pool, settings: Settings, workspace_id: UUID
) -> ChatTranslator | None:
    """``WorkspaceTranslators.translator`` for a process that holds only the pool and the
    settings (a job): the server's secret read as the server reads it."""
    secret = settings.secret_key
    if secret is None:
        secret = await asyncio.to_thread(load_or_create_secret, settings.data_dir)
    translators = WorkspaceTranslators(
        WorkspaceTranslatorRepository(pool),
        SecretBox(secret),
        allow_private=settings.webhook_allow_private,
    )
    return await translators.translator(workspace_id, settings)
