"""A SAML 2.0 identity provider for the tests: pysaml2's own IdP (``saml2.server.Server``)
with a key and a self-signed certificate the tests generate (``cryptography``).

It answers the AuthnRequest our service provider sends (read from the redirect URL) with a
signed Response, and can also answer wrongly on purpose: signed with another key, for another
audience, already expired, or unsigned. pysaml2 runs ``xmlsec1`` as a child process: call it
from a thread in async tests.
"""

from __future__ import annotations

import base64
import datetime
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server

__all__ = ["OTHER_AUDIENCE", "SamlTestIdp", "make_idp"]

OTHER_AUDIENCE = "https://another-service.example/saml/metadata"
_PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"


def _key_and_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@dataclass(frozen=True)
class SamlTestIdp:
    entity_id: str
    sso_url: str
    key_path: Path
    cert_path: Path

    @property
    def certificate(self) -> str:
        return self.cert_path.read_text()

    def metadata_xml(self) -> str:
        body = "".join(
            line for line in self.certificate.strip().splitlines() if "-----" not in line
        )
        return (
            '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
            f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{self.entity_id}">'
            "<md:IDPSSODescriptor "
            'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data>'
            f"<ds:X509Certificate>{body}</ds:X509Certificate>"
            "</ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            f'<md:SingleSignOnService Binding="{BINDING_HTTP_REDIRECT}" '
            f'Location="{self.sso_url}"/></md:IDPSSODescriptor></md:EntityDescriptor>'
        )

    def _server(self, sp_metadata: str, *, lifetime_minutes: int, signer: SamlTestIdp) -> Server:
        # The SP's metadata once more under another entity id: what a response meant for
        # another service is addressed to.
        other = sp_metadata.replace(_entity_id_of(sp_metadata), OTHER_AUDIENCE)
        config = IdPConfig()
        config.load(
            {
                "entityid": self.entity_id,
                "service": {
                    "idp": {
                        "endpoints": {
                            "single_sign_on_service": [(self.sso_url, BINDING_HTTP_REDIRECT)]
                        },
                        "policy": {"default": {"lifetime": {"minutes": lifetime_minutes}}},
                        "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    }
                },
                "key_file": str(signer.key_path),
                "cert_file": str(signer.cert_path),
                "metadata": {"inline": [sp_metadata, other]},
                "xmlsec_binary": "/usr/bin/xmlsec1",
            }
        )
        return Server(config=config)

    def respond(
        self,
        sp_metadata: str,
        login_url: str,
        email: str,
        *,
        audience: str | None = None,
        lifetime_minutes: int = 5,
        signed: bool = True,
        signer: SamlTestIdp | None = None,
        in_response_to: str | None = None,
    ) -> str:
        """The base64 SAMLResponse a browser would post to the SP's ACS after signing in as
        ``email`` at the login URL our SP redirected to."""
        server = self._server(sp_metadata, lifetime_minutes=lifetime_minutes, signer=signer or self)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(login_url).query)
        request = server.parse_authn_request(query["SAMLRequest"][0], BINDING_HTTP_REDIRECT)
        acs_url = request.message.assertion_consumer_service_url
        sp_entity_id = request.message.issuer.text
        response: Any = server.create_authn_response(
            identity={"mail": [email], "displayName": ["Test Person"]},
            in_response_to=in_response_to or request.message.id,
            destination=acs_url,
            sp_entity_id=audience or sp_entity_id,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email),
            sign_assertion=signed,
            sign_response=signed,
            authn={"class_ref": _PASSWORD},
        )
        return base64.b64encode(str(response).encode()).decode()


def _entity_id_of(metadata: str) -> str:
    start = metadata.index('entityID="') + len('entityID="')
    return metadata[start : metadata.index('"', start)]


def make_idp(directory: Path, name: str = "idp") -> SamlTestIdp:
    key_path, cert_path = _key_and_certificate(directory, name)
    return SamlTestIdp(
        f"https://{name}.example/saml/metadata", f"https://{name}.example/sso", key_path, cert_path
    )
