"""SAML single sign-on: the service provider's endpoints under ``/v1/auth/saml/{workspace_id}``
(sign-in access: how a caller gets credentials) and the workspace's IdP settings at
``/v1/admin/sso`` (admins). A thin shell over ``identity/saml_sign_in.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal
from uuid import UUID

from aiohttp import web
from defusedxml import ElementTree  # type: ignore[import-untyped]  # ships no types
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ..errors import NotFound, ValidationFailed
from ..identity.audit_trail import audit
from ..identity.members import MEMBERS
from ..identity.request_principal import principal_of
from ..identity.saml_sign_in import REQUEST_TTL_S, SamlEndpoints, SamlSignIn, certificate_body
from ..protocols.json_messages import validate_model
from ..store.audit import Actor
from ..store.saml_connections import SamlConnection
from .auth import ACCOUNTS, sign_in_page_response, sign_in_response
from .bodies import read_model
from .multipart import read_form_fields
from .resources import POOL, SETTINGS

__all__ = [
    "SamlLoginQuery",
    "SamlLoginResponse",
    "SsoModel",
    "SsoSettingsBody",
    "add_saml_routes",
    "sso_admin_routes",
]

_MD: Final = "{urn:oasis:names:tc:SAML:2.0:metadata}"
_DS: Final = "{http://www.w3.org/2000/09/xmldsig#}"
_REDIRECT_BINDING: Final = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
_MAX_METADATA_CHARS: Final = 200_000

GrantedRole = Literal["admin", "editor", "viewer"]
_Url = Annotated[str, StringConstraints(pattern=r"^https?://", max_length=2048)]
_Domain = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        min_length=3,
        max_length=253,
        pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$",
    ),
]


def _sign_in(request: web.Request) -> SamlSignIn:
    config = request.config_dict
    return SamlSignIn.open(config[POOL], config[ACCOUNTS], config[MEMBERS])


def _origin(request: web.Request) -> str:
    return request.config_dict[SETTINGS].public_origin or f"{request.scheme}://{request.host}"


def _workspace(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["workspace_id"])
    except ValueError:
        raise NotFound("this workspace has no SAML single sign-on set up") from None


# --- the service provider -----------------------------------------------------------------


class SamlLoginQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Where the browser goes after signing in (handed back with the tokens); opaque to us.
    relay_state: Annotated[str, StringConstraints(max_length=512)] = ""
    redirect: bool = True  # False: answer the URL as JSON instead of a 302


class SamlLoginResponse(BaseModel):
    url: str  # the identity provider's, carrying the AuthnRequest
    expires_in: int


async def get_metadata(request: web.Request) -> web.Response:
    workspace_id = _workspace(request)
    endpoints = SamlEndpoints.of(_origin(request), workspace_id)
    xml = await _sign_in(request).metadata(workspace_id, endpoints)
    return web.Response(text=xml, content_type="application/samlmetadata+xml")


async def get_login(request: web.Request) -> web.Response:
    workspace_id = _workspace(request)
    query = validate_model(SamlLoginQuery, dict(request.query), "query string")
    endpoints = SamlEndpoints.of(_origin(request), workspace_id)
    url = await _sign_in(request).start(workspace_id, endpoints, query.relay_state)
    body = SamlLoginResponse(url=url, expires_in=REQUEST_TTL_S)
    return sign_in_page_response(url, body, redirect=query.redirect)


async def post_acs(request: web.Request) -> web.Response:
    workspace_id = _workspace(request)
    fields = await read_form_fields(request)
    endpoints = SamlEndpoints.of(_origin(request), workspace_id)
    result = await _sign_in(request).finish(
        workspace_id, endpoints, fields.get("SAMLResponse", "").strip()
    )
    actor = Actor(user_id=result.user_id)
    if result.joined:
        await audit(
            request,
            "sso.member_provisioned",
            "user",
            result.user_id,
            details={"method": "saml", "new_user": result.created},
            actor=actor,
            workspace_id=workspace_id,
        )
    return await sign_in_response(
        request, result.outcome, {"method": "saml", "workspace_id": str(workspace_id)}
    )


def add_saml_routes(app: web.Application) -> None:
    """Add ``/v1/auth/saml/…`` to the auth sub-app (paths relative to its prefix)."""
    p = "/saml/{workspace_id}/"
    app.router.add_get(p + "metadata", get_metadata, allow_head=False)
    app.router.add_get(p + "login", get_login, allow_head=False)
    app.router.add_post(p + "acs", post_acs)


# --- /v1/admin/sso ------------------------------------------------------------------------


class SsoSettingsBody(BaseModel):
    """The workspace's identity provider: its metadata XML, or its entity id, single sign-on
    URL (HTTP-Redirect binding) and signing certificate (PEM)."""

    model_config = ConfigDict(extra="forbid")
    idp_metadata_xml: Annotated[str, StringConstraints(max_length=_MAX_METADATA_CHARS)] | None = (
        None
    )
    idp_entity_id: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    idp_sso_url: _Url | None = None
    idp_certificate: Annotated[str, StringConstraints(max_length=20_000)] | None = None
    default_role: GrantedRole = "viewer"  # what a member created at first sign-in gets
    allowed_domains: list[_Domain] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _one_source(self) -> SsoSettingsBody:
        given = [self.idp_entity_id, self.idp_sso_url, self.idp_certificate]
        if self.idp_metadata_xml is None and not all(given):
            raise ValueError(
                "give idp_metadata_xml, or idp_entity_id, idp_sso_url and idp_certificate"
            )
        return self


class SsoModel(BaseModel):
    idp_entity_id: str
    idp_sso_url: str
    idp_certificate: str
    default_role: GrantedRole
    allowed_domains: list[str]
    # What to set up at the identity provider for this workspace.
    sp_entity_id: str
    sp_acs_url: str
    sp_metadata_url: str
    login_url: str
    updated_at: datetime


def _model(request: web.Request, connection: SamlConnection) -> SsoModel:
    endpoints = SamlEndpoints.of(_origin(request), connection.workspace_id)
    return SsoModel(
        idp_entity_id=connection.idp_entity_id,
        idp_sso_url=connection.idp_sso_url,
        idp_certificate=connection.idp_certificate,
        default_role=connection.default_role,  # type: ignore[arg-type]  # never owner (0022)
        allowed_domains=list(connection.allowed_domains),
        sp_entity_id=endpoints.entity_id,
        sp_acs_url=endpoints.acs_url,
        sp_metadata_url=endpoints.entity_id,
        login_url=endpoints.acs_url.removesuffix("/acs") + "/login",
        updated_at=connection.updated_at,
    )


def _from_metadata(xml: str) -> tuple[str, str, str]:
    """(entity id, SSO URL, signing certificate) of an IdP's metadata. Raises
    ValidationFailed."""
    try:
        root = ElementTree.fromstring(xml)
    except Exception as exc:  # defusedxml refuses entities and DTDs with its own types
        raise ValidationFailed(f"idp_metadata_xml is not readable XML: {exc}") from None
    entity = (
        root if root.tag == f"{_MD}EntityDescriptor" else root.find(f".//{_MD}EntityDescriptor")
    )
    idp = entity.find(f"{_MD}IDPSSODescriptor") if entity is not None else None
    if entity is None or idp is None:
        raise ValidationFailed("idp_metadata_xml has no EntityDescriptor with an IDPSSODescriptor")
    sso = [
        s.get("Location", "")
        for s in idp.findall(f"{_MD}SingleSignOnService")
        if s.get("Binding") == _REDIRECT_BINDING
    ]
    certs = [
        (k.findtext(f".//{_DS}X509Certificate") or "").strip()
        for k in idp.findall(f"{_MD}KeyDescriptor")
        if k.get("use") in (None, "signing")
    ]
    if not sso or not sso[0] or not certs or not certs[0]:
        raise ValidationFailed(
            "idp_metadata_xml needs a SingleSignOnService with the HTTP-Redirect binding and a "
            "signing certificate"
        )
    return entity.get("entityID", ""), sso[0], certs[0]


async def get_sso(request: web.Request) -> web.Response:
    connection = await _sign_in(request).connection(principal_of(request).workspace_id)
    return web.json_response(text=_model(request, connection).model_dump_json())


async def put_sso(request: web.Request) -> web.Response:
    principal = principal_of(request)
    body = await read_model(request, SsoSettingsBody)
    if body.idp_metadata_xml is not None:
        entity_id, sso_url, certificate = _from_metadata(body.idp_metadata_xml)
    else:
        assert body.idp_entity_id and body.idp_sso_url and body.idp_certificate
        entity_id, sso_url, certificate = body.idp_entity_id, body.idp_sso_url, body.idp_certificate
    try:
        pem_body = certificate_body(certificate)
    except ValueError:
        raise ValidationFailed("idp_certificate is not a PEM X.509 certificate") from None
    pem = "-----BEGIN CERTIFICATE-----\n" + pem_body + "\n-----END CERTIFICATE-----\n"
    if not entity_id or not sso_url.startswith(("https://", "http://")):
        raise ValidationFailed("the IdP needs an entity id and an http(s) single sign-on URL")
    connection = await _sign_in(request).repo.put(
        principal.workspace_id,
        idp_entity_id=entity_id,
        idp_sso_url=sso_url,
        idp_certificate=pem,
        default_role=body.default_role,
        allowed_domains=tuple(dict.fromkeys(body.allowed_domains)),
    )
    await audit(
        request,
        "sso.configured",
        "workspace",
        principal.workspace_id,
        details={"idp_entity_id": entity_id, "default_role": body.default_role},
    )
    return web.json_response(text=_model(request, connection).model_dump_json())


async def delete_sso(request: web.Request) -> web.Response:
    principal = principal_of(request)
    if not await _sign_in(request).repo.delete(principal.workspace_id):
        raise NotFound("this workspace has no SAML single sign-on set up")
    await audit(request, "sso.removed", "workspace", principal.workspace_id)
    return web.Response(status=204)


def sso_admin_routes() -> list[web.RouteDef]:
    """Paths relative to ``/v1/admin`` (``rest/admin.py``)."""
    return [
        web.get("/sso", get_sso, allow_head=False),
        web.put("/sso", put_sso),
        web.delete("/sso", delete_sso),
    ]
