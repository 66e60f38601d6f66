"""The OpenAPI document (issue 9 §7): every mounted route described, the committed copy current,
schemas taken from the models the handlers validate with, one error shape.

No server needed: the app is composed (not started) and its route table read.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
from aiohttp import web

from voicestream.config import load_settings
from voicestream.rest.agents import AgentCreateBody
from voicestream.rest.openapi import (
    REF,
    WORKSPACE_HEADER,
    build_document,
    document_json,
    mounted_operations,
    undescribed_routes,
)
from voicestream.rest.usage import UsageQuery
from voicestream.server.api_docs import render_docs_page
from voicestream.server.app import create_app
from voicestream.server.openapi_routes import OPERATIONS
from voicestream.transports.http_tts import TTSRequest

COMMITTED = resources.files("voicestream.rest") / "openapi.json"


@pytest.fixture(scope="module")
def app() -> web.Application:
    return create_app(load_settings({}))


@pytest.fixture(scope="module")
def document(app: web.Application) -> dict[str, Any]:
    return build_document(app, OPERATIONS)


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]


def test_every_mounted_route_is_described(app: web.Application) -> None:
    # A route mounted without an entry in server/openapi_routes.py lands here by name.
    assert undescribed_routes(app, OPERATIONS) == []


def test_no_entry_describes_a_route_that_is_not_mounted(app: web.Application) -> None:
    mounted = set(mounted_operations(app))
    assert sorted(key for key in OPERATIONS if key not in mounted) == []


def test_an_undescribed_route_is_named_and_still_documented() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/v1/new-thing", handler)
    assert undescribed_routes(app, OPERATIONS) == ["GET /v1/new-thing"]
    # The server still starts (the document lists it as undescribed); only the test refuses it.
    assert build_document(app, OPERATIONS)["paths"]["/v1/new-thing"]["get"]["tags"] == [
        "undescribed"
    ]


def test_the_committed_copy_is_current(document: dict[str, Any]) -> None:
    assert COMMITTED.read_text(encoding="utf-8") == document_json(document), (
        "src/voicestream/rest/openapi.json is stale: run `make openapi`"
    )


def test_it_is_openapi_3_1_with_both_credential_schemes(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", **_described(schemes)}
    assert schemes["xiApiKey"]["in"] == "header"
    assert schemes["xiApiKey"]["name"] == "xi-api-key"


def _described(schemes: dict[str, Any]) -> dict[str, Any]:
    return {"description": schemes["bearer"]["description"]}


def test_bodies_are_the_models_the_handlers_validate_with(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    tts = document["paths"]["/v1/tts"]["post"]["requestBody"]["content"]["application/json"]
    assert tts["schema"] == {"$ref": "#/components/schemas/TTSRequest"}
    assert schemas["TTSRequest"] == TTSRequest.model_json_schema(ref_template=REF)
    agent = document["paths"]["/v1/agents"]["post"]["requestBody"]["content"]
    assert agent["application/json"]["schema"] == {"$ref": "#/components/schemas/AgentCreateBody"}
    assert schemas["AgentCreateBody"] == _without_defs(
        AgentCreateBody.model_json_schema(ref_template=REF)
    )


def _without_defs(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "$defs"}


def test_query_models_become_parameters(document: dict[str, Any]) -> None:
    usage = document["paths"]["/v1/usage"]["get"]["parameters"]
    params = {p["name"]: p for p in usage if p["in"] == "query"}
    assert set(params) == set(UsageQuery.model_fields)
    assert {"key", "day"} <= set(params["group_by"]["schema"]["enum"])
    # A query string cannot carry null: optional parameters are left out, not nullable.
    assert params["since"]["schema"] == {"type": "string", "format": "date-time"}
    assert not params["since"]["required"]


def test_every_ref_resolves(document: dict[str, Any]) -> None:
    names = set(document["components"]["schemas"])
    refs = set(_refs(document))
    assert refs, "the document references no schema at all"
    assert {ref.removeprefix("#/components/schemas/") for ref in refs} <= names


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_native_errors_share_one_schema(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        error = op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"]
        compat = path.startswith(("/elevenlabs/", "/openai/"))
        expected = "CompatError" if compat else "Error"
        assert error == f"#/components/schemas/{expected}", f"{method} {path}"
    error = document["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]


def test_websockets_are_a_get_answered_with_101(document: dict[str, Any]) -> None:
    sockets = [(path, op) for method, path, op in _operations(document) if "101" in op["responses"]]
    assert {path for path, _ in sockets} >= {
        "/v1/tts/stream",
        "/v1/stt/stream",
        "/v1/convai/stream",
        "/openai/v1/realtime",
        "/elevenlabs/v1/text-to-speech/{voice_id}/stream-input",
    }
    for path, op in sockets:
        assert "WebSocket" in op["description"], path


def test_security_follows_the_auth_middleware(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert paths["/healthz"]["get"]["security"] == []
    assert paths["/openapi.json"]["get"]["security"] == []
    assert paths["/v1/auth/login"]["post"]["security"] == []
    assert paths["/v1/auth/me"]["get"]["security"] == [{"bearer": []}]
    assert paths["/v1/agents"]["get"]["security"] == [{"bearer": []}, {"xiApiKey": []}]
    # A conversation socket also opens with a ticket or a public agent: no credential at all.
    assert {} in paths["/v1/convai/stream"]["get"]["security"]


def test_the_docs_page_lists_every_operation_escaped(document: dict[str, Any]) -> None:
    page = render_docs_page(document)
    for method, path, _ in _operations(document):
        assert f">{method.lower()}</span><code>{path}</code>" in page
    assert "<script" not in page
    assert "http://" not in page and "https://" not in page  # nothing loads from elsewhere


# --- response models, secrets, the workspace header ----------------------------------------

# Request fields that carry a secret the client knows: a password, a code, a mailed token, a
# refresh token, an LLM key. Wherever one appears in a native request body it is writeOnly.
SECRET_FIELDS = frozenset(
    {"password", "token", "refresh_token", "code", "recovery_code", "mfa_token", "api_key"}
)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema.get("$ref"), str):
        name = schema["$ref"].removeprefix("#/components/schemas/")
        resolved: dict[str, Any] = document["components"]["schemas"][name]
        return resolved
    return schema


def _native(path: str) -> bool:
    return not path.startswith(("/elevenlabs/", "/openai/"))


def _properties(document: dict[str, Any], schema: dict[str, Any], seen: set[int]) -> list[Any]:
    """(name, property schema) of ``schema`` and every schema nested in it."""
    schema = _resolve(document, schema)
    if id(schema) in seen:
        return []
    seen.add(id(schema))
    found: list[Any] = []
    for name, prop in schema.get("properties", {}).items():
        found.append((name, prop))
        found += _properties(document, prop, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += _properties(document, schema[key], seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, []):
            found += _properties(document, branch, seen)
    return found


def test_secret_inputs_are_write_only_passwords(document: dict[str, Any]) -> None:
    checked: list[str] = []
    for method, path, op in _operations(document):
        content = op.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None or not _native(path):
            continue
        for name, prop in _properties(document, content["schema"], set()):
            if name in SECRET_FIELDS:
                checked.append(f"{method} {path} {name}")
                assert prop.get("writeOnly") is True, f"{method} {path}: {name} not writeOnly"
                assert prop.get("format") == "password", f"{method} {path}: {name}"
    # Sign-up, login, reset, refresh, MFA, invitations, agents' LLM keys: all of them seen.
    assert {c.rsplit(" ", 1)[1] for c in checked} == SECRET_FIELDS, checked
    assert "POST /v1/auth/login password" in checked
    assert "POST /v1/agents api_key" in checked


def test_nothing_a_response_carries_is_write_only(document: dict[str, Any]) -> None:
    # writeOnly in a response schema would tell clients the field never comes back.
    for method, path, op in _operations(document):
        for status, response in op["responses"].items():
            for media in response.get("content", {}).values():
                for name, prop in _properties(document, media.get("schema", {}), set()):
                    assert not prop.get("writeOnly"), f"{method} {path} {status}: {name}"


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("CreatedApiKey", "key"),
        ("RecoveryCodesResponse", "recovery_codes"),
        ("TotpEnrolmentResponse", "otpauth_uri"),
    ],
)
def test_one_time_secrets_say_they_are_shown_once(
    document: dict[str, Any], model: str, field: str
) -> None:
    prop = document["components"]["schemas"][model]["properties"][field]
    assert "Shown this once" in prop["description"]


def _header_names(op: dict[str, Any]) -> list[str]:
    return [p["name"] for p in op.get("parameters", []) if p["in"] == "header"]


def test_routes_that_take_a_user_session_document_the_workspace_header(
    document: dict[str, Any],
) -> None:
    with_header = []
    for method, path, op in _operations(document):
        takes_session = {"bearer": []} in op["security"] and {"xiApiKey": []} in op["security"]
        expected = takes_session and "{workspace_id}" not in path
        assert (WORKSPACE_HEADER in _header_names(op)) == expected, f"{method} {path}"
        if expected:
            with_header.append((method, path))
    assert ("GET", "/v1/agents") in with_header
    assert ("GET", "/v1/usage") in with_header
    paths = document["paths"]
    # The path names the workspace there; a person's own routes and public ones take none.
    assert _header_names(paths["/v1/workspaces/{workspace_id}/members"]["get"]) == []
    assert _header_names(paths["/v1/auth/me"]["get"]) == []
    assert _header_names(paths["/v1/auth/login"]["post"]) == []
    header = next(
        p for p in paths["/v1/agents"]["get"]["parameters"] if p["name"] == WORKSPACE_HEADER
    )
    assert header["schema"] == {"type": "string", "format": "uuid"} and not header["required"]


# The document itself answers JSON whose schema is OpenAPI 3.1's own, not a model of ours.
_NOT_A_MODEL = frozenset({("GET", "/openapi.json")})


def _native_routes(app: web.Application, document: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every native route that is not a socket, wherever its handler is."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method not in ("HEAD", "*")
        and _native(route.resource.canonical)
        and "101"
        not in document["paths"][route.resource.canonical][route.method.lower()]["responses"]
    }


def _model_with_properties(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    if "$ref" not in schema:
        return False
    resolved = _resolve(document, schema)
    if resolved.get("type") == "array":  # a bare JSON array on the wire (Vonage's NCCO)
        return _model_with_properties(document, resolved.get("items", {}))
    return bool(resolved.get("properties"))


def test_every_native_route_answers_a_model_with_properties(
    app: web.Application, document: dict[str, Any]
) -> None:
    routes = _native_routes(app, document) - _NOT_A_MODEL
    assert len(routes) >= 40, sorted(routes)
    # Handlers outside rest/ answer models too: transports, health, telephony.
    assert {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("POST", "/v1/stt"),
        ("POST", "/v1/convai/tickets"),
        ("POST", "/v1/convai/webrtc/offer"),
        ("PATCH", "/v1/convai/webrtc/offer"),
        ("GET", "/v1/telephony/vonage/answer"),
    } <= routes
    for method, path in sorted(routes):
        responses = document["paths"][path][method.lower()]["responses"]
        ok = {status: r for status, r in responses.items() if status.startswith("2")}
        assert ok, f"{method} {path} documents no 2xx answer"
        for status, response in ok.items():
            if status == "204" or "application/json" not in response.get("content", {}):
                continue  # no body, or audio, bytes, text
            schema = response["content"]["application/json"]["schema"]
            for branch in schema.get("anyOf", [schema]):
                assert _model_with_properties(document, branch), f"{method} {path} {status}"


def test_agent_answers_document_their_shape(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    created = document["paths"]["/v1/agents"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AgentDetail"
    }
    assert "documents" in schemas["AgentDetail"]["required"]
    llm = schemas["LLMSettingsModel"]["properties"]
    # The stored key never comes back; whether one is set, and a hint, do.
    assert "api_key" not in llm and {"api_key_set", "api_key_hint"} <= set(llm)
    session = document["paths"]["/v1/convai/sessions/{conversation_id}"]["get"]["responses"]
    assert session["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ConversationModel"
    }
