"""Passkeys: WebAuthn registration and sign-in ceremonies (the ``webauthn`` package checks them).

A passkey signs in on its own: it is something the person has, unlocked by something they are
or know (user verification is required), so it is two factors at once and skips the TOTP step.

Each ceremony starts with options carrying a fresh 32-byte challenge, stored server-side for
five minutes and used up by the first answer, right or wrong. The answer names its challenge
inside ``clientDataJSON``, which the browser writes, so the client sends nothing else.

The relying party is the server's own origin, as for the Origin check (``server/origin.py``):
``VOICESTREAM_PUBLIC_ORIGIN`` when set, else the scheme and ``Host`` of the request. A browser
only lets a page of that origin use the passkey, and ``clientDataJSON`` says which origin it
was, so a look-alike site cannot relay a sign-in.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit
from uuid import UUID

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ..errors import AuthError, BadRequest, Conflict, ValidationFailed
from ..store.passkeys import Passkey, PasskeyRepository

__all__ = ["CEREMONY_TTL_S", "Passkeys", "RelyingParty"]

log = logging.getLogger(__name__)

CEREMONY_TTL_S: Final = 300
_CHALLENGE_BYTES: Final = 32
_RP_NAME: Final = "voicestream"
# A DNS name or an IP address (IPv6 without its brackets), as urlsplit gives it.
_HOSTNAME: Final = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|[0-9a-f:.]+")
_BAD_SIGN_IN: Final = "this passkey sign-in is invalid or expired; ask for new options"


@dataclass(frozen=True, slots=True)
class RelyingParty:
    id: str  # a host name: what credentials are bound to
    origin: str  # scheme://host[:port]: where the pages using them are


def _fault(exc: Exception) -> str:
    # The library's own messages say what was wrong (an origin, a flag, a counter); anything
    # else it raised on the caller's bytes is just "malformed".
    return str(exc)[:200] if isinstance(exc, WebAuthnException) else "malformed credential"


class Passkeys:
    def __init__(self, repo: PasskeyRepository, *, public_origin: str | None) -> None:
        self.repo = repo
        self._public_origin = public_origin

    def relying_party(self, scheme: str, host: str) -> RelyingParty:
        origin = self._public_origin or f"{scheme}://{host}"
        try:
            parts = urlsplit(origin)
            hostname, _ = parts.hostname, parts.port  # .port raises for a malformed one
        except ValueError:
            hostname = None
        if not hostname or not _HOSTNAME.fullmatch(hostname):
            raise BadRequest("the request's Host header does not name this server")
        return RelyingParty(hostname, origin.rstrip("/"))

    # --- registration -------------------------------------------------------------------

    async def registration_options(
        self, user_id: UUID, account: str, rp: RelyingParty
    ) -> dict[str, Any]:
        """``PublicKeyCredentialCreationOptions`` (JSON) for ``navigator.credentials.create``."""
        challenge = secrets.token_bytes(_CHALLENGE_BYTES)
        existing = await self.repo.of_user(user_id)
        options = generate_registration_options(
            rp_id=rp.id,
            rp_name=_RP_NAME,
            user_name=account,
            user_id=user_id.bytes,
            challenge=challenge,
            timeout=CEREMONY_TTL_S * 1000,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            # The same authenticator twice would be one factor counted as two passkeys.
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=p.credential_id) for p in existing
            ],
        )
        await self.repo.create_challenge(challenge, "register", user_id, CEREMONY_TTL_S)
        return _as_json(options_to_json(options))

    async def register(
        self, user_id: UUID, credential: dict[str, Any], rp: RelyingParty
    ) -> Passkey:
        """Check an attestation against its challenge and store the passkey.

        Raises:
            ValidationFailed: malformed, unverifiable, or for no live challenge of this user.
            Conflict: that credential is registered already.
        """
        try:
            parsed = parse_registration_credential_json(credential)
            challenge = parse_client_data_json(bytes(parsed.response.client_data_json)).challenge
        except Exception as exc:  # the library parses the caller's bytes
            raise _invalid(_fault(exc)) from None
        if not await self.repo.take_challenge(challenge, "register", user_id):
            raise _invalid("no registration under way for this challenge; ask for new options")
        try:
            verified = verify_registration_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=rp.id,
                expected_origin=rp.origin,
                require_user_verification=True,
            )
        except Exception as exc:  # as above: any failure is theirs
            raise _invalid(f"the credential does not verify: {_fault(exc)}") from None
        passkey = await self.repo.add(
            user_id, verified.credential_id, verified.credential_public_key, verified.sign_count
        )
        if passkey is None:
            raise Conflict("this passkey is registered already")
        return passkey

    # --- sign-in ------------------------------------------------------------------------

    async def authentication_options(self, rp: RelyingParty) -> dict[str, Any]:
        """``PublicKeyCredentialRequestOptions`` (JSON form) for ``navigator.credentials.get``.

        No account is named: the authenticator offers the passkeys it holds for this site
        (discoverable credentials), so the options say nothing about who has an account."""
        challenge = secrets.token_bytes(_CHALLENGE_BYTES)
        options = generate_authentication_options(
            rp_id=rp.id,
            challenge=challenge,
            timeout=CEREMONY_TTL_S * 1000,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        await self.repo.create_challenge(challenge, "login", None, CEREMONY_TTL_S)
        return _as_json(options_to_json(options))

    async def authenticate(self, credential: dict[str, Any], rp: RelyingParty) -> UUID:
        """The user a passkey assertion signs in. Raises AuthError."""
        try:
            parsed = parse_authentication_credential_json(credential)
            challenge = parse_client_data_json(bytes(parsed.response.client_data_json)).challenge
        except Exception as exc:  # the library parses the caller's bytes
            raise AuthError(f"not a passkey assertion: {_fault(exc)}") from None
        # Taken first: a challenge answered with an unknown passkey is used up all the same.
        if not await self.repo.take_challenge(challenge, "login", None):
            raise AuthError(_BAD_SIGN_IN)
        passkey = await self.repo.by_credential_id(bytes(parsed.raw_id))
        handle = parsed.response.user_handle
        if passkey is None or (handle is not None and bytes(handle) != passkey.user_id.bytes):
            raise AuthError("this passkey is not registered here")
        try:
            verified = verify_authentication_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=rp.id,
                expected_origin=rp.origin,
                credential_public_key=passkey.public_key,
                credential_current_sign_count=passkey.sign_count,
                require_user_verification=True,
            )
        except Exception as exc:  # as above: any failure is theirs
            log.info("passkey %s refused: %s", passkey.id, _fault(exc))
            raise AuthError(f"the passkey assertion does not verify: {_fault(exc)}") from None
        if not await self.repo.record_use(passkey.id, passkey.sign_count, verified.new_sign_count):
            raise AuthError(_BAD_SIGN_IN)
        return passkey.user_id


def _invalid(problem: str) -> ValidationFailed:
    return ValidationFailed(
        problem, details={"fields": [{"field": "credential", "message": problem}]}
    )


def _as_json(options: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(options)
    return loaded
