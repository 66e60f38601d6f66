"""``/v1/auth/…`` as one sub-app: sign-up and sessions (``auth``), second factors (``mfa``),
passkeys and OAuth sign-in, which share the prefix and the ``ACCOUNTS`` resource."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from .auth import add_auth_routes
from .mfa import add_mfa_routes
from .oauth import add_oauth_routes
from .passkeys import add_passkey_routes
from .saml import add_saml_routes

__all__ = ["AUTH_MOUNT", "auth_app"]

AUTH_MOUNT: Final = "/v1/auth"  # AUTH_PREFIX without its slash: aiohttp's prefix form


def auth_app() -> web.Application:
    """The sub-app to mount at ``AUTH_MOUNT``."""
    app = web.Application()
    add_auth_routes(app)
    add_mfa_routes(app)
    add_passkey_routes(app)
    add_oauth_routes(app)
    add_saml_routes(app)  # /v1/auth/saml/{workspace_id}/…: a workspace's SAML sign-in
    return app
