"""SCIM 2.0 (RFC 7644) at ``/scim/v2``, and the tokens and role mapping admins manage under
``/v1/admin/scim``.

The SCIM sub-app takes its own credential: a workspace's SCIM bearer token (``scim_token``
access in ``identity/policy.py``; the auth middleware lets it through and this sub-app's
middleware checks it), and answers every error as a SCIM Error (``status``, ``scimType``) with
``application/scim+json``. A thin shell over ``identity/scim_provisioning.py`` (the rules) and
``identity/scim_documents.py`` (the documents).
"""

from __future__ import annotations

import logging
from typing import Any, Final, Literal
from uuid import UUID

from aiohttp import web
from aiohttp.typedefs import Handler
from scim2_models import (
    Context,
    InvalidSyntaxException,
    InvalidValueException,
    NotFoundException,
    ResponseParameters,
    SCIMException,
    SearchRequest,
)

from ..errors import (
    AuthError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    VoiceStreamError,
)
from ..identity.audit_trail import audit
from ..identity.members import MEMBERS
from ..identity.scim_documents import (
    MAX_RESULTS,
    SCIM_CONTENT_TYPE,
    ResourceKind,
    apply_patch,
    error_body,
    filter_column,
    list_response,
    load,
    parse_filter,
    parse_group,
    parse_patch,
    parse_user,
    render,
    resource_types,
    schemas,
    service_provider_config,
)
from ..identity.scim_provisioning import ScimProvisioning
from ..protocols.json_messages import load_json
from ..store.audit import Actor
from ..store.scim_resources import FilterColumn, ScimGroupRow, ScimUserRow
from .resources import POOL

__all__ = ["SCIM_PREFIX", "scim_app", "scim_error_response", "scim_provisioning"]

log = logging.getLogger(__name__)

SCIM_PREFIX: Final = "/scim/v2"
_WORKSPACE: Final = web.RequestKey("voicestream_scim_workspace", UUID)
_ERROR_STATUS: Final[dict[type[VoiceStreamError], tuple[int, str | None]]] = {
    NotFound: (404, None),
    Conflict: (409, "uniqueness"),
    Forbidden: (403, None),
    AuthError: (401, None),
    PayloadTooLarge: (413, None),
}


def scim_provisioning(request: web.Request) -> ScimProvisioning:
    return ScimProvisioning.open(request.config_dict[POOL], request.config_dict[MEMBERS])


def _scim_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, content_type=SCIM_CONTENT_TYPE, headers=headers)


def _scim_error(status: int, detail: str, scim_type: str | None = None) -> web.Response:
    body: dict[str, Any] = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": str(status),
        "detail": detail,
    }
    if scim_type is not None:
        body["scimType"] = scim_type
    headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if status == 401 else None
    return _scim_json(body, status, headers)


def scim_error_response(exc: VoiceStreamError) -> web.Response:
    """A client error as SCIM's error document (RFC 7644 §3.12), for requests under
    ``SCIM_PREFIX``: from this sub-app, and from the server's checks that run before it (a NUL
    in the query, a body too slow)."""
    status, scim_type = exc.http_status, None
    for kind, (known_status, known_type) in _ERROR_STATUS.items():
        if isinstance(exc, kind):
            status, scim_type = known_status, known_type
            break
    if status == 400 or status == 422:
        status, scim_type = 400, "invalidValue"
    return _scim_error(status, exc.message, scim_type)


@web.middleware
async def _scim_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        workspace_id = await scim_provisioning(request).workspace_of(token) if token else None
        if workspace_id is None:
            return _scim_error(401, "a valid SCIM bearer token is required")
        request[_WORKSPACE] = workspace_id
        return await handler(request)
    except SCIMException as exc:
        return _scim_json(error_body(exc), exc.status)
    except VoiceStreamError as exc:
        if exc.http_status >= 500:
            raise  # the server's own trouble: the error middleware logs and answers it
        return scim_error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _scim_error(exc.status, exc.reason)


# --- reading requests ---------------------------------------------------------------------


async def _body(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("the request body is too large") from None
    try:
        return load_json(raw, "request body")
    except VoiceStreamError as exc:
        raise InvalidSyntaxException(detail=exc.message) from None


def _id(request: web.Request, name: str) -> UUID:
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise NotFoundException(detail="no such resource") from None


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}{SCIM_PREFIX}"


