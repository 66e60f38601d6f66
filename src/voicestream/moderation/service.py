"""A workspace's content policy applied to text before it is spoken, and its review queue.

A text is checked in this order, and the first verdict that is not "allow" stands:

1. the server's block list (``VOICESTREAM_MODERATION_BLOCK_LIST``) and the workspace's
   ``block_terms``: refused (``content_blocked``);
2. the workspace's ``review_terms``: borderline;
3. the moderation endpoint, when one is configured: a category score at or over
   ``block_threshold`` is refused, one at or over ``review_threshold`` is borderline
   (``categories`` limits which categories count). When the endpoint fails or its circuit is
   open, the workspace's ``fail_open`` (else the server's) says whether the text passes on the
   block lists alone or is refused with 503 ``dependency_unavailable``: fail-closed is the
   default, so nothing unchecked is ever spoken.

A borderline text is held: it is queued for a person (once per distinct text) and refused
with ``content_under_review`` until an admin decides. Approved, that exact text (by the hash
of its normalized form) passes from then on in that workspace; rejected, it is refused as
blocked. Refused rather than let through while pending, because audio once spoken cannot be
taken back. An approval never overrides a block list: it answers the borderline verdict only.

Agent replies go through ``agent_screen_for``: a refused reply is replaced by a neutral
refusal, so nothing of it is spoken and the conversation goes on.

Errors and logs name the category and the item, never the text.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, Literal
from uuid import UUID

import openai

from ..config import Settings
from ..engines.tts_stream import TextScreen
from ..errors import (
    ContentBlocked,
    ContentUnderReview,
    DependencyUnavailable,
    NotFound,
    ServiceUnavailable,
)
from ..store import db
from ..store.moderation import (
    DEFAULT_POLICY,
    ItemStatus,
    ModerationItem,
    ModerationRepository,
    StoredPolicy,
)
from .remote import RemoteModerator
from .terms import TermList, normalize

__all__ = ["AGENT_REFUSAL", "Moderator", "Source", "open_moderator"]

log = logging.getLogger(__name__)

Source = Literal["tts", "agent"]
AGENT_REFUSAL: Final = "I'm sorry, I can't say that."
# A policy change reaches other server processes within this many seconds.
_POLICY_TTL_S = 2.0


@dataclass(frozen=True, slots=True)
class _Compiled:
    stored: StoredPolicy
    block: TermList
    review: TermList


@dataclass(frozen=True, slots=True)
class _Verdict:
    outcome: Literal["block", "review"]
    category: str
    source: str  # what decided: a block list, the review list, the endpoint
    score: float | None = None


_DEFAULT: Final = _Compiled(DEFAULT_POLICY, TermList(()), TermList(()))


def text_hash(normalized: str) -> str:
    return hashlib.sha256(normalized.encode()).hexdigest()


class Moderator:
    def __init__(self, repo: ModerationRepository, settings: Settings) -> None:
        self.repo = repo
        self._server_terms = TermList(settings.moderation_block_list.split(","))
        self._fail_open = settings.moderation_fail_open
        self._remote = (
            RemoteModerator(
                settings.moderation_url, settings.moderation_key, settings.moderation_model
            )
            if settings.moderation_url
            else None
        )
        self._policies: dict[UUID, tuple[float, _Compiled]] = {}

    async def close(self) -> None:
        if self._remote is not None:
            await self._remote.close()

    # -- screens for TTSStream ----------------------------------------------------------

    def screen_for(self, workspace_id: UUID | None) -> TextScreen:
        """Refuses (raises) what the workspace's policy does not allow."""

        async def screen(text: str) -> str:
            await self.check(workspace_id, text, source="tts")
            return text

        return screen

    def agent_screen_for(self, workspace_id: UUID | None) -> TextScreen:
        """An agent's reply: what may not be said becomes ``AGENT_REFUSAL``. So does one that
        cannot be checked (fail-closed and the endpoint down)."""

        async def screen(text: str) -> str:
            try:
                await self.check(workspace_id, text, source="agent")
            except (ContentBlocked, DependencyUnavailable):
                return AGENT_REFUSAL
            return text

        return screen

    # -- the check --------------------------------------------------------------------------

    async def check(self, workspace_id: UUID | None, text: str, *, source: Source) -> None:
        """Raises ContentBlocked, ContentUnderReview or DependencyUnavailable.

        ``workspace_id`` None: speech nobody's workspace answers for yet (a socket whose key
        has not arrived): the server's rules only, and borderline counts as blocked, as
        there is no queue to hold it in."""
        normalized = normalize(text)
        if not normalized:
            return
        policy = await self._policy(workspace_id)
        verdict = await self._verdict(policy, normalized)
        if verdict is None:
            return
        digest = text_hash(normalized)
        item = None if workspace_id is None else await self.repo.find(workspace_id, digest)
        if verdict.outcome == "review" and workspace_id is not None:
            if item is not None and item.status == "approved":
                return
            if item is None or item.status == "pending":
                item, new = await self.repo.hold(
                    workspace_id,
                    text_sha256=digest,
                    text=text,
                    source=source,
                    category=verdict.category,
                    score=verdict.score,
                )
                if new:
                    log.info(
                        "moderation: workspace %s: item %s held for review (%s, %s)",
                        workspace_id,
                        item.id,
                        verdict.category,
                        verdict.source,
                    )
            if item.status == "pending":
                raise ContentUnderReview(
                    f"the text is held for review (category {verdict.category}); it can be "
                    "spoken once a workspace admin approves it",
                    details={"category": verdict.category, "item_id": str(item.id)},
                )
        details: dict[str, object] = {"category": verdict.category, "matched_by": verdict.source}
        if item is not None and item.status == "rejected":
            details["item_id"] = str(item.id)
        log.info(
            "moderation: workspace %s: text %s refused (%s, %s)",
            workspace_id,
            digest[:12],
            verdict.category,
            verdict.source,
        )
        raise ContentBlocked(
            f"the text is not allowed by the content policy (category {verdict.category})",
            details=details,
        )

    async def _verdict(self, policy: _Compiled, normalized: str) -> _Verdict | None:
        if self._server_terms.first_match(normalized) is not None:
            return _Verdict("block", "block_list", "server_block_list")
        if policy.block.first_match(normalized) is not None:
            return _Verdict("block", "block_list", "workspace_block_list")
        if policy.review.first_match(normalized) is not None:
            return _Verdict("review", "review_list", "workspace_review_list")
        if self._remote is None:
            return None
        stored = policy.stored
        try:
            remote = await self._remote.check(normalized)
        except (openai.OpenAIError, DependencyUnavailable) as exc:
            fail_open = self._fail_open if stored.fail_open is None else stored.fail_open
            log.warning(
                "moderation endpoint failed (%s); %s",
                type(exc).__name__,
                "text allowed on the block lists (fail open)" if fail_open else "text refused",
            )
            if fail_open:
                return None
            if isinstance(exc, DependencyUnavailable):
                raise
            raise DependencyUnavailable(
                "moderation", 2, message="the moderation service is unavailable; retry shortly"
            ) from None
        counted = {
            category: score
            for category, score in remote.scores.items()
            if not stored.categories or category in stored.categories
        }
        if not counted:
            return None
        category, score = max(counted.items(), key=lambda pair: pair[1])
        if score >= stored.block_threshold:
            return _Verdict("block", category, "moderation_endpoint", score)
        if score >= stored.review_threshold:
            return _Verdict("review", category, "moderation_endpoint", score)
        return None

    # -- policy and queue -----------------------------------------------------------------

    async def _policy(self, workspace_id: UUID | None) -> _Compiled:
        if workspace_id is None:
            return _DEFAULT
        cached = self._policies.get(workspace_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < _POLICY_TTL_S:
            return cached[1]
        try:
            stored = await self.repo.policy(workspace_id)
        except ServiceUnavailable:
            # The database is down: speech goes on (conversations ride out outages) under the
            # last policy read, else the server's own rules, rather than stopping every voice.
            log.warning(
                "moderation: workspace %s: policy unreadable; using the last known", workspace_id
            )
            return cached[1] if cached is not None else _DEFAULT
        compiled = _Compiled(stored, TermList(stored.block_terms), TermList(stored.review_terms))
        if len(self._policies) > 10_000:
            self._policies.clear()  # bounded: a cache, not a registry of every workspace
        self._policies[workspace_id] = (now, compiled)
        return compiled

    async def policy(self, workspace_id: UUID) -> StoredPolicy:
        return await self.repo.policy(workspace_id)

    async def set_policy(self, workspace_id: UUID, policy: StoredPolicy) -> StoredPolicy:
        stored = await self.repo.put_policy(workspace_id, policy)
        self._policies.pop(workspace_id, None)
        return stored

    async def decide(
        self, workspace_id: UUID, item_id: UUID, status: ItemStatus, decided_by: str
    ) -> ModerationItem:
        item = await self.repo.decide(workspace_id, item_id, status, decided_by)
        if item is None:
            raise NotFound("no such moderation item")
        return item


@asynccontextmanager
async def open_moderator(pool: db.Pool, settings: Settings) -> AsyncIterator[Moderator]:
    """A moderator for a process's lifetime (a worker's; the server's is ``rest/moderation``)."""
    moderator = Moderator(ModerationRepository(pool), settings)
    try:
        yield moderator
    finally:
        await moderator.close()
