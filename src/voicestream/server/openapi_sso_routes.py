"""The OpenAPI entries of enterprise identity: SCIM 2.0 provisioning at ``/scim/v2``
(rest/scim.py), its tokens and role mapping under ``/v1/admin/scim``, and SAML single sign-on
(rest/saml.py), merged into ``OPERATIONS``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..rest.auth import MfaRequiredResponse, TokenResponse
from ..rest.openapi import NO_CONTENT, STRING, Op, Resp, ok
from ..rest.saml import SamlLoginQuery, SamlLoginResponse, SsoModel, SsoSettingsBody
from ..rest.scim_admin import (
    ScimSettingsModel,
    ScimTokenCreate,
    ScimTokenCreated,
    ScimTokenList,
    ScimTokenModel,
)

__all__ = ["SSO_OPERATIONS"]

_SCIM: Final = "scim"
_ADMIN: Final = "admin"
_AUTH: Final = "auth"
_SCIM_JSON: Final = "application/scim+json"
_SCIM_BODY: Final = {_SCIM_JSON: {"type": "object"}, "application/json": {"type": "object"}}
_SCIM_AUTH: Final = (
    "Authorization: Bearer with the workspace's SCIM token (POST /v1/admin/scim/tokens); "
    "errors are SCIM Error messages (`status`, `scimType`)."
)


def _scim(description: str, status: int = 200) -> dict[int, Resp]:
    return {status: Resp(description, schema={"type": "object"}, media=_SCIM_JSON)}


def _resource(kind: str, plural: str) -> dict[tuple[str, str], Op]:
    base = f"/scim/v2/{plural}"
    one = f"{base}/{{scim_{kind.lower()}_id}}"
    return {
        ("GET", base): Op(
            f"List {plural} (filter, startIndex, count, attributes, excludedAttributes)",
            _SCIM,
            description=_SCIM_AUTH,
            responses=_scim("A ListResponse."),
        ),
        ("POST", base): Op(
            f"Create a {kind}",
            _SCIM,
            description=_SCIM_AUTH,
            body_media=_SCIM_BODY,
            responses=_scim(f"The {kind}.", 201),
        ),
        ("POST", f"{base}/.search"): Op(
            f"Search {plural} (a SearchRequest)",
            _SCIM,
            description=_SCIM_AUTH,
            body_media=_SCIM_BODY,
            responses=_scim("A ListResponse."),
        ),
        ("GET", one): Op(f"A {kind}", _SCIM, description=_SCIM_AUTH, responses=_scim("It.")),
        ("PUT", one): Op(
            f"Replace a {kind}",
            _SCIM,
            description=_SCIM_AUTH,
            body_media=_SCIM_BODY,
            responses=_scim("It now."),
        ),
        ("PATCH", one): Op(
            f"Change a {kind} (a PatchOp)",
            _SCIM,
            description=_SCIM_AUTH,
            body_media=_SCIM_BODY,
            responses=_scim("It now."),
        ),
        ("DELETE", one): Op(
            f"Delete a {kind}", _SCIM, description=_SCIM_AUTH, responses={204: NO_CONTENT}
        ),
    }


SSO_OPERATIONS: Final[Mapping[tuple[str, str], Op]] = {
    ("GET", "/scim/v2/ServiceProviderConfig"): Op(
        "What this SCIM service supports", _SCIM, description=_SCIM_AUTH, responses=_scim("It.")
    ),
    ("GET", "/scim/v2/ResourceTypes"): Op(
        "The resource types served (User, Group)",
        _SCIM,
        description=_SCIM_AUTH,
        responses=_scim("A ListResponse."),
    ),
    ("GET", "/scim/v2/ResourceTypes/{resource_type}"): Op(
        "A resource type", _SCIM, description=_SCIM_AUTH, responses=_scim("It.")
    ),
    ("GET", "/scim/v2/Schemas"): Op(
        "The schemas served", _SCIM, description=_SCIM_AUTH, responses=_scim("A ListResponse.")
    ),
    ("GET", "/scim/v2/Schemas/{schema_id}"): Op(
        "A schema", _SCIM, description=_SCIM_AUTH, responses=_scim("It.")
    ),
    ("POST", "/scim/v2/.search"): Op(
        "Search Users and Groups together (a SearchRequest)",
        _SCIM,
        description=_SCIM_AUTH,
        body_media=_SCIM_BODY,
        responses=_scim("A ListResponse."),
    ),
    **_resource("User", "Users"),
    **_resource("Group", "Groups"),
    ("GET", "/v1/admin/sso"): Op(
        "The workspace's SAML identity provider, and what to set up there",
        _ADMIN,
        responses=ok(SsoModel),
    ),
    ("PUT", "/v1/admin/sso"): Op(
        "Set the workspace's SAML identity provider (its metadata, or entity id, URL and "
        "certificate), the role of members it creates, and the allowed e-mail domains",
        _ADMIN,
        body=SsoSettingsBody,
        responses=ok(SsoModel),
    ),
    ("DELETE", "/v1/admin/sso"): Op(
        "Turn SAML sign-in off for the workspace", _ADMIN, responses={204: NO_CONTENT}
    ),
    ("GET", "/v1/auth/saml/{workspace_id}/metadata"): Op(
        "The workspace's SAML service provider metadata (for the identity provider)",
        _AUTH,
        auth="public",
        responses={200: Resp("SP metadata.", schema=STRING, media="application/samlmetadata+xml")},
    ),
    ("GET", "/v1/auth/saml/{workspace_id}/login"): Op(
        "Start a SAML sign-in: a redirect to the identity provider with an AuthnRequest",
        _AUTH,
        auth="public",
        query=SamlLoginQuery,
        responses={
            302: Resp("To the identity provider.", media=None),
            **ok(SamlLoginResponse, description="With redirect=false: the URL."),
        },
    ),
    ("POST", "/v1/auth/saml/{workspace_id}/acs"): Op(
        "The assertion consumer service: the identity provider posts its signed Response "
        "here; a first sign-in makes the person a member with the default role",
        _AUTH,
        auth="public",
        body_media={"application/x-www-form-urlencoded": {"type": "object"}},
        responses={
            200: Resp("Tokens, or an MFA challenge.", any_of=(TokenResponse, MfaRequiredResponse))
        },
    ),
    ("GET", "/v1/admin/scim/tokens"): Op(
        "The workspace's SCIM tokens (never the tokens themselves)",
        _ADMIN,
        responses=ok(ScimTokenList),
    ),
    ("POST", "/v1/admin/scim/tokens"): Op(
        "Mint a SCIM token for an identity provider (shown once)",
        _ADMIN,
        body=ScimTokenCreate,
        responses=ok(ScimTokenCreated, 201),
    ),
    ("DELETE", "/v1/admin/scim/tokens/{scim_token_id}"): Op(
        "Revoke a SCIM token (at once)", _ADMIN, responses=ok(ScimTokenModel)
    ),
    ("GET", "/v1/admin/scim/settings"): Op(
        "How SCIM groups map to roles", _ADMIN, responses=ok(ScimSettingsModel)
    ),
    ("PUT", "/v1/admin/scim/settings"): Op(
        "Set how SCIM groups map to roles (applied to every provisioned member at once)",
        _ADMIN,
        body=ScimSettingsModel,
        responses=ok(ScimSettingsModel),
    ),
}