def _parameters(source: Any) -> ResponseParameters[Any] | None:
    attributes = source.get("attributes")
    excluded = source.get("excludedAttributes")
    if not attributes and not excluded:
        return None

    def split(value: Any) -> list[str] | None:
        if value is None:
            return None
        items = value if isinstance(value, list) else str(value).split(",")
        return [str(item).strip() for item in items if str(item).strip()]

    try:
        return ResponseParameters.model_validate(
            {"attributes": split(attributes), "excludedAttributes": split(excluded)}
        )
    except ValueError as exc:
        raise InvalidValueException(detail=f"bad attributes: {exc}") from None


def _int(source: Any, name: str, default: int) -> int:
    value = source.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidValueException(detail=f"{name} must be an integer") from None


# --- answers ------------------------------------------------------------------------------


def _user_body(
    request: web.Request,
    row: ScimUserRow,
    groups: list[tuple[UUID, str]] | None = None,
    parameters: ResponseParameters[Any] | None = None,
) -> dict[str, Any]:
    user: Any = load("User", row.document)
    if groups:
        user.groups = [
            {"value": str(g), "display": name, "$ref": f"{_base_url(request)}/Groups/{g}"}
            for g, name in groups
        ]
    return _rendered(request, "User", user, row, parameters)


def _rendered(
    request: web.Request,
    kind: Literal["User", "Group"],
    resource: Any,
    row: ScimUserRow | ScimGroupRow,
    parameters: ResponseParameters[Any] | None,
) -> dict[str, Any]:
    """A stored resource as its SCIM document, with its meta (location, dates, version)."""
    return render(
        kind,
        resource,
        resource_id=str(row.id),
        base_url=_base_url(request),
        created=row.created_at,
        modified=row.updated_at,
        version=row.version,
        parameters=parameters,
    )


def _group_body(
    request: web.Request, row: ScimGroupRow, parameters: ResponseParameters[Any] | None = None
) -> dict[str, Any]:
    group: Any = load("Group", row.document)
    # A User deleted since the group was written is no longer among its members.
    kept = [m for m in group.members or [] if _maybe_uuid(m.value) in row.member_ids]
    group.members = kept or None
    return _rendered(request, "Group", group, row, parameters)


def _maybe_uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


def _location(body: dict[str, Any]) -> dict[str, str]:
    meta = body.get("meta") or {}
    return {"Location": meta["location"]} if "location" in meta else {}


# --- discovery ----------------------------------------------------------------------------


async def get_service_provider_config(request: web.Request) -> web.Response:
    return _scim_json(service_provider_config(_base_url(request)))


async def get_resource_types(request: web.Request) -> web.Response:
    return _listed(resource_types(_base_url(request)))


async def get_resource_type(request: web.Request) -> web.Response:
    found = resource_types(_base_url(request))
    return _one_of(found, request.match_info["resource_type"], "resource type")


async def get_schemas(request: web.Request) -> web.Response:
    return _listed(schemas(_base_url(request)))


async def get_schema(request: web.Request) -> web.Response:
    return _one_of(schemas(_base_url(request)), request.match_info["schema_id"], "schema")


def _listed(found: list[dict[str, Any]]) -> web.Response:
    return _scim_json(list_response(found, total=len(found), start_index=1))


def _one_of(found: list[dict[str, Any]], ident: str, what: str) -> web.Response:
    for item in found:
        if item["id"] == ident:
            return _scim_json(item)
    raise NotFoundException(detail=f"no such {what}")


# --- Users and Groups ---------------------------------------------------------------------


async def _query(
    request: web.Request, kinds: tuple[ResourceKind, ...], source: Any
) -> web.Response:
    parameters = _parameters(source)
    start_index = max(1, _int(source, "startIndex", 1))
    count = min(MAX_RESULTS, max(0, _int(source, "count", MAX_RESULTS)))
    found: list[tuple[ResourceKind, dict[str, Any]]] = []
    for kind in kinds:
        found += [(kind, body) for body in await _found(request, kind, source, len(kinds) > 1)]
    page = found[start_index - 1 : start_index - 1 + count]
    bodies = [body if parameters is None else _reshaped(k, body, parameters) for k, body in page]
    return _scim_json(list_response(bodies, total=len(found), start_index=start_index))


