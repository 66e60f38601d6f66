"""SAML 2.0 single sign-on per workspace, with ``pysaml2`` as the service provider (SP).

Each workspace that sets up an identity provider (``/v1/admin/sso``) gets its own SP: entity id
``<origin>/v1/auth/saml/<workspace>/metadata``, assertion consumer service (ACS)
``<origin>/v1/auth/saml/<workspace>/acs``. ``start`` stores the AuthnRequest's id (ten
minutes) and hands back the IdP's redirect URL. ``finish`` takes the posted ``SAMLResponse``
and refuses, with nothing created, anything pysaml2 does not validate against the workspace's
IdP certificate: a missing or forged signature (the Response or its assertions must be
signed), another audience, another recipient or destination, a NotOnOrAfter in the past, an
InResponseTo that is not a live request of ours, and an assertion id seen before (a replay).

Then just-in-time provisioning: the address the IdP asserts (a NameID in e-mail format, else a
``mail``/``email`` attribute), in the connection's allowed domains if it lists any, is the
account (created if new: the IdP vouches for the address); an account that is no member yet
joins with the connection's default role through ``Members.provision``. An existing account
that is a member of any other workspace, or an owner of this one, is refused (403): the
workspace's admins control what its IdP asserts, and must not reach accounts beyond it. The
sign-in then ends as a password's does: an MFA challenge when the account has a second factor,
else tokens.

pysaml2 parses XML and runs ``xmlsec1`` as a child process: all of it runs off the loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID
from xml.sax.saxutils import quoteattr

from cryptography import x509
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS

from ..errors import AuthError, BadRequest, Conflict, Forbidden, NotFound
from ..store import db
from ..store.saml_connections import SamlConnection, SamlConnectionRepository
from .accounts import Accounts, TokenPair, check_email
from .members import Members
from .second_factor import MfaChallenge

__all__ = [
    "REQUEST_TTL_S",
    "SamlEndpoints",
    "SamlSignIn",
    "SamlSignInResult",
    "certificate_body",
]

log = logging.getLogger(__name__)

REQUEST_TTL_S: Final = 600
_CLOCK_SKEW_S: Final = 60  # NotBefore / NotOnOrAfter tolerance between the IdP and us
_MAX_RESPONSE_CHARS: Final = 256 * 1024
_EMAIL_ATTRIBUTES: Final = (
    "mail",
    "email",
    "emailaddress",
    "urn:oid:0.9.2342.19200300.100.1.3",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
)
_XMLSEC: Final = "/usr/bin/xmlsec1"

# pysaml2 logs every response it refuses (a forged signature, an expired assertion) at ERROR,
# with xmlsec1's output: a caller's bad input, not the server's fault. ``finish`` logs each
# refusal once, at WARNING, with its reason.
logging.getLogger("saml2").setLevel(logging.CRITICAL)


@dataclass(frozen=True, slots=True)
class SamlEndpoints:
    """Where a workspace's SP lives, as the IdP sees it."""

    entity_id: str
    acs_url: str

    @classmethod
    def of(cls, origin: str, workspace_id: UUID) -> SamlEndpoints:
        base = f"{origin.rstrip('/')}/v1/auth/saml/{workspace_id}"
        return cls(f"{base}/metadata", f"{base}/acs")


@dataclass(frozen=True, slots=True)
class SamlSignInResult:
    user_id: UUID
    outcome: TokenPair | MfaChallenge
    created: bool  # a new account
    joined: bool  # a new member of the workspace
    relay_state: str


def certificate_body(pem: str) -> str:
    """The base64 body of a PEM certificate (what SAML metadata carries), checked to be one.
    Raises ValueError."""
    text = pem.strip()
    if "-----BEGIN CERTIFICATE-----" not in text:
        text = f"-----BEGIN CERTIFICATE-----\n{text}\n-----END CERTIFICATE-----"
    try:
        x509.load_pem_x509_certificate(text.encode())
    except ValueError:
        raise ValueError("not a PEM X.509 certificate") from None
    return "".join(line for line in text.splitlines() if "-----" not in line).strip()


def _idp_metadata(connection: SamlConnection) -> str:
    body = certificate_body(connection.idp_certificate)
    return (
        '<?xml version="1.0"?>'
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
        f"entityID={quoteattr(connection.idp_entity_id)}>"
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>'
        f"<ds:X509Certificate>{body}</ds:X509Certificate>"
        "</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        f'<md:SingleSignOnService Binding="{BINDING_HTTP_REDIRECT}" '
        f"Location={quoteattr(connection.idp_sso_url)}/>"
        "</md:IDPSSODescriptor></md:EntityDescriptor>"
    )


