"""A software WebAuthn authenticator for tests: an EC P-256 key that answers the server's options
the way a platform authenticator does, with attestation "none" and ES256 assertion signatures.

It writes ``clientDataJSON`` itself, which a browser does in real life; tests use that to play
a look-alike site (another origin) or a cloned key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any, Final

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["SoftwareAuthenticator", "b64url"]

_UP: Final = 0x01  # user present
_UV: Final = 0x04  # user verified
_AT: Final = 0x40  # attested credential data included
_ES256: Final = -7


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftwareAuthenticator:
    def __init__(self, origin: str, *, user_verification: bool = True) -> None:
        self.origin = origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0
        self.user_handle: bytes | None = None
        self._flags = _UP | (_UV if user_verification else 0)

    def create(self, public_key: dict[str, Any], *, origin: str | None = None) -> dict[str, Any]:
        """``navigator.credentials.create({publicKey})``: a registration credential (JSON)."""
        self.user_handle = _unb64url(public_key["user"]["id"])
        client_data = self._client_data("webauthn.create", public_key["challenge"], origin)
        numbers = self.key.public_key().public_numbers()
        cose_key = cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: _ES256,
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        attested = bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id
        auth_data = self._auth_data(public_key["rp"]["id"], _AT) + attested + cose_key
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        public_key: dict[str, Any],
        *,
        rp_id: str,
        origin: str | None = None,
        sign_count: int | None = None,
    ) -> dict[str, Any]:
        """``navigator.credentials.get({publicKey})``: an assertion (JSON)."""
        client_data = self._client_data("webauthn.get", public_key["challenge"], origin)
        self.sign_count = self.sign_count + 1 if sign_count is None else sign_count
        auth_data = self._auth_data(rp_id, 0)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        response: dict[str, Any] = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        if self.user_handle is not None:
            response["userHandle"] = b64url(self.user_handle)
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        data = {"type": kind, "challenge": challenge, "origin": origin or self.origin}
        return json.dumps({**data, "crossOrigin": False}).encode()

    def _auth_data(self, rp_id: str, extra_flags: int) -> bytes:
        rp_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_hash + bytes([self._flags | extra_flags]) + struct.pack(">I", self.sign_count)