async def _found(
    request: web.Request, kind: ResourceKind, source: Any, several: bool
) -> list[dict[str, Any]]:
    """Every resource of ``kind`` the filter matches; when ``several`` kinds are searched, a
    filter that names attributes this kind lacks matches none of it."""
    workspace_id = request[_WORKSPACE]
    parsed = None
    where: tuple[FilterColumn, str] | None = None
    if text := source.get("filter"):
        try:
            parsed = parse_filter(kind, str(text))
        except SCIMException:
            if several:
                return []
            raise
        column = filter_column(kind, parsed)
        if column is not None:
            where = column
            parsed = None  # answered exactly by SQL
    provisioning = scim_provisioning(request)
    bodies: list[dict[str, Any]]
    if kind == "User":
        users = await provisioning.resources.list_users(workspace_id, where)
        bodies = [_user_body(request, row) for row in users]
    else:
        groups = await provisioning.resources.list_groups(workspace_id, where)
        bodies = [_group_body(request, row) for row in groups]
    if parsed is not None:
        bodies = [b for b in bodies if parsed.match(load(kind, b), strict=False)]
    return bodies


def _reshaped(
    kind: ResourceKind, body: dict[str, Any], parameters: ResponseParameters[Any]
) -> dict[str, Any]:
    resource: Any = load(kind, body)
    reshaped: dict[str, Any] = resource.model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=parameters
    )
    return reshaped


async def list_users(request: web.Request) -> web.Response:
    return await _query(request, ("User",), request.query)


async def list_groups(request: web.Request) -> web.Response:
    return await _query(request, ("Group",), request.query)


async def _search_source(request: web.Request) -> dict[str, Any]:
    body = await _body(request)
    try:
        search: Any = SearchRequest.model_validate(body, scim_ctx=Context.SEARCH_REQUEST)
    except ValueError as exc:
        raise InvalidValueException(detail=f"not a SearchRequest: {exc}") from None
    source: dict[str, Any] = search.model_dump(scim_ctx=None, by_alias=True, exclude_none=True)
    for name in ("attributes", "excludedAttributes"):
        if name in source:
            source[name] = [str(item) for item in source[name]]
    if "filter" in source:
        source["filter"] = str(source["filter"])
    return source


async def search_users(request: web.Request) -> web.Response:
    return await _query(request, ("User",), await _search_source(request))


async def search_groups(request: web.Request) -> web.Response:
    return await _query(request, ("Group",), await _search_source(request))


async def search_all(request: web.Request) -> web.Response:
    return await _query(request, ("User", "Group"), await _search_source(request))


async def get_user(request: web.Request) -> web.Response:
    workspace_id, scim_id = request[_WORKSPACE], _id(request, "scim_user_id")
    provisioning = scim_provisioning(request)
    row = await provisioning.resources.get_user(workspace_id, scim_id)
    groups = await provisioning.resources.groups_of(workspace_id, scim_id)
    return _scim_json(_user_body(request, row, groups, _parameters(request.query)))


async def post_user(request: web.Request) -> web.Response:
    user = parse_user(await _body(request))
    row = await scim_provisioning(request).create_user(request[_WORKSPACE], user)
    await _audit(request, "scim.user_created", row.id, row.user_id)
    body = _user_body(request, row)
    return _scim_json(body, 201, _location(body))


async def put_user(request: web.Request) -> web.Response:
    workspace_id, scim_id = request[_WORKSPACE], _id(request, "scim_user_id")
    user = parse_user(await _body(request), replacing=True)
    row = await scim_provisioning(request).replace_user(workspace_id, scim_id, user)
    await _audit(request, "scim.user_replaced", row.id, row.user_id, active=row.active)
    return await _answer_user(request, row)


async def patch_user(request: web.Request) -> web.Response:
    workspace_id, scim_id = request[_WORKSPACE], _id(request, "scim_user_id")
    patch = parse_patch("User", await _body(request))
    provisioning = scim_provisioning(request)
    row = await provisioning.resources.get_user(workspace_id, scim_id)
    user: Any = load("User", row.document)
    if apply_patch(patch, user):
        user = parse_user(_writable(user), replacing=True)
        row = await provisioning.replace_user(workspace_id, scim_id, user)
        await _audit(request, "scim.user_patched", row.id, row.user_id, active=row.active)
    return await _answer_user(request, row)


async def _answer_user(request: web.Request, row: ScimUserRow) -> web.Response:
    groups = await scim_provisioning(request).resources.groups_of(row.workspace_id, row.id)
    return _scim_json(_user_body(request, row, groups, _parameters(request.query)))