def _config(endpoints: SamlEndpoints, connection: SamlConnection | None) -> SPConfig:
    config = SPConfig()
    config.load(
        {
            "entityid": endpoints.entity_id,
            "metadata": {"inline": [_idp_metadata(connection)] if connection else []},
            "service": {
                "sp": {
                    "endpoints": {
                        "assertion_consumer_service": [(endpoints.acs_url, BINDING_HTTP_POST)]
                    },
                    "allow_unsolicited": False,
                    "authn_requests_signed": False,
                    # One of the two signed is enough (IdPs differ); neither is refused.
                    "want_assertions_signed": False,
                    "want_response_signed": False,
                    "want_assertions_or_response_signed": True,
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                }
            },
            "accepted_time_diff": _CLOCK_SKEW_S,
            "xmlsec_binary": _XMLSEC,
        }
    )
    return config


def _metadata_xml(endpoints: SamlEndpoints) -> str:
    return str(entity_descriptor(_config(endpoints, None)))


def _authn_request(endpoints: SamlEndpoints, connection: SamlConnection, relay: str) -> Any:
    client = Saml2Client(config=_config(endpoints, connection))
    request_id, info = client.prepare_for_authenticate(
        entityid=connection.idp_entity_id, relay_state=relay, binding=BINDING_HTTP_REDIRECT
    )
    location = dict(info["headers"])["Location"]
    return request_id, location


@dataclass(frozen=True, slots=True)
class _Checked:
    email: str | None
    assertion_id: str
    in_response_to: str
    keep_until: datetime


class _Refused(Exception):
    """pysaml2 did not validate the response; the reason, for the log and the caller."""


