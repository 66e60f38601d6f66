"""The OpenAPI 3.1 document, generated from the app's route table and the pydantic models.

Each mounted route is looked up in a declarative table (``server/openapi_routes.py``): summary,
tag, who may call it, the request body and query models, the responses by status. A route's
schema is the JSON schema of the very model its handler validates with, so the document and
the validation cannot drift; a mounted route without an entry is refused by
``undescribed_routes`` (and so by the test that calls it).

Errors on our own routes all share one ``Error`` schema; the ElevenLabs- and OpenAI-compatible
routes answer in their providers' shapes as well as ours, so theirs is looser. WebSocket routes
are documented as a ``GET`` answered with ``101 Switching Protocols`` and a description of the
protocol spoken after the upgrade.

The table and the served copy live in ``server/`` (it may import every layer's models);
``python -m voicestream.server.api_docs`` prints the document and ``make openapi`` writes the
committed copy, ``rest/openapi.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .. import __version__

__all__ = [
    "AUDIO_BODY",
    "BINARY",
    "MULTIPART",
    "NO_CONTENT",
    "OBJECT_BODY",
    "OK",
    "STRING",
    "WORKSPACE_HEADER",
    "Auth",
    "Op",
    "Resp",
    "audio",
    "build_document",
    "document_json",
    "mounted_operations",
    "ok",
    "undescribed_routes",
    "websocket",
]

Auth = Literal["key", "public", "optional", "user"]
JSON: Final = "application/json"
REF: Final = "#/components/schemas/{model}"

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "Every 4xx/5xx of the native API: a stable code, a message for people, "
    "and sometimes details (such as the fields that failed validation).",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}
# OpenAI's clients read {"error": {"message", "type", "param", "code"}}, ElevenLabs' mostly
# {"detail": …}; a refusal before the route (a bad key, a rate limit) still comes in ours.
COMPAT_ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "An error in ours or the emulated provider's shape: an `error` object, "
    "or ElevenLabs' `detail`.",
    "anyOf": [{"required": ["error"]}, {"required": ["detail"]}],
}

SECURITY_SCHEMES: Final[dict[str, Any]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`vs_…`) or a signed-in user's access token (a JWT from "
        "`POST /v1/auth/login`); a user acts in the workspace named by `X-Workspace-Id`, "
        "else in their oldest membership.",
    },
    "xiApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "xi-api-key",
        "description": "An API key, in the header the ElevenLabs SDKs send.",
    },
}
# A signed-in user acts in the workspace this names (an id), else in their oldest membership;
# the auth middleware reads it (an API key belongs to one workspace and ignores it).
WORKSPACE_HEADER: Final = "X-Workspace-Id"
_WORKSPACE_PARAM: Final[dict[str, Any]] = {
    "name": WORKSPACE_HEADER,
    "in": "header",
    "required": False,
    "description": "With a user's access token: the workspace to act in (an id from "
    "`GET /v1/auth/me`); without it, the oldest membership. Ignored with an API key.",
    "schema": {"type": "string", "format": "uuid"},
}
_KEYED: Final[list[dict[str, list[str]]]] = [{"bearer": []}, {"xiApiKey": []}]
_SECURITY: Final[dict[Auth, list[dict[str, list[str]]]]] = {
    "key": _KEYED,
    "user": [{"bearer": []}],
    "public": [],
    # No credential is a valid choice (a ticket, a public agent, a carrier's signature).
    "optional": [*_KEYED, {}],
}


@dataclass(frozen=True)
class Resp:
    """One documented response: a model, a raw schema, or no body (``media=None``)."""

    description: str
    model: type[BaseModel] | None = None
    schema: Mapping[str, Any] | None = None
    media: str | None = JSON
    any_of: tuple[type[BaseModel], ...] = ()  # one of several models
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> description


@dataclass(frozen=True)
class Op:
    """What the document says about one route (method + path)."""

    summary: str
    tag: str
    auth: Auth = "key"
    description: str = ""
    body: type[BaseModel] | None = None  # a JSON body validated with this model
    body_media: Mapping[str, Mapping[str, Any]] | None = None  # other media types -> schema
    query: type[BaseModel] | None = None  # the query string validated with this model
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # other query params
    responses: Mapping[int, Resp] = field(default_factory=dict)
    websocket: bool = False
    compat: bool = False  # an ElevenLabs/OpenAI drop-in: its errors are documented loosely


# Shorthands for the route tables (server/openapi_routes.py, openapi_compat_routes.py).
STRING: Final = {"type": "string"}
BINARY: Final = {"type": "string", "contentMediaType": "application/octet-stream"}
AUDIO_BODY: Final[Mapping[str, Mapping[str, Any]]] = {"audio/*": {}, "application/octet-stream": {}}
OBJECT_BODY: Final = {"application/json": {"type": "object"}}
MULTIPART: Final = {"multipart/form-data": {"type": "object"}}

NO_CONTENT: Final = Resp("No content.", media=None)
OK: Final = Resp("OK.")


def audio(description: str = "Audio, streamed as it is synthesized.") -> Resp:
    return Resp(description, media="audio/*", schema=BINARY)


def ok(
    model: type[BaseModel] | None = None, status: int = 200, description: str = "OK."
) -> Mapping[int, Resp]:
    return {status: Resp(description, model=model)}


def websocket(
    summary: str, tag: str, protocol: str, *, auth: Auth = "key", compat: bool = False
) -> Op:
    """A WebSocket route: a GET answered with 101, and the protocol in words."""
    return Op(
        summary=summary,
        tag=tag,
        auth=auth,
        websocket=True,
        compat=compat,
        description=f"A WebSocket (send `Upgrade: websocket`). {protocol}",
    )


def mounted_operations(app: web.Application) -> list[tuple[str, str]]:
    """(METHOD, path) of every route, without the HEAD aiohttp adds beside each GET."""
    seen: dict[tuple[str, str], None] = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        seen[(route.method, resource.canonical)] = None
    return [
        (method, path)
        for method, path in seen
        if not (method == "HEAD" and ("GET", path) in seen) and method != "*"
    ]


def undescribed_routes(app: web.Application, table: Mapping[tuple[str, str], Op]) -> list[str]:
    return [f"{m} {p}" for m, p in mounted_operations(app) if (m, p) not in table]


_UNDESCRIBED: Final = Op(
    "Not described yet",
    "undescribed",
    description="This route has no entry in server/openapi_routes.py (a test refuses that).",
)


def build_document(app: web.Application, table: Mapping[tuple[str, str], Op]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes mounted on ``app``. A route without an entry in
    ``table`` is listed as undescribed rather than refused: the server must still start, and
    ``undescribed_routes`` (in a test) is what keeps the table complete."""
    operations = mounted_operations(app)
    ops = {key: table.get(key, _UNDESCRIBED) for key in operations}
    refs, components = _model_schemas(ops.values())
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), op in ops.items():
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, op, refs)
    tags = sorted({op.tag for op in ops.values()})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "voicestream",
            "version": __version__,
            "description": "Streaming text-to-speech, speech-to-text and voice agents. "
            "Native routes live under /v1; drop-in replacements for ElevenLabs' API under "
            "/elevenlabs and OpenAI's audio API under /openai.",
        },
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": {
                **components,
                "Error": ERROR_SCHEMA,
                "CompatError": COMPAT_ERROR_SCHEMA,
            },
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def document_json(document: Mapping[str, Any]) -> str:
    """The committed form: pretty, keys sorted, one trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


_ModelKey = tuple[type[BaseModel], JsonSchemaMode]


def _model_schemas(ops: Iterable[Op]) -> tuple[dict[_ModelKey, dict[str, Any]], dict[str, Any]]:
    # Requests in validation mode, responses in serialization mode: one call for all of them,
    # so pydantic names a model that differs between the two modes apart (…-Input/-Output).
    wanted: dict[_ModelKey, None] = {}
    for op in ops:
        if op.body is not None:  # a query model's fields become parameters instead
            wanted[(op.body, "validation")] = None
        for resp in op.responses.values():
            for model in (resp.model, *resp.any_of):
                if model is not None:
                    wanted[(model, "serialization")] = None
    if not wanted:
        return {}, {}
    schemas, top = models_json_schema(list(wanted), ref_template=REF)
    refs = {key: schemas[key] for key in wanted}
    return refs, dict(top.get("$defs", {}))


def _operation(method: str, path: str, op: Op, refs: Mapping[_ModelKey, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": _operation_id(method, path),
        "security": _SECURITY[op.auth],
    }
    if op.description:
        out["description"] = op.description
    path_params = _path_params(path)
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in path_params
    ]
    # Routes that take a key also take a user's access token; one under a workspace's own
    # path acts there whatever the header says.
    if op.auth in ("key", "optional") and "workspace_id" not in path_params:
        params.append(dict(_WORKSPACE_PARAM))
    if op.query is not None:
        params += _query_params(op.query)
    params += [
        {"name": name, "in": "query", "required": False, "schema": dict(schema)}
        for name, schema in op.params.items()
    ]
    if params:
        out["parameters"] = params
    content: dict[str, Any] = {}
    if op.body is not None:
        content[JSON] = {"schema": refs[(op.body, "validation")]}
    for media, schema in (op.body_media or {}).items():
        content.setdefault(media, {"schema": dict(schema)})
    if content:
        out["requestBody"] = {"required": True, "content": content}
    responses: dict[str, Any] = {}
    if op.websocket:
        responses["101"] = {"description": "Switching Protocols: the WebSocket is open."}
    for status, resp in sorted(op.responses.items()):
        responses[str(status)] = _response(resp, refs)
    if not responses:
        responses["200"] = {"description": "OK", "content": {JSON: {"schema": {"type": "object"}}}}
    error = "CompatError" if op.compat else "Error"
    responses["default"] = {
        "description": "An error (4xx: the request; 5xx: the server or a service it needs).",
        "content": {JSON: {"schema": {"$ref": REF.format(model=error)}}},
    }
    out["responses"] = responses
    return out


def _response(resp: Resp, refs: Mapping[_ModelKey, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": resp.description}
    if resp.media is not None:
        if resp.model is not None:
            schema: Mapping[str, Any] = refs[(resp.model, "serialization")]
        elif resp.any_of:
            schema = {"anyOf": [refs[(model, "serialization")] for model in resp.any_of]}
        elif resp.schema is not None:
            schema = resp.schema
        else:
            schema = {"type": "object"} if resp.media == JSON else {}
        out["content"] = {resp.media: {"schema": dict(schema)}}
    if resp.headers:
        out["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in resp.headers.items()
        }
    return out


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": _not_null(prop)}
        for name, prop in schema.get("properties", {}).items()
    ]


def _not_null(prop: Mapping[str, Any]) -> dict[str, Any]:
    # A query string cannot carry a JSON null: an optional parameter is one left out.
    out = {k: v for k, v in prop.items() if not (k == "default" and v is None)}
    branches = [b for b in out.pop("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        out.update(branches[0])
    elif branches:
        out["anyOf"] = branches
    out.pop("title", None)
    return out


def _operation_id(method: str, path: str) -> str:
    words = [part.strip("{}").replace("-", "_").replace(".", "_") for part in path.split("/")]
    return "_".join([method.lower(), *(w for w in words if w)])
