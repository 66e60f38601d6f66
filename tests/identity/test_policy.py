"""The policy table itself: what ``check`` says for each role and scope, read from the table."""

from __future__ import annotations

import uuid

import pytest

from voicestream.errors import Forbidden
from voicestream.identity import policy
from voicestream.store.keys import Principal, Role, Scope


def _key(role: Role, scopes: frozenset[Scope] | None = None) -> Principal:
    return Principal(uuid.uuid4(), uuid.uuid4(), "w", role, scopes=scopes)


def _rule(method: str, route: str) -> policy.Rule:
    return policy.require_rule(method, route)


def test_head_follows_get_and_an_unlisted_route_has_no_entry() -> None:
    assert policy.rule_for("HEAD", "/v1/agents") == policy.rule_for("GET", "/v1/agents")
    assert policy.rule_for("PUT", "/v1/agents") is None
    assert policy.missing_rules([("GET", "/v1/agents"), ("GET", "/v1/secret")]) == [
        "GET /v1/secret"
    ]
    with pytest.raises(LookupError, match="/v1/secret"):
        policy.require_rule("GET", "/v1/secret")


def test_entries_name_the_objects_of_their_path() -> None:
    rule = _rule("DELETE", "/v1/workspaces/{workspace_id}/members/{user_id}")
    assert rule.objects == ("workspace", "member") and rule.role == "admin"
    assert _rule("GET", "/elevenlabs/v1/voices/{voice_id}").objects == ("voice",)
    assert "voice" not in policy.TENANT_OBJECTS and "agent" in policy.TENANT_OBJECTS
    assert _rule("GET", "/v1/tts/stream").socket and _rule("GET", "/v1/tts/stream").acts


@pytest.mark.parametrize(
    ("role", "method", "route", "allowed"),
    [
        ("viewer", "GET", "/v1/agents/{agent_id}", True),
        ("viewer", "DELETE", "/v1/agents/{agent_id}", False),
        ("viewer", "POST", "/elevenlabs/v1/history/download", True),  # a POST that reads
        ("viewer", "GET", "/elevenlabs/v1/convai/conversation/get-signed-url", False),  # mints
        ("viewer", "GET", "/v1/stt/stream", False),  # every socket acts
        ("editor", "GET", "/v1/stt/stream", True),
        ("editor", "GET", "/v1/api-keys", False),  # admins' reads
        ("admin", "GET", "/v1/audit-logs", True),
        ("viewer", "GET", "/v1/workspaces/{workspace_id}/members", True),
        ("editor", "PATCH", "/v1/workspaces/{workspace_id}/members/{user_id}", False),
        ("owner", "DELETE", "/v1/workspaces/{workspace_id}/members/{user_id}", True),
    ],
)
def test_roles(role: Role, method: str, route: str, allowed: bool) -> None:
    rule = _rule(method, route)
    if allowed:
        policy.check(_key(role), rule)
        return
    with pytest.raises(Forbidden) as refused:
        policy.check(_key(role), rule)
    assert refused.value.details == {"role": role, "required": rule.role}


def test_a_limited_key_needs_the_routes_scope() -> None:
    tts_only = _key("owner", frozenset({"tts"}))
    policy.check(tts_only, _rule("POST", "/v1/tts"))
    policy.check(tts_only, _rule("GET", "/v1/voices"))  # describes the server: no scope
    with pytest.raises(Forbidden) as refused:
        policy.check(tts_only, _rule("POST", "/v1/stt"))
    assert refused.value.details == {"scope": "stt", "scopes": ["tts"]}
    assert policy.scope_of("/v1/stt") == "stt" and policy.scope_of("/v1/unknown") == "admin"


def test_a_viewer_is_told_it_is_read_only() -> None:
    with pytest.raises(Forbidden, match="read-only and may not open a socket"):
        policy.check(_key("viewer"), _rule("GET", "/v1/tts/stream"))
    with pytest.raises(Forbidden, match="needs the admin role or above; this role is editor"):
        policy.check(_key("editor"), _rule("GET", "/v1/audit-logs"))


def test_credential_free_routes() -> None:
    free = {(r.method, r.route) for r in policy.ROUTES.values() if r.credential_free}
    assert ("GET", "/healthz") in free and ("POST", "/v1/auth/login") in free
    assert ("GET", "/v1/workspaces") in free  # checks the person's token itself
    assert ("GET", "/v1/convai/stream") not in free  # key-optional: a key shown is checked
    assert policy.require_rule("GET", "/v1/convai/stream").access == "key_optional"
