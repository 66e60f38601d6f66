"""Conversation tickets: short-lived signed tokens that let a browser widget, which must not
hold an API key, open one conversation with one agent.

``POST /v1/convai/tickets`` (with a key) mints one; the widget passes it as ``ticket``. HS256
with the server's secret, and verification pins the algorithm, issuer, audience and the claims
it needs (RFC 8725), so a token minted for anything else is refused.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..errors import AuthError
from .context import RUNTIME, principal_of
from .http_common import read_model

__all__ = ["Ticket", "mint_ticket", "post_ticket", "verify_ticket"]

_ISSUER = "voicestream"
_AUDIENCE = "convai"
_ALGORITHM = "HS256"
MAX_TTL_S = 3600


@dataclass(frozen=True, slots=True)
class Ticket:
    workspace_id: str
    agent_id: str
    end_user_id: str | None


def mint_ticket(
    secret: str, *, workspace_id: str, agent_id: str, end_user_id: str | None, ttl_s: int
) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": _ISSUER,
        "aud": _AUDIENCE,
        "sub": agent_id,
        "wsp": workspace_id,
        "iat": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if end_user_id:
        claims["uid"] = end_user_id
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def verify_ticket(secret: str, token: str) -> Ticket:
    """Raises ``AuthError`` for anything but a valid, unexpired ticket of ours."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            audience=_AUDIENCE,
            issuer=_ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("the conversation ticket has expired") from None
    except jwt.PyJWTError:
        raise AuthError("invalid conversation ticket") from None
    workspace = claims.get("wsp")
    if not isinstance(workspace, str):
        raise AuthError("invalid conversation ticket")
    uid = claims.get("uid")
    return Ticket(workspace, str(claims["sub"]), uid if isinstance(uid, str) else None)


class TicketRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(min_length=1, max_length=100)
    end_user_id: str | None = Field(None, min_length=1, max_length=200)
    ttl_seconds: int = Field(600, ge=10, le=MAX_TTL_S)


async def post_ticket(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    body = await read_model(request, TicketRequest)
    principal = principal_of(request)
    # The agent must exist in the caller's workspace: a ticket never reaches across tenants.
    agent = await rt.agents.get_config(str(principal.workspace_id), body.agent_id)
    token = mint_ticket(
        rt.secret_key,
        workspace_id=agent.workspace_id,
        agent_id=agent.id,
        end_user_id=body.end_user_id,
        ttl_s=body.ttl_seconds,
    )
    return web.json_response(
        {"ticket": token, "agent_id": agent.id, "expires_in": body.ttl_seconds}, status=201
    )
