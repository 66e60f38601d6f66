"""The operator's key and the workspaces' credentials never cross, in the pure policy."""

from __future__ import annotations

import uuid

import pytest

from voicestream.errors import Forbidden
from voicestream.identity import policy
from voicestream.store.keys import NO_WORKSPACE, Principal, operator_principal

OWNER = Principal(uuid.uuid4(), uuid.uuid4(), "w", "owner")
OPERATOR = operator_principal(uuid.uuid4())


def test_an_operator_reaches_the_operator_routes_only() -> None:
    assert OPERATOR.workspace_id == NO_WORKSPACE and not OPERATOR.has_scope("tts")
    operator_rules = [rule for rule in policy.ROUTES.values() if rule.access == "operator"]
    assert {rule.route for rule in operator_rules} >= {
        "/v1/operator/workspaces",
        "/v1/operator/workspaces/{workspace_id}",
        "/v1/operator/usage",
    }
    for rule in policy.ROUTES.values():
        if rule.access == "operator":
            policy.check(OPERATOR, rule)
            with pytest.raises(Forbidden):
                policy.check(OWNER, rule)
        elif not rule.credential_free:
            with pytest.raises(Forbidden):
                policy.check(OPERATOR, rule)


def test_an_operator_route_names_any_workspace_not_the_callers() -> None:
    rule = policy.require_rule("GET", "/v1/operator/workspaces/{workspace_id}")
    assert rule.objects == ("any_workspace",)
    assert not set(rule.objects) & policy.TENANT_OBJECTS
