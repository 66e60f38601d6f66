"""``/v1/auth/…``: sign-up, e-mail verification, sign-in, sessions, magic links, resets.

A thin shell over ``identity/accounts.py``, where the rules (and what they reveal) are
written down. Every route here is public in the auth middleware except that ``GET me``
checks its own access token: these routes are how a caller gets one.

Responses that carry tokens say ``Cache-Control: no-store`` (RFC 6749 §5.1): no proxy or
browser cache may keep them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal
from uuid import UUID

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from ..errors import AuthError
from ..identity.accounts import MAX_EMAIL_CHARS, Accounts, TokenPair, check_email
from ..identity.audit_trail import audit
from ..identity.members import MEMBERS
from ..identity.passwords import MAX_PASSWORD_CHARS
from ..identity.second_factor import MfaChallenge
from ..identity.sign_in_limits import SIGN_IN_LIMITS
from ..store.audit import Actor
from ..store.keys import Role
from ..store.users import User
from .bodies import read_model
from .secret_fields import SECRET_INPUT, optional_secret

__all__ = [
    "ACCOUNTS",
    "AUTH_PREFIX",
    "add_auth_routes",
    "sign_in_page_response",
    "sign_in_response",
    "signed_in_user",
    "tokens_response",
]

ACCOUNTS: web.AppKey[Accounts] = web.AppKey("voicestream_accounts", Accounts)
AUTH_PREFIX: Final = "/v1/auth/"
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}

Email = Annotated[str, StringConstraints(max_length=MAX_EMAIL_CHARS), AfterValidator(check_email)]
Password = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_CHARS), SECRET_INPUT
]
# Ours are 47 characters; the bound only keeps junk short.
OpaqueToken = Annotated[str, StringConstraints(min_length=1, max_length=200), SECRET_INPUT]
WorkspaceName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignUpBody(_Body):
    email: Email
    password: Annotated[str, StringConstraints(max_length=MAX_PASSWORD_CHARS)] | None = (
        optional_secret()
    )
    workspace: WorkspaceName | None = None


class LoginBody(_Body):
    email: Email
    password: Password


class EmailBody(_Body):
    email: Email


class TokenBody(_Body):
    token: OpaqueToken


class RefreshBody(_Body):
    refresh_token: OpaqueToken


class ResetConfirmBody(_Body):
    token: OpaqueToken
    password: Password


class SignUpResponse(BaseModel):
    status: Literal["verification_sent"] = "verification_sent"
    email: str


class AcceptedResponse(BaseModel):
    status: Literal["accepted"] = "accepted"
    message: str


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str


class MfaRequiredResponse(BaseModel):
    """The first factor was right; POST the token and a code to /v1/auth/mfa/verify."""

    mfa_required: Literal[True] = True
    mfa_token: str
    methods: list[Literal["totp", "recovery_code"]]
    expires_in: int


class UserModel(BaseModel):
    id: UUID
    email: str
    email_verified: bool
    created_at: datetime


class MembershipModel(BaseModel):
    workspace_id: UUID
    workspace: str
    role: Role
    joined_at: datetime


class MeResponse(BaseModel):
    user: UserModel
    memberships: list[MembershipModel]


def _json(model: BaseModel, status: int = 200, *, secret: bool = False) -> web.Response:
    return web.json_response(
        model.model_dump(mode="json"), status=status, headers=_NO_STORE if secret else None
    )


def tokens_response(pair: TokenPair) -> web.Response:
    body = TokenResponse(
        access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token
    )
    return _json(body, secret=True)


def sign_in_page_response(url: str, body: BaseModel, *, redirect: bool) -> web.Response:
    """Sends the browser on to an identity provider's sign-in page at ``url``, or, for a page
    that navigates itself, answers ``body`` (which names it) as JSON."""
    if not redirect:
        return _json(body, secret=True)
    return web.Response(status=302, headers={"Location": url, **_NO_STORE})


async def sign_up(request: web.Request) -> web.Response:
    body = await read_model(request, SignUpBody)
    await request.config_dict[ACCOUNTS].sign_up(body.email, body.password, body.workspace)
    return _json(SignUpResponse(email=body.email), 201)


async def verify_email(request: web.Request) -> web.Response:
    body = await read_model(request, TokenBody)
    await request.config_dict[ACCOUNTS].verify_email(body.token)
    return web.Response(status=204)


async def sign_in_response(
    request: web.Request,
    outcome: TokenPair | MfaChallenge,
    details: dict[str, object],
    *,
    email: str | None = None,
) -> web.Response:
    """The answer to a first factor, the same for every way of signing in: a second factor to
    ask for, or the tokens, audited as ``auth.signed_in`` with ``details``."""
    if isinstance(outcome, MfaChallenge):
        # Not signed in yet, so no auth.signed_in entry: that comes after the second factor.
        body = MfaRequiredResponse(
            mfa_token=outcome.mfa_token, methods=outcome.methods, expires_in=outcome.expires_in
        )
        return _json(body, secret=True)
    # Before the tokens leave: a sign-in the audit log cannot record does not happen (503).
    await audit(
        request,
        "auth.signed_in",
        "user",
        outcome.user_id,
        details=details,
        actor=Actor(display=email, user_id=outcome.user_id),
        workspace_id=None,
    )
    return tokens_response(outcome)


async def login(request: web.Request) -> web.Response:
    body = await read_model(request, LoginBody)
    # Counted per e-mail before the password is looked at: 429 past the failures allowed.
    async with request.config_dict[SIGN_IN_LIMITS].password_attempt(request, body.email):
        pair = await request.config_dict[ACCOUNTS].login(body.email, body.password)
    return await sign_in_response(request, pair, {"method": "password"}, email=body.email)


async def refresh(request: web.Request) -> web.Response:
    body = await read_model(request, RefreshBody)
    return tokens_response(await request.config_dict[ACCOUNTS].refresh(body.refresh_token))


async def logout(request: web.Request) -> web.Response:
    body = await read_model(request, RefreshBody)
    await request.config_dict[ACCOUNTS].logout(body.refresh_token)
    return web.Response(status=204)


async def logout_everywhere(request: web.Request) -> web.Response:
    user = await signed_in_user(request)
    workspace_ids = await request.config_dict[ACCOUNTS].sign_out_everywhere(user.id)
    # The hook a removal uses: their session's and tickets' sockets close here at once.
    await request.config_dict[MEMBERS].sessions_ended(user.id, workspace_ids)
    # After the fact: signing out stands whether or not the entry could be written (503).
    await audit(
        request,
        "auth.signed_out_everywhere",
        "user",
        user.id,
        actor=Actor(display=user.email, user_id=user.id),
        workspace_id=None,
    )
    return web.Response(status=204)


async def request_magic_link(request: web.Request) -> web.Response:
    body = await read_model(request, EmailBody)
    await request.config_dict[ACCOUNTS].request_magic_link(body.email)
    message = "if an account has this address, a sign-in link is on its way"
    return _json(AcceptedResponse(message=message), 202)


async def redeem_magic_link(request: web.Request) -> web.Response:
    body = await read_model(request, TokenBody)
    pair = await request.config_dict[ACCOUNTS].redeem_magic_link(body.token)
    return await sign_in_response(request, pair, {"method": "magic_link"})


async def request_password_reset(request: web.Request) -> web.Response:
    body = await read_model(request, EmailBody)
    await request.config_dict[ACCOUNTS].request_password_reset(body.email)
    message = "if an account has this address, a reset link is on its way"
    return _json(AcceptedResponse(message=message), 202)


async def confirm_password_reset(request: web.Request) -> web.Response:
    body = await read_model(request, ResetConfirmBody)
    user_id = await request.config_dict[ACCOUNTS].confirm_password_reset(body.token, body.password)
    # After the fact (the password is already changed): a failed entry is a 503 to retry on,
    # and the retry finds the link used up; the reset itself stands.
    actor = Actor(user_id=user_id)
    await audit(request, "auth.password_reset", "user", user_id, actor=actor, workspace_id=None)
    return web.Response(status=204)


async def signed_in_user(request: web.Request) -> User:
    """The user whose access token this request carries. Raises AuthError."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if not token or token.startswith("vs_"):
        raise AuthError(
            "this route is for signed-in people: send 'Authorization: Bearer <access token>' "
            "from /v1/auth/login (an API key has no user)"
        )
    return await request.config_dict[ACCOUNTS].user_of(token)


