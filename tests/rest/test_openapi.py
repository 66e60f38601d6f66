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
    params = {p["name"]: p for p in document["paths"]["/v1/usage"]["get"]["parameters"]}
    assert set(params) == set(UsageQuery.model_fields)
    assert params["group_by"]["schema"]["enum"] == ["key", "day"]
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
