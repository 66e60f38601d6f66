"""SCIM 2.0 documents (RFC 7643/7644) through ``scim2-models``: what the discovery endpoints
publish, and how a request's User, Group, PatchOp and filter are read and a response written.

Pure: no I/O. A resource is stored as the document its request carried, less what the server
owns (``id``, ``meta``); answers add those back. What the SCIM layer refuses is raised as a
``scim2_models.SCIMException`` (``rest/scim.py`` turns it into a SCIM Error body).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

from pydantic import ValidationError
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    Error,
    ETag,
    Filter,
    Group,
    InvalidFilterException,
    InvalidValueException,
    Meta,
    Patch,
    PatchOp,
    Resource,
    ResourceType,
    ResponseParameters,
    SCIMException,
    ScimFilter,
    ServiceProviderConfig,
    Sort,
    User,
)
from scim2_models.path.expressions import Comparison

from ..store.scim_resources import FilterColumn

__all__ = [
    "MAX_RESULTS",
    "SCIM_CONTENT_TYPE",
    "ResourceKind",
    "apply_patch",
    "error_body",
    "filter_column",
    "list_response",
    "load",
    "parse_filter",
    "parse_group",
    "parse_patch",
    "parse_resource",
    "parse_user",
    "render",
    "resource_types",
    "schemas",
    "service_provider_config",
    "stored_document",
]

SCIM_CONTENT_TYPE: Final = "application/scim+json"
MAX_RESULTS: Final = 200  # a page's most resources (ServiceProviderConfig.filter.maxResults)
ResourceKind = Literal["User", "Group"]
_MODELS: Final[Mapping[ResourceKind, type[Resource[Any]]]] = {"User": User, "Group": Group}
_ENDPOINTS: Final[Mapping[ResourceKind, str]] = {"User": "/Users", "Group": "/Groups"}
_R = TypeVar("_R", bound=Resource[Any])
# Parametrized once, at import: pydantic builds a generic's class by reading source files,
# which must not happen on the event loop.
_PATCH_TYPES: Final[Mapping[ResourceKind, Any]] = {
    kind: PatchOp.__class_getitem__(model) for kind, model in _MODELS.items()
}
_FILTER_TYPES: Final[Mapping[ResourceKind, Any]] = {
    kind: ScimFilter.__class_getitem__(model) for kind, model in _MODELS.items()
}
# The columns a plain ``attr eq "value"`` filter is answered from in SQL.
_FILTER_COLUMNS: Final[Mapping[tuple[ResourceKind, str], FilterColumn]] = {
    ("User", "username"): "user_name",
    ("User", "externalid"): "external_id",
    ("User", "displayname"): "display_name",
    ("Group", "displayname"): "display_name",
    ("Group", "externalid"): "external_id",
}


def _invalid(exc: ValidationError) -> SCIMException:
    errors: list[Error] = Error.from_validation_errors(exc.errors())
    first = errors[0] if errors else Error(status=400, scim_type="invalidValue")
    return SCIMException.from_error(first)


def parse_resource(kind: ResourceKind, body: Any, *, replacing: bool = False) -> Resource[Any]:
    """The User or Group a POST (or, ``replacing``, a PUT) carries."""
    if not isinstance(body, dict):
        raise InvalidValueException(detail="the body must be a JSON object")
    ctx = Context.RESOURCE_REPLACEMENT_REQUEST if replacing else Context.RESOURCE_CREATION_REQUEST
    try:
        return _MODELS[kind].model_validate(body, scim_ctx=ctx)
    except ValidationError as exc:
        raise _invalid(exc) from None


def parse_user(body: Any, *, replacing: bool = False) -> User[Any]:
    user = parse_resource("User", body, replacing=replacing)
    assert isinstance(user, User)
    return user


def parse_group(body: Any, *, replacing: bool = False) -> Group:
    group = parse_resource("Group", body, replacing=replacing)
    assert isinstance(group, Group)
    return group


def stored_document(resource: Resource[Any]) -> dict[str, Any]:
    """What is kept of a resource: everything the client may write, nothing the server owns."""
    document: dict[str, Any] = resource.model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    return document


def load(kind: ResourceKind, document: Mapping[str, Any]) -> Resource[Any]:
    return _MODELS[kind].model_validate(dict(document))


def parse_patch(kind: ResourceKind, body: Any) -> PatchOp[Any]:
    if not isinstance(body, dict):
        raise InvalidValueException(detail="the body must be a JSON object")
    try:
        patch: PatchOp[Any] = _PATCH_TYPES[kind].model_validate(
            body, scim_ctx=Context.RESOURCE_PATCH_REQUEST
        )
    except ValidationError as exc:
        raise _invalid(exc) from None
    return patch


def apply_patch(patch: PatchOp[_R], resource: _R) -> bool:
    """Apply ``patch`` in place; whether anything changed."""
    try:
        return bool(patch.patch(resource))
    except ValidationError as exc:
        raise _invalid(exc) from None


def parse_filter(kind: ResourceKind, text: str) -> ScimFilter[Any]:
    try:
        parsed: ScimFilter[Any] = _FILTER_TYPES[kind](text)
        return parsed
    except SCIMException:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidFilterException(detail=f"invalid filter: {exc}") from None


def filter_column(kind: ResourceKind, parsed: ScimFilter[Any]) -> tuple[FilterColumn, str] | None:
    """(column, value) when the filter is one ``attr eq "string"`` that SQL can answer."""
    node = parsed.ast
    if not isinstance(node, Comparison) or node.op.value != "eq":
        return None
    path = node.attr_path
    if path.sub_attr is not None or not isinstance(node.value, str):
        return None
    column = _FILTER_COLUMNS.get((kind, path.attr.lower()))
    return (column, node.value) if column is not None else None


def render(
    kind: ResourceKind,
    resource: Resource[Any],
    *,
    resource_id: str,
    base_url: str,
    created: datetime,
    modified: datetime,
    version: int,
    parameters: ResponseParameters[Any] | None = None,
) -> dict[str, Any]:
    """The resource as a response carries it, with its id and meta."""
    resource.id = resource_id
    resource.meta = Meta(
        resource_type=kind,
        created=created,
        last_modified=modified,
        location=f"{base_url}{_ENDPOINTS[kind]}/{resource_id}",
        version=f'W/"{version}"',
    )
    body: dict[str, Any] = resource.model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=parameters
    )
    return body


def list_response(
    resources: Sequence[dict[str, Any]], *, total: int, start_index: int
) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": len(resources),
        "Resources": list(resources),
    }


def service_provider_config(base_url: str) -> dict[str, Any]:
    config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="A token an admin mints at POST /v1/admin/scim/tokens",
                primary=True,
            )
        ],
    )
    config.meta = Meta(
        resource_type="ServiceProviderConfig", location=f"{base_url}/ServiceProviderConfig"
    )
    body: dict[str, Any] = config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    return body


def resource_types(base_url: str) -> list[dict[str, Any]]:
    types = []
    for kind, model in _MODELS.items():
        resource_type = ResourceType.from_resource(model)
        resource_type.meta = Meta(
            resource_type="ResourceType", location=f"{base_url}/ResourceTypes/{kind}"
        )
        types.append(resource_type.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    return types


def schemas(base_url: str) -> list[dict[str, Any]]:
    published = []
    for model in _MODELS.values():
        schema = model.to_schema()
        schema.meta = Meta(resource_type="Schema", location=f"{base_url}/Schemas/{schema.id}")
        published.append(schema.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    return published


def error_body(exc: SCIMException) -> dict[str, Any]:
    body: dict[str, Any] = exc.to_error().model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    return body
