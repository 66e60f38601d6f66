"""``/v1/auth/oauth/…``: sign-in with Google, GitHub and Apple (authorization code + PKCE).

A thin shell over ``identity/oauth_sign_in.py``, where the rules are. The flow:

1. ``GET /v1/auth/oauth/{provider}/start`` answers ``302`` to the provider's sign-in page (or,
   with ``?redirect=false``, ``{"url": …}`` for a page that navigates itself).
2. The provider sends the browser back to ``/v1/auth/oauth/{provider}/callback``: a GET with
   ``code`` and ``state`` in the query (Google, GitHub), or a form POST (Apple).
3. The callback answers exactly as ``POST /v1/auth/login`` does: a token pair as JSON, or,
   with a second factor on, ``{"mfa_required": true, "mfa_token": …}`` to finish at
   ``POST /v1/auth/mfa/verify``. It does not redirect anywhere: a front end that wants the
   tokens in its own page opens the flow in a popup or reads the callback's JSON itself.

The callback URL registered with each provider is ``<origin>/v1/auth/oauth/<provider>/callback``,
where the origin is ``VOICESTREAM_PUBLIC_ORIGIN`` when set, else the one the request to
``start`` reached.

Under ``/v1/auth/``, so no credential is needed: these routes are how a caller gets one.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from ..identity.audit_trail import audit
from ..identity.oauth_providers import ProviderName
from ..identity.oauth_sign_in import STATE_TTL_S, OAuthSignIn
from ..protocols.json_messages import validate_model
from ..store.audit import Actor
from .auth import AUTH_PREFIX, sign_in_page_response, sign_in_response
from .multipart import read_form_fields
from .resources import SETTINGS

__all__ = [
    "OAUTH_SIGN_IN",
    "OAuthProvidersResponse",
    "OAuthStartQuery",
    "OAuthStartResponse",
    "add_oauth_routes",
]

OAUTH_SIGN_IN: web.AppKey[OAuthSignIn] = web.AppKey("voicestream_oauth_sign_in", OAuthSignIn)
_PREFIX: Final = AUTH_PREFIX + "oauth/"


class OAuthStartQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # false: answer {"url"} instead of redirecting (for a page that opens it itself).
    redirect: bool = True


class OAuthStartResponse(BaseModel):
    url: str  # the provider's sign-in page; holds this sign-in's state
    expires_in: int  # seconds left to come back to the callback


class OAuthProvidersResponse(BaseModel):
    providers: list[ProviderName]  # those this server is set up for


def _callback_uri(request: web.Request, provider: str) -> str:
    origin = request.config_dict[SETTINGS].public_origin or f"{request.scheme}://{request.host}"
    return f"{origin}{_PREFIX}{provider}/callback"


async def list_providers(request: web.Request) -> web.Response:
    names = request.config_dict[OAUTH_SIGN_IN].enabled()
    body = OAuthProvidersResponse.model_validate({"providers": names})
    return web.json_response(body.model_dump(mode="json"))


async def start(request: web.Request) -> web.Response:
    name = request.match_info["provider"]
    query = validate_model(OAuthStartQuery, dict(request.query), "query string")
    url = await request.config_dict[OAUTH_SIGN_IN].start(name, _callback_uri(request, name))
    body = OAuthStartResponse(url=url, expires_in=STATE_TTL_S)
    return sign_in_page_response(url, body, redirect=query.redirect)


async def callback(request: web.Request) -> web.Response:
    name = request.match_info["provider"]
    # Apple posts the answer as a form (response_mode=form_post); the others use the query.
    source = await read_form_fields(request) if request.method == "POST" else request.query
    params = dict(source.items())
    result = await request.config_dict[OAUTH_SIGN_IN].finish(name, params)
    actor = Actor(user_id=result.user_id)
    # Before anything leaves, as for every sign-in: one the audit log cannot record (503)
    # does not happen. The link itself stays; the retry then finds it.
    if result.linked:
        await audit(
            request,
            "auth.identity_linked",
            "user",
            result.user_id,
            details={"provider": name, "new_user": result.created},
            actor=actor,
            workspace_id=None,
        )
    return await sign_in_response(request, result.outcome, {"method": "oauth", "provider": name})


def add_oauth_routes(app: web.Application) -> None:
    """Add ``/v1/auth/oauth/…`` to the auth sub-app (``rest/auth_domain.py``, paths relative
    to ``AUTH_PREFIX``); the root app must hold ``OAUTH_SIGN_IN`` by the time requests
    arrive."""
    p = "/oauth/"
    app.router.add_get(p + "providers", list_providers)
    app.router.add_get(p + "{provider}/start", start)
    app.router.add_get(p + "{provider}/callback", callback)
    app.router.add_post(p + "{provider}/callback", callback)
