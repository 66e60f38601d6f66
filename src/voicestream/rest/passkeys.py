"""``/v1/auth/passkeys/…``: registering a passkey and signing in with one (WebAuthn).

A thin shell over ``identity/passkeys.py``. Each ceremony is two calls: ``…/options`` answers
``{"publicKey": …}`` for ``navigator.credentials.create`` / ``.get``, and ``…/verify`` takes
``{"credential": …}``, the ``PublicKeyCredential`` in its JSON form (``toJSON()``).
Registering needs an access token (checked here: ``/v1/auth/`` is public in the middleware);
signing in needs nothing else and answers a token pair.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from ..identity.audit_trail import audit
from ..identity.passkeys import Passkeys, RelyingParty
from ..store.audit import Actor
from .auth import ACCOUNTS, signed_in_user, tokens_response
from .bodies import read_model

__all__ = ["add_passkey_routes"]


class CredentialBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Checked field by field by the webauthn package; the body limit bounds its size.
    credential: dict[str, Any]


class OptionsResponse(BaseModel):
    # The name the browser API takes: navigator.credentials.create({publicKey}).
    publicKey: dict[str, Any]


class PasskeyModel(BaseModel):
    id: UUID
    created_at: datetime


def _passkeys(request: web.Request) -> Passkeys:
    passkeys = request.config_dict[ACCOUNTS].passkeys
    assert passkeys is not None, "open_accounts always provides passkeys"
    return passkeys


def _relying_party(request: web.Request) -> RelyingParty:
    return _passkeys(request).relying_party(request.scheme, request.host)


def _options(options: dict[str, Any]) -> web.Response:
    body = OptionsResponse(publicKey=options).model_dump(mode="json")
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def registration_options(request: web.Request) -> web.Response:
    user = await signed_in_user(request)
    rp = _relying_party(request)
    return _options(await _passkeys(request).registration_options(user.id, user.email, rp))


async def register(request: web.Request) -> web.Response:
    user = await signed_in_user(request)
    body = await read_model(request, CredentialBody)
    passkey = await _passkeys(request).register(user.id, body.credential, _relying_party(request))
    # After the fact: a 503 here leaves the passkey registered but not yet on record.
    await audit(
        request,
        "auth.passkey_added",
        "passkey",
        passkey.id,
        actor=Actor(display=user.email, user_id=user.id),
        workspace_id=None,
    )
    model = PasskeyModel(id=passkey.id, created_at=passkey.created_at)
    return web.json_response(model.model_dump(mode="json"), status=201)


async def authentication_options(request: web.Request) -> web.Response:
    return _options(await _passkeys(request).authentication_options(_relying_party(request)))


async def sign_in(request: web.Request) -> web.Response:
    body = await read_model(request, CredentialBody)
    user_id = await _passkeys(request).authenticate(body.credential, _relying_party(request))
    pair = await request.config_dict[ACCOUNTS].sign_in_with_second_factor(user_id)
    # Before the tokens leave, as for every sign-in.
    await audit(
        request,
        "auth.signed_in",
        "user",
        user_id,
        details={"method": "passkey"},
        actor=Actor(user_id=user_id),
        workspace_id=None,
    )
    return tokens_response(pair)


def add_passkey_routes(app: web.Application) -> None:
    """Add ``/v1/auth/passkeys/…`` to the auth sub-app (``rest/auth_domain.py``, paths
    relative to ``AUTH_PREFIX``); uses ``ACCOUNTS`` like the rest of ``/v1/auth/``."""
    p = "/passkeys/"
    app.router.add_post(p + "register/options", registration_options)
    app.router.add_post(p + "register/verify", register)
    app.router.add_post(p + "login/options", authentication_options)
    app.router.add_post(p + "login/verify", sign_in)
