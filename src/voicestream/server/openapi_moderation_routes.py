"""The OpenAPI entries of ``/v1/admin/moderation`` (rest/moderation.py), merged into
``OPERATIONS``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..rest.moderation import (
    ModerationItemModel,
    ModerationListQuery,
    ModerationPageModel,
    ModerationPolicyModel,
)
from ..rest.openapi import Op, ok

__all__ = ["MODERATION_OPERATIONS"]

_TAG: Final = "moderation"
_DECIDE: Final = (
    "Pending items only (deciding again the same way is a no-op); the decision is audited. "
    "An approved text is spoken from then on in this workspace; a rejected one is refused "
    "as content_blocked."
)

MODERATION_OPERATIONS: Final[Mapping[tuple[str, str], Op]] = {
    ("GET", "/v1/admin/moderation"): Op(
        "The workspace's moderation review queue, newest first",
        _TAG,
        description="Filtered by `status` (a comma list of pending, approved, rejected).",
        query=ModerationListQuery,
        responses=ok(ModerationPageModel),
    ),
    ("GET", "/v1/admin/moderation/policy"): Op(
        "The workspace's content policy", _TAG, responses=ok(ModerationPolicyModel)
    ),
    ("PUT", "/v1/admin/moderation/policy"): Op(
        "Replace the workspace's content policy",
        _TAG,
        description="Block and review terms, the moderation endpoint's categories and "
        "thresholds, and whether an endpoint outage lets text through. Audited.",
        body=ModerationPolicyModel,
        responses=ok(ModerationPolicyModel),
    ),
    ("POST", "/v1/admin/moderation/{item_id}/approve"): Op(
        "Approve a held text", _TAG, description=_DECIDE, responses=ok(ModerationItemModel)
    ),
    ("POST", "/v1/admin/moderation/{item_id}/reject"): Op(
        "Reject a held text", _TAG, description=_DECIDE, responses=ok(ModerationItemModel)
    ),
}
