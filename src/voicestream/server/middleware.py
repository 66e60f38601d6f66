"""Middlewares: every failure becomes a JSON error; every route takes the credential its
policy entry says (``identity/policy.py``): most need an API key or a signed-in user's access
token (``Authorization: Bearer <JWT>``), and the principal's role and scopes are checked there."""

from __future__ import annotations

import logging
import re
from uuid import UUID

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import AuthError, BadRequest, EngineUnavailable, Forbidden, NotFound, VoiceStreamError
from ..identity import policy
from ..identity.page_origins import require_origin
from ..rest.auth import ACCOUNTS
from ..rest.openapi import WORKSPACE_HEADER
from ..rest.resources import API_KEYS, METRICS
from ..rest.scim import SCIM_PREFIX, scim_error_response
from ..store.keys import KEY_PREFIX, Principal
from ..store.services import outage_error
from ..transports.context import PRINCIPAL
from .request_validation import CLIENT_FAULTS, check_request_text
from .route_policy import rule_of

__all__ = [
    "WORKSPACE_HEADER",
    "auth_middleware",
    "error_middleware",
]

log = logging.getLogger(__name__)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS] if METRICS in request.app else None
    status = 500
    try:
        check_request_text(request)
        response = await handler(request)
        status = response.status
        return response
    except VoiceStreamError as err:
        status = err.http_status
        if metrics is not None:
            metrics.errors.labels(err.code).inc()
        if status < 500 and request.path.startswith(SCIM_PREFIX + "/"):
            scim_answer = scim_error_response(err)  # an identity provider reads SCIM errors
            status = scim_answer.status
            return scim_answer
        return web.json_response(err.to_dict(), status=status, headers=_retry_after(err))
    except web.HTTPException as exc:
        status = exc.status
        if status < 400:
            raise
        code = _HTTP_CODES.get(status, "http_error")
        body = {"error": {"code": code, "message": exc.reason}}
        return web.json_response(body, status=status, headers=_allow_header(exc))
    except CLIENT_FAULTS as exc:
        # A body aiohttp could not decode as it arrived (bad chunking, bad compression).
        status = 400
        log.info("%s %s: malformed request body: %.200s", request.method, request.path, exc)
        body = {"error": {"code": "bad_request", "message": "malformed request body"}}
        response = web.json_response(body, status=status)
        response.force_close()  # the rest of the body cannot be framed: no next request
        return response
    except (ConnectionError, TimeoutError) as exc:
        if request.transport is None or request.transport.is_closing():
            # The client went away mid-response; there is nobody to answer.
            status = 499
            log.debug("connection lost during %s: %s", request.path, exc)
            raise
        # The client is still there: one of our own outgoing calls was refused or timed out.
        # Re-raising would make aiohttp answer a plain-text 500.
        unavailable = EngineUnavailable("a service this request needs did not answer; retry")
        status = unavailable.http_status
        log.warning("%s %s: upstream call failed: %r", request.method, request.path, exc)
        return web.json_response(unavailable.to_dict(), status=status, headers={"Retry-After": "2"})
    except Exception as exc:
        if (outage := outage_error(exc)) is not None:
            # A database or Redis call outside the repositories (which already raise this).
            status = outage.http_status
            log.warning("%s %s: %s (%s)", request.method, request.path, outage.message, exc)
            return web.json_response(outage.to_dict(), status=status, headers=_retry_after(outage))
        log.exception("unhandled error on %s %s", request.method, request.path)
        body = {"error": {"code": "internal_error", "message": "internal server error"}}
        return web.json_response(body, status=500)
    finally:
        if metrics is not None:
            metrics.requests.labels(_route_name(request), str(status)).inc()


def _retry_after(err: VoiceStreamError) -> dict[str, str]:
    # Busy (429) and ServiceUnavailable (503) say how long to wait; other errors do not.
    if err.retry_after_s is not None:
        return {"Retry-After": str(err.retry_after_s)}
    return {}