async def me(request: web.Request) -> web.Response:
    user = await signed_in_user(request)
    memberships = await request.config_dict[ACCOUNTS].memberships(user.id)
    body = MeResponse(
        user=UserModel(
            id=user.id,
            email=user.email,
            email_verified=user.email_verified_at is not None,
            created_at=user.created_at,
        ),
        memberships=[
            MembershipModel(
                workspace_id=m.workspace_id,
                workspace=m.workspace_name,
                role=m.role,
                joined_at=m.created_at,
            )
            for m in memberships
        ],
    )
    return _json(body)


def add_auth_routes(app: web.Application) -> None:
    """Add ``/v1/auth/…`` to the auth sub-app (``rest/auth_domain.py``, paths relative to
    ``AUTH_PREFIX``); the root app must hold ``ACCOUNTS`` by the time requests arrive."""
    p = "/"
    app.router.add_post(p + "signup", sign_up)
    app.router.add_post(p + "verify-email", verify_email)
    app.router.add_post(p + "login", login)
    app.router.add_post(p + "refresh", refresh)
    app.router.add_post(p + "logout", logout)
    app.router.add_post(p + "logout-everywhere", logout_everywhere)
    app.router.add_post(p + "magic-link", request_magic_link)
    app.router.add_post(p + "magic-link/redeem", redeem_magic_link)
    app.router.add_post(p + "password-reset", request_password_reset)
    app.router.add_post(p + "password-reset/confirm", confirm_password_reset)
    app.router.add_get(p + "me", me)
