"""``/v1/auth/mfa/…``: TOTP enrolment, recovery codes, and the second step of signing in.

A thin shell over ``identity/second_factor.py``, where the rules are. Under ``/v1/auth/``, so
the auth middleware lets these through: enrolment and turning off check the caller's access
token here (``signed_in_user``), and ``verify`` takes the challenge token from the first step
of signing in instead of one.

What each answers when the code is wrong: ``verify`` 401 (no sign-in), ``confirm`` 422 (the
code is a field that does not match), ``DELETE`` 403 (signed in, but not allowed without a
current code).
"""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from ..identity.access_tokens import hash_token
from ..identity.audit_trail import audit
from ..identity.second_factor import SecondFactors
from ..identity.sign_in_limits import SIGN_IN_LIMITS
from ..store.audit import Actor
from ..store.users import User
from .auth import ACCOUNTS, signed_in_user, tokens_response
from .bodies import read_model
from .secret_fields import SECRET_INPUT, optional_secret, shown_once

__all__ = ["add_mfa_routes"]

# Six digits, give or take the spaces an app shows; the bounds only keep junk short.
Code = Annotated[str, StringConstraints(min_length=1, max_length=16), SECRET_INPUT]
RecoveryCode = Annotated[str, StringConstraints(min_length=1, max_length=32), SECRET_INPUT]
MfaToken = Annotated[str, StringConstraints(min_length=1, max_length=200), SECRET_INPUT]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfirmBody(_Body):
    code: Code


class _OneFactor(_Body):
    code: Code | None = optional_secret()
    recovery_code: RecoveryCode | None = optional_secret()

    @model_validator(mode="after")
    def _exactly_one(self) -> _OneFactor:
        if (self.code is None) == (self.recovery_code is None):
            raise ValueError("send exactly one of code and recovery_code")
        return self


class DisableBody(_OneFactor):
    pass


class VerifyBody(_OneFactor):
    mfa_token: MfaToken


class MfaStatusResponse(BaseModel):
    methods: list[Literal["totp", "recovery_code"]]
    recovery_codes_left: int


class TotpEnrolmentResponse(BaseModel):
    status: Literal["pending_confirmation"] = "pending_confirmation"
    otpauth_uri: str = shown_once(
        "The TOTP secret, as a URI for the authenticator app (usually shown as a QR code)."
    )


class RecoveryCodesResponse(BaseModel):
    status: Literal["enabled"] = "enabled"
    recovery_codes: list[str] = shown_once(
        "Each works once in place of a code; the server keeps only their hashes."
    )


def _factors(request: web.Request) -> SecondFactors:
    factors = request.config_dict[ACCOUNTS].second_factors
    assert factors is not None, "open_accounts always provides second factors"
    return factors


def _json(model: BaseModel, status: int = 200) -> web.Response:
    # Every answer here is about a person's factors; none may sit in a cache.
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    return web.json_response(model.model_dump(mode="json"), status=status, headers=headers)


def _as_actor(user: User) -> Actor:
    return Actor(display=user.email, user_id=user.id)


async def get_status(request: web.Request) -> web.Response:
    user = await signed_in_user(request)
    factors = _factors(request)
    methods = await factors.methods(user.id)
    left = await factors.repo.recovery_codes_left(user.id) if methods else 0
    return _json(MfaStatusResponse(methods=methods, recovery_codes_left=left))


async def start_totp(request: web.Request) -> web.Response:
    user = await signed_in_user(request)
    uri = await _factors(request).start_totp(user.id, user.email)
    return _json(TotpEnrolmentResponse(otpauth_uri=uri), 201)


async def confirm_totp(request: web.Request) -> web.Response:
    user = await signed_in_user(request)
    body = await read_model(request, ConfirmBody)
    async with request.config_dict[SIGN_IN_LIMITS].code_attempt(request, user.id):
        codes = await _factors(request).confirm_totp(user.id, body.code)
    # After the fact: if the entry cannot be written the caller gets a 503 and no recovery
    # codes; the factor is on, and a code from the app turns it off to enrol again.
    await audit(
        request,
        "auth.mfa_enabled",
        "user",
        user.id,
        details={"method": "totp"},
        actor=_as_actor(user),
        workspace_id=None,
    )
    return _json(RecoveryCodesResponse(recovery_codes=codes))


async def disable_totp(request: web.Request) -> web.Response:
    user = await signed_in_user(request)
    body = await read_model(request, DisableBody)
    async with request.config_dict[SIGN_IN_LIMITS].code_attempt(request, user.id):
        method = await _factors(request).disable(user.id, body.code, body.recovery_code)
    actor = _as_actor(user)
    # After the fact, as above: a 503 here means the factor is off but not yet on record.
    if method == "recovery_code":
        await audit(
            request, "auth.recovery_code_used", "user", user.id, actor=actor, workspace_id=None
        )
    await audit(
        request,
        "auth.mfa_disabled",
        "user",
        user.id,
        details={"method": "totp", "proved_with": method},
        actor=actor,
        workspace_id=None,
    )
    return web.Response(status=204)


async def verify(request: web.Request) -> web.Response:
    body = await read_model(request, VerifyBody)
    factors = _factors(request)
    # Counted per user, not per challenge: a fresh challenge must not restart the count.
    owner = await factors.repo.challenge_user(hash_token(body.mfa_token))
    if owner is None:
        used = await factors.verify(body.mfa_token, body.code, body.recovery_code)
    else:
        async with request.config_dict[SIGN_IN_LIMITS].code_attempt(request, owner):
            used = await factors.verify(body.mfa_token, body.code, body.recovery_code)
    pair = await request.config_dict[ACCOUNTS].sign_in_with_second_factor(used.user_id)
    actor = Actor(user_id=used.user_id)
    # Before the tokens leave, as for every sign-in: one the log cannot record does not happen.
    if used.method == "recovery_code":
        await audit(
            request, "auth.recovery_code_used", "user", used.user_id, actor=actor, workspace_id=None
        )
    await audit(
        request,
        "auth.signed_in",
        "user",
        used.user_id,
        details={"method": used.method, "first_factor": used.first_factor},
        actor=actor,
        workspace_id=None,
    )
    return tokens_response(pair)


def add_mfa_routes(app: web.Application) -> None:
    """Add ``/v1/auth/mfa/…`` to the auth sub-app (``rest/auth_domain.py``, paths relative to
    ``AUTH_PREFIX``); uses ``ACCOUNTS`` like the rest of ``/v1/auth/``."""
    p = "/mfa"
    app.router.add_get(p, get_status)
    app.router.add_post(p + "/totp", start_totp)
    app.router.add_post(p + "/totp/confirm", confirm_totp)
    app.router.add_delete(p + "/totp", disable_totp)
    app.router.add_post(p + "/verify", verify)
