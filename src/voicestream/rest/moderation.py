"""``/v1/admin/moderation``: the workspace's content policy and its review queue.

A thin shell over ``moderation/service.py``. ``GET``/``PUT /v1/admin/moderation/policy`` read
and replace the policy (block and review terms, the endpoint's categories and thresholds, and
whether an endpoint outage lets text through); ``GET /v1/admin/moderation`` lists the queue,
newest first, filtered by ``status`` (comma list) and paged by ``cursor``; ``…/{item_id}/approve``
and ``…/reject`` decide an item. Each change is audited. An approved text passes from then on,
so the request that was held succeeds when retried.

Also here: the app keys the server wires moderation through (``MODERATOR``, and
``SPEAKING_WORKSPACE`` for sockets whose key arrives after the upgrade).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Final
from uuid import UUID

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from ..errors import Conflict, NotFound
from ..identity.audit_trail import audit
from ..identity.request_principal import principal_of
from ..moderation.service import Moderator, open_moderator
from ..store.moderation import (
    ITEM_STATUSES,
    ItemStatus,
    ModerationItem,
    StoredPolicy,
)
from .bodies import read_model, read_query
from .resources import POOL, SETTINGS

__all__ = [
    "MODERATOR",
    "SPEAKING_WORKSPACE",
    "ModerationItemModel",
    "ModerationListQuery",
    "ModerationPageModel",
    "ModerationPolicyModel",
    "moderation_admin_routes",
    "moderation_runtime",
]

MODERATOR: web.AppKey[Moderator] = web.AppKey("voicestream_moderator", Moderator)
# The workspace a socket speaks for once a key sent after the upgrade names it
# (``transports/elevenlabs_sockets.SocketAuth``); header keys are the principal's.
SPEAKING_WORKSPACE: web.RequestKey[UUID] = web.RequestKey("voicestream_speaking_workspace", UUID)
MAX_PAGE_SIZE: Final = 100
_MAX_TERMS: Final = 1000

Term = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Category = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]


async def moderation_runtime(app: web.Application) -> AsyncIterator[None]:
    """``app[MODERATOR]``: after the runtime (the pool), before the jobs (their screens)."""
    async with open_moderator(app[POOL], app[SETTINGS]) as moderator:
        app[MODERATOR] = moderator
        yield


class ModerationPolicyModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    block_terms: list[Term] = Field(
        default_factory=list,
        max_length=_MAX_TERMS,
        description="Words and phrases refused (whole words; case and accents ignored).",
    )
    review_terms: list[Term] = Field(
        default_factory=list,
        max_length=_MAX_TERMS,
        description="Words and phrases that send a text to the review queue.",
    )
    categories: list[Category] = Field(
        default_factory=list,
        max_length=100,
        description="The moderation endpoint's categories that count; empty: all.",
    )
    review_threshold: float = Field(0.5, ge=0, le=1)
    block_threshold: float = Field(0.8, ge=0, le=1)
    fail_open: bool | None = Field(
        None,
        description="When the moderation endpoint is down: true lets text through on the "
        "block lists, false refuses it (503); null: the server's setting.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> ModerationPolicyModel:
        if self.block_threshold < self.review_threshold:
            raise ValueError("block_threshold must be at least review_threshold")
        return self

    @classmethod
    def of(cls, stored: StoredPolicy) -> ModerationPolicyModel:
        return cls(
            block_terms=list(stored.block_terms),
            review_terms=list(stored.review_terms),
            categories=list(stored.categories),
            review_threshold=stored.review_threshold,
            block_threshold=stored.block_threshold,
            fail_open=stored.fail_open,
        )

    def stored(self) -> StoredPolicy:
        return StoredPolicy(
            tuple(self.block_terms),
            tuple(self.review_terms),
            tuple(self.categories),
            self.review_threshold,
            self.block_threshold,
            self.fail_open,
            None,
        )


class ModerationItemModel(BaseModel):
    id: UUID
    status: ItemStatus
    text: str  # the reviewer has to read it to decide
    source: str  # tts | agent
    category: str
    score: float | None
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None

    @classmethod
    def of(cls, item: ModerationItem) -> ModerationItemModel:
        return cls(
            id=item.id,
            status=item.status,
            text=item.text,
            source=item.source,
            category=item.category,
            score=item.score,
            created_at=item.created_at,
            decided_at=item.decided_at,
            decided_by=item.decided_by,
        )


class ModerationPageModel(BaseModel):
    data: list[ModerationItemModel]
    next_cursor: str | None  # None on the last page


class ModerationListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    cursor: UUID | None = None
    status: Annotated[str, StringConstraints(max_length=100)] | None = None  # a,b

    @field_validator("status")
    @classmethod
    def _statuses(cls, v: str | None) -> str | None:
        for name in _split(v):
            if name not in ITEM_STATUSES:
                raise ValueError(f"{name!r} is not one of {', '.join(ITEM_STATUSES)}")
        return v


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _json(body: BaseModel) -> web.Response:
    return web.json_response(text=body.model_dump_json(), headers={"Cache-Control": "no-store"})


async def get_policy(request: web.Request) -> web.Response:
    workspace_id = principal_of(request).workspace_id
    stored = await request.config_dict[MODERATOR].policy(workspace_id)
    return _json(ModerationPolicyModel.of(stored))


async def put_policy(request: web.Request) -> web.Response:
    workspace_id = principal_of(request).workspace_id
    body = await read_model(request, ModerationPolicyModel)
    stored = await request.config_dict[MODERATOR].set_policy(workspace_id, body.stored())
    # Counts, not the terms: the audit log is read more widely than the policy.
    await audit(
        request,
        "moderation.policy_changed",
        "workspace",
        workspace_id,
        details={
            "block_terms": len(stored.block_terms),
            "review_terms": len(stored.review_terms),
            "categories": ",".join(stored.categories),
            "review_threshold": str(stored.review_threshold),
            "block_threshold": str(stored.block_threshold),
            "fail_open": str(stored.fail_open).lower(),
        },
    )
    return _json(ModerationPolicyModel.of(stored))


async def list_items(request: web.Request) -> web.Response:
    workspace_id = principal_of(request).workspace_id
    query = read_query(request, ModerationListQuery)
    statuses = tuple(s for s in ITEM_STATUSES if s in _split(query.status))
    items = await request.config_dict[MODERATOR].repo.page(
        workspace_id, statuses=statuses, limit=query.limit + 1, after=query.cursor
    )
    more = len(items) > query.limit
    items = items[: query.limit]
    return _json(
        ModerationPageModel(
            data=[ModerationItemModel.of(item) for item in items],
            next_cursor=str(items[-1].id) if more else None,
        )
    )


def _item_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["item_id"])
    except ValueError:
        raise NotFound("no such moderation item") from None


async def _decide(request: web.Request, status: ItemStatus) -> web.Response:
    principal = principal_of(request)
    item_id = _item_id(request)
    moderator = request.config_dict[MODERATOR]
    current = await moderator.repo.get(principal.workspace_id, item_id)
    if current is None:
        raise NotFound("no such moderation item")
    if current.status != "pending" and current.status != status:
        raise Conflict(
            f"the item is already {current.status}",
            details={"status": current.status},
        )
    who = str(principal.user_id or principal.key_id or "")
    item = await moderator.decide(principal.workspace_id, item_id, status, who)
    action = "moderation.item_approved" if status == "approved" else "moderation.item_rejected"
    await audit(request, action, "moderation_item", item.id, details={"category": item.category})
    return _json(ModerationItemModel.of(item))


async def approve_item(request: web.Request) -> web.Response:
    return await _decide(request, "approved")


async def reject_item(request: web.Request) -> web.Response:
    return await _decide(request, "rejected")


def moderation_admin_routes() -> list[web.RouteDef]:
    """For the admin sub-app (paths relative to ``/v1/admin``)."""
    return [
        web.get("/moderation", list_items, allow_head=False),
        web.get("/moderation/policy", get_policy, allow_head=False),
        web.put("/moderation/policy", put_policy),
        web.post("/moderation/{item_id}/approve", approve_item),
        web.post("/moderation/{item_id}/reject", reject_item),
    ]
