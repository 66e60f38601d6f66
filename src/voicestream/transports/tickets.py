"""``POST /v1/convai/tickets``: a key-authenticated backend mints a ``webchat`` ticket for the
widget (what a ticket is and how it is checked: ``identity.tickets``)."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ValidationFailed
from ..identity.tickets import END_USER_ID, END_USER_RULE, MAX_TTL_S, mint_ticket
from ..rest.bodies import read_model
from ..rest.resources import AGENTS, SECRET_KEY
from .context import principal_of

__all__ = ["TicketRequest", "TicketResponse", "post_ticket"]


class TicketRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(min_length=1, max_length=100)
    end_user_id: str | None = Field(None, min_length=1, max_length=200)
    ttl_seconds: int = Field(600, ge=10, le=MAX_TTL_S)


class TicketResponse(BaseModel):
    ticket: str = Field(
        description="Opens one conversation with the agent (as `ticket=` on the socket or "
        "the WebRTC offer) until it expires."
    )
    agent_id: str
    end_user_id: str | None
    transport: Literal["webchat"]
    expires_in: int = Field(description="Seconds until the ticket expires.")


async def post_ticket(request: web.Request) -> web.Response:
    rt = request.app
    body = await read_model(request, TicketRequest)
    if body.end_user_id is not None and not END_USER_ID.fullmatch(body.end_user_id):
        raise ValidationFailed(END_USER_RULE, details={"field": "end_user_id"})
    principal = principal_of(request)
    # The agent must exist in the caller's workspace: a ticket never reaches across tenants.
    agent = await rt[AGENTS].get_config(str(principal.workspace_id), body.agent_id)
    token = mint_ticket(
        rt[SECRET_KEY],
        workspace_id=agent.workspace_id,
        agent_id=agent.id,
        end_user_id=body.end_user_id,
        ttl_s=body.ttl_seconds,
        family="webchat",
        key_id=principal.key_id,
        user_id=principal.user_id,  # a signed-in member's ticket dies with their access
    )
    minted = TicketResponse(
        ticket=token,
        agent_id=agent.id,
        end_user_id=body.end_user_id,
        transport="webchat",
        expires_in=body.ttl_seconds,
    )
    return web.json_response(text=minted.model_dump_json(), status=201)