def _check(
    endpoints: SamlEndpoints, connection: SamlConnection, saml_response: str, request_id: str
) -> _Checked:
    client = Saml2Client(config=_config(endpoints, connection))
    try:
        parsed = client.parse_authn_request_response(
            saml_response, BINDING_HTTP_POST, outstanding={request_id: endpoints.acs_url}
        )
    except Exception as exc:  # pysaml2 raises a dozen unrelated types, all of them "refused"
        raise _Refused(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if parsed is None or parsed.assertion is None:
        raise _Refused("the response was not accepted (destination, status or subject)")
    email = None
    name_id = parsed.name_id
    if name_id is not None and name_id.format == NAMEID_FORMAT_EMAILADDRESS and name_id.text:
        email = name_id.text.strip()
    if email is None:
        attributes = {str(k).lower(): v for k, v in (parsed.ava or {}).items()}
        for name in _EMAIL_ATTRIBUTES:
            if values := attributes.get(name):
                email = str(values[0]).strip()
                break
    expiry = parsed.not_on_or_after or 0
    keep_until = datetime.fromtimestamp(expiry, UTC) if expiry else datetime.now(UTC)
    return _Checked(
        email,
        str(parsed.assertion.id),
        str(parsed.in_response_to),
        keep_until + timedelta(seconds=_CLOCK_SKEW_S),
    )


def _in_response_to(saml_response: str) -> str | None:
    """The InResponseTo a response names, read before validating it: which stored request to
    validate against. Nothing is trusted from it beyond that lookup."""
    try:
        xml = base64.b64decode(saml_response, validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    found = re.search(r"<(?:\w+:)?Response\b[^>]*\bInResponseTo=\"([^\"]{1,200})\"", xml)
    return found.group(1) if found else None


class SamlSignIn:
    def __init__(
        self, repo: SamlConnectionRepository, accounts: Accounts, members: Members
    ) -> None:
        self.repo = repo
        self.accounts = accounts
        self.members = members

    @classmethod
    def open(cls, pool: db.Pool, accounts: Accounts, members: Members) -> SamlSignIn:
        return cls(SamlConnectionRepository(pool), accounts, members)

    async def connection(self, workspace_id: UUID) -> SamlConnection:
        """Raises NotFound when the workspace has no SAML sign-in set up."""
        connection = await self.repo.get(workspace_id)
        if connection is None:
            raise NotFound("this workspace has no SAML single sign-on set up")
        return connection

    async def metadata(self, workspace_id: UUID, endpoints: SamlEndpoints) -> str:
        await self.connection(workspace_id)
        return await asyncio.to_thread(_metadata_xml, endpoints)

    async def start(self, workspace_id: UUID, endpoints: SamlEndpoints, relay_state: str) -> str:
        """The IdP's URL to send the browser to, carrying a new AuthnRequest."""
        connection = await self.connection(workspace_id)
        request_id, location = await asyncio.to_thread(
            _authn_request, endpoints, connection, relay_state
        )
        await self.repo.save_request(workspace_id, request_id, relay_state, REQUEST_TTL_S)
        return str(location)

    async def finish(
        self, workspace_id: UUID, endpoints: SamlEndpoints, saml_response: str
    ) -> SamlSignInResult:
        """Raises NotFound (no SAML here), BadRequest (no response), AuthError (refused) or
        Forbidden (an address outside the allowed domains)."""
        connection = await self.connection(workspace_id)
        if not saml_response or len(saml_response) > _MAX_RESPONSE_CHARS:
            raise BadRequest("the form must carry a SAMLResponse")
        request_id = _in_response_to(saml_response)
        relay = None
        if request_id is not None:
            relay = await self.repo.pending_request(workspace_id, request_id)
        if request_id is None or relay is None:
            raise AuthError(
                "this SAML response answers no sign-in started here (unsolicited, expired or "
                "already used); start again at /v1/auth/saml/{workspace_id}/login"
            )
        try:
            checked = await asyncio.to_thread(
                _check, endpoints, connection, saml_response, request_id
            )
        except _Refused as exc:
            log.warning("SAML response for workspace %s refused: %s", workspace_id, exc)
            raise AuthError(f"the SAML response was refused: {exc}") from None
        if not await self.repo.consume(
            workspace_id, request_id, checked.assertion_id, checked.keep_until
        ):
            raise AuthError("this SAML assertion was used already (a replay); sign in again")
        email = self._allowed_email(connection, checked.email)
        user_id, created = await self._account(workspace_id, email)
        joined = await self.members.provision(workspace_id, user_id, connection.default_role)
        outcome = await self._sign_in(user_id)
        return SamlSignInResult(user_id, outcome, created, joined is not None, relay)

    def _allowed_email(self, connection: SamlConnection, email: str | None) -> str:
        try:
            address = check_email(email or "")
        except ValueError:
            raise AuthError(
                "the identity provider asserted no e-mail address (a NameID in e-mail format "
                "or a mail attribute)"
            ) from None
        domain = address.rsplit("@", 1)[1].lower()
        if connection.allowed_domains and domain not in connection.allowed_domains:
            raise Forbidden(
                f"addresses at {domain} may not sign in to this workspace with SAML",
                details={"domain": domain},
            )
        return address

    async def _account(self, workspace_id: UUID, email: str) -> tuple[UUID, bool]:
        users = self.accounts.users
        user = await users.by_email(email)
        created = False
        if user is not None:
            await self._refuse_foreign(workspace_id, user.id)
        else:
            try:
                user = await users.create(email, None, verified=True)
                created = True
            except Conflict:  # created meanwhile
                user = await users.by_email(email)
        if user is None or not user.active:
            raise AuthError("this account cannot sign in")
        return user.id, created

    async def _refuse_foreign(self, workspace_id: UUID, user_id: UUID) -> None:
        # A workspace's admins choose its IdP, and so what it asserts: it may sign in the
        # accounts that belong to this workspace alone, never one that is also someone's
        # elsewhere (their personal workspace, another company's) nor an owner here, or an
        # admin with their own IdP could take those accounts over.
        memberships = await self.accounts.users.memberships(user_id)
        elsewhere = [m for m in memberships if m.workspace_id != workspace_id]
        if elsewhere or any(m.role == "owner" for m in memberships):
            raise Forbidden(
                "this account also belongs to other workspaces or owns this one, so this "
                "workspace's identity provider cannot sign it in: sign in with its password, "
                "a magic link or a passkey",
                details={"reason": "account_not_managed"},
            )

    async def _sign_in(self, user_id: UUID) -> TokenPair | MfaChallenge:
        factors = self.accounts.second_factors
        if factors is not None:
            # As after a password: a second factor, when on, stands between this and tokens.
            challenge = await factors.challenge_for(user_id, "saml")
            if challenge is not None:
                return challenge
        return await self.accounts.sign_in_with_second_factor(user_id)
