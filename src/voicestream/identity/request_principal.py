"""Who the current request acts as: the request key the auth middleware sets.

It lives in ``identity`` rather than ``transports`` so that the domain services and the REST
resources below ``transports`` (the audit trail, ``rest/``) can read it without importing
upwards; ``transports.context`` re-exports it for the handlers that already use it there.
"""

from __future__ import annotations

from aiohttp import web

from ..store.keys import Principal

__all__ = ["PRINCIPAL", "optional_principal", "principal_of"]

# Request-scoped, set by the auth middleware.
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("voicestream_principal", Principal)


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def optional_principal(request: web.Request) -> Principal | None:
    """The principal on routes where a key is optional (``key_optional`` in identity/policy.py)."""
    return request.get(PRINCIPAL)