async def delete_user(request: web.Request) -> web.Response:
    workspace_id, scim_id = request[_WORKSPACE], _id(request, "scim_user_id")
    provisioning = scim_provisioning(request)
    row = await provisioning.resources.get_user(workspace_id, scim_id)
    await provisioning.delete_user(workspace_id, scim_id)
    await _audit(request, "scim.user_deleted", scim_id, row.user_id)
    return web.Response(status=204)


async def get_group(request: web.Request) -> web.Response:
    workspace_id, group_id = request[_WORKSPACE], _id(request, "scim_group_id")
    row = await scim_provisioning(request).resources.get_group(workspace_id, group_id)
    return _scim_json(_group_body(request, row, _parameters(request.query)))


async def post_group(request: web.Request) -> web.Response:
    group = parse_group(await _body(request))
    row = await scim_provisioning(request).create_group(request[_WORKSPACE], group)
    await _audit(request, "scim.group_created", row.id)
    body = _group_body(request, row)
    return _scim_json(body, 201, _location(body))


async def put_group(request: web.Request) -> web.Response:
    workspace_id, group_id = request[_WORKSPACE], _id(request, "scim_group_id")
    group = parse_group(await _body(request), replacing=True)
    row = await scim_provisioning(request).replace_group(workspace_id, group_id, group)
    await _audit(request, "scim.group_replaced", row.id)
    return _scim_json(_group_body(request, row, _parameters(request.query)))


async def patch_group(request: web.Request) -> web.Response:
    workspace_id, group_id = request[_WORKSPACE], _id(request, "scim_group_id")
    patch = parse_patch("Group", await _body(request))
    provisioning = scim_provisioning(request)
    row = await provisioning.resources.get_group(workspace_id, group_id)
    group: Any = load("Group", _group_body(request, row))
    if apply_patch(patch, group):
        group = parse_group(_writable(group), replacing=True)
        row = await provisioning.replace_group(workspace_id, group_id, group)
        await _audit(request, "scim.group_patched", row.id)
    return _scim_json(_group_body(request, row, _parameters(request.query)))


async def delete_group(request: web.Request) -> web.Response:
    workspace_id, group_id = request[_WORKSPACE], _id(request, "scim_group_id")
    await scim_provisioning(request).delete_group(workspace_id, group_id)
    await _audit(request, "scim.group_deleted", group_id)
    return web.Response(status=204)


def _writable(resource: Any) -> dict[str, Any]:
    body: dict[str, Any] = resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    for owned in ("id", "meta", "groups"):
        body.pop(owned, None)
    return body


async def _audit(
    request: web.Request,
    action: str,
    target: UUID,
    account: UUID | None = None,
    **details: Any,
) -> None:
    if account is not None:
        details["user_id"] = str(account)
    await audit(
        request,
        action,
        "scim",
        target,
        details=details or None,
        actor=Actor(display="scim"),
        workspace_id=request[_WORKSPACE],
    )


def scim_app() -> web.Application:
    """The sub-app to mount at ``SCIM_PREFIX``."""
    app = web.Application(middlewares=[_scim_middleware])
    app.add_routes(
        [
            web.get("/ServiceProviderConfig", get_service_provider_config, allow_head=False),
            web.get("/ResourceTypes", get_resource_types, allow_head=False),
            web.get("/ResourceTypes/{resource_type}", get_resource_type, allow_head=False),
            web.get("/Schemas", get_schemas, allow_head=False),
            web.get("/Schemas/{schema_id}", get_schema, allow_head=False),
            web.post("/.search", search_all),
            web.get("/Users", list_users, allow_head=False),
            web.post("/Users", post_user),
            web.post("/Users/.search", search_users),
            web.get("/Users/{scim_user_id}", get_user, allow_head=False),
            web.put("/Users/{scim_user_id}", put_user),
            web.patch("/Users/{scim_user_id}", patch_user),
            web.delete("/Users/{scim_user_id}", delete_user),
            web.get("/Groups", list_groups, allow_head=False),
            web.post("/Groups", post_group),
            web.post("/Groups/.search", search_groups),
            web.get("/Groups/{scim_group_id}", get_group, allow_head=False),
            web.put("/Groups/{scim_group_id}", put_group),
            web.patch("/Groups/{scim_group_id}", patch_group),
            web.delete("/Groups/{scim_group_id}", delete_group),
        ]
    )
    return app