def _allow_header(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


# Browsers cannot set headers on a WebSocket; their SDKs put the key in a subprotocol instead:
# OpenAI's Realtime client offers "openai-insecure-api-key.<key>", ElevenLabs' JS client
# "bearer.<key>". The handler then selects the plain subprotocol ("realtime", "convai").
_KEY_SUBPROTOCOLS = ("openai-insecure-api-key.", "bearer.")


def _presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    if key := request.headers.get("xi-api-key"):
        return key
    for offered in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        offered = offered.strip()
        for prefix in _KEY_SUBPROTOCOLS:
            if offered.startswith(prefix) and len(offered) > len(prefix):
                return offered[len(prefix) :]
    return None


def _access_token(request: web.Request) -> str | None:
    """A bearer credential shaped like a JWT (three dot-separated parts): a user's access
    token. Only from the Authorization header; the other places a key may travel take keys
    alone, and anything else in the header is tried as a key (and refused as one)."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
        if token.count(".") == 2 and not token.startswith(KEY_PREFIX):
            return token
    return None


# A workspace's own routes act in the workspace their path names, whatever the header says.
_WORKSPACE_PATH = re.compile(r"/v1/workspaces/([^/]+)(/.+)?")


def _workspace_asked(request: web.Request) -> UUID | None:
    if (in_path := _WORKSPACE_PATH.fullmatch(request.path)) is not None:
        try:
            return UUID(in_path.group(1))
        except ValueError:
            raise NotFound("no such workspace") from None
    raw = request.headers.get(WORKSPACE_HEADER)
    if raw is None:
        return None
    try:
        return UUID(raw.strip())
    except ValueError:
        raise BadRequest(
            f"{WORKSPACE_HEADER} must be a workspace id (a UUID, as in GET /v1/auth/me)"
        ) from None


async def _user_principal(request: web.Request, token: str) -> Principal:
    # The membership is read on every request (one indexed query), so a member removed or a
    # user disabled loses access at once, not when the token expires.
    asked = _workspace_asked(request)
    try:
        return await request.app[ACCOUNTS].principal(token, asked)
    except Forbidden:
        # A workspace named in the path that the user is no member of is as missing as one
        # that does not exist (the header keeps its 403: it names no resource).
        if _WORKSPACE_PATH.fullmatch(request.path):
            raise NotFound("no such workspace") from None
        raise


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rule = rule_of(request)  # None: no route matched, and the handler answers 404 or 405
    if rule is None and request.path.startswith(SCIM_PREFIX + "/"):
        # SCIM answers its own 404 and 405, as SCIM errors, after its own token check.
        return await handler(request)
    if rule is not None and rule.credential_free:
        # Public routes; /v1/auth/… is how a caller gets credentials; a person's own routes
        # (their workspaces, GET /v1/auth/me, MFA) check the access token themselves.
        return await handler(request)
    principal: Principal | None
    if (token := _access_token(request)) is not None:
        principal = await _user_principal(request, token)
    else:
        key = _presented_key(request)
        if key is None and rule is not None and rule.access == "key_optional":
            # A browser or a carrier holds no key: the handler checks the ticket, the public
            # agent or the webhook's signature instead. A key that is presented is checked.
            return await handler(request)
        if key is None:
            raise AuthError(
                "missing API key: send 'Authorization: Bearer <key>' or 'xi-api-key: <key>'"
            )
        principal = await request.app[API_KEYS].authenticate(key)
        if principal is None:
            raise AuthError("invalid or revoked API key")
    # Role and scope rules, before any handler (and so before any WebSocket upgrade).
    if rule is not None:
        policy.check(principal, rule)
    # A page the server-wide Origin rules do not know: its workspace's list decides.
    await require_origin(request, principal.workspace_id)
    request[PRINCIPAL] = principal
    return await handler(request)
