"""Phone calls through Telnyx and Vonage, bridged to the same conversation core as Twilio.

Answer documents (each needs an API key, and hands the socket a short-lived ticket in its URL,
since neither carrier can send our key on the upgrade):

* ``POST /v1/telephony/telnyx/voice?agent_id=…``: TeXML (Telnyx's TwiML-compatible markup),
  ``<Connect><Stream bidirectionalMode="rtp">`` to ``WS /v1/telephony/telnyx``;
* ``GET|POST /v1/telephony/vonage/answer?agent_id=…``: a JSON NCCO whose ``connect`` action
  opens ``WS /v1/telephony/vonage`` as 16 kHz linear PCM.

The sockets accept a ticket from the URL's ``ticket=`` or the carrier's own parameters (Telnyx
``start.custom_parameters.ticket``, a ``ticket`` header of the Vonage NCCO endpoint), or an API
key header; anything else is closed with 1008 before any audio flows.
"""

from __future__ import annotations

from urllib.parse import urlencode
from xml.sax.saxutils import quoteattr

from aiohttp import web

from ..engines.agents.base import AgentConfig
from ..errors import ValidationFailed
from ..protocols import telnyx_media as telnyx
from ..protocols import vonage_media as vonage
from ..protocols.vonage_ncco import connect_websocket
from ..rest.multipart import read_form_fields
from ..rest.resources import AGENTS
from .context import principal_of
from .telephony_bridge import CallFraming, call_ticket, serve_call, ws_base

__all__ = [
    "TELNYX_PATH",
    "TELNYX_VOICE_PATH",
    "VONAGE_ANSWER_PATH",
    "VONAGE_PATH",
    "add_telephony_routes",
]

TELNYX_PATH = "/v1/telephony/telnyx"
TELNYX_VOICE_PATH = "/v1/telephony/telnyx/voice"
VONAGE_PATH = "/v1/telephony/vonage"
VONAGE_ANSWER_PATH = "/v1/telephony/vonage/answer"

_VONAGE_RATE = 16000  # wideband: what the bundled STT model was trained on


def add_telephony_routes(app: web.Application) -> None:
    """Mount the Telnyx and Vonage call sockets and their answer documents."""
    app.router.add_get(TELNYX_PATH, ws_telnyx)
    app.router.add_post(TELNYX_VOICE_PATH, post_telnyx_voice)
    app.router.add_get(VONAGE_PATH, ws_vonage)
    app.router.add_route("GET", VONAGE_ANSWER_PATH, vonage_answer)
    app.router.add_route("POST", VONAGE_ANSWER_PATH, vonage_answer)


# ---- answer documents ----------------------------------------------------------------------


async def _agent_and_ticket(request: web.Request, agent_id: object) -> tuple[AgentConfig, str]:
    rt = request.app
    if not isinstance(agent_id, str) or not agent_id:
        raise ValidationFailed("agent_id is required")
    # The agent must be in the key's workspace: a ticket never reaches across tenants.
    agent = await rt[AGENTS].get_config(str(principal_of(request).workspace_id), agent_id)
    return agent, call_ticket(rt, agent, principal_of(request))


def _socket_url(request: web.Request, path: str, agent: AgentConfig, ticket: str) -> str:
    return f"{ws_base(request)}{path}?{urlencode({'agent_id': agent.id, 'ticket': ticket})}"


async def post_telnyx_voice(request: web.Request) -> web.Response:
    """TeXML for Telnyx's voice webhook: stream the call, both ways, to the agent."""
    form = await read_form_fields(request)
    agent, ticket = await _agent_and_ticket(
        request, request.query.get("agent_id") or form.get("agent_id")
    )
    url = _socket_url(request, TELNYX_PATH, agent, ticket)
    # RTP mode sends our audio back as raw G.711 frames; without it the stream is one-way.
    texml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Response><Connect><Stream url={quoteattr(url)} bidirectionalMode="rtp"/>'
        "</Connect></Response>"
    )
    return web.Response(text=texml, content_type="text/xml")


async def vonage_answer(request: web.Request) -> web.Response:
    """The NCCO for Vonage's answer webhook: connect the call to the agent's socket."""
    agent, ticket = await _agent_and_ticket(request, request.query.get("agent_id"))
    ncco = connect_websocket(
        _socket_url(request, VONAGE_PATH, agent, ticket),
        rate=_VONAGE_RATE,
        headers={"agent_id": agent.id},
    )
    return web.json_response(text=ncco.model_dump_json(by_alias=True))


# ---- the media sockets ---------------------------------------------------------------------


# Telnyx: JSON text frames, G.711 (PCMU or PCMA) 8 kHz both ways, a "stop" at the hang-up.
_TELNYX = CallFraming(
    transport="telnyx",
    ticket_hint="add ticket= to the stream URL, as the TeXML from /v1/telephony/telnyx/voice does",
    new_stream=telnyx.TelnyxStream,
)
# Vonage: binary 16-bit PCM both ways, JSON text events and actions; the hang-up is the close.
_VONAGE = CallFraming(
    transport="vonage",
    ticket_hint=(
        "add ticket= to the websocket URI, as the NCCO from /v1/telephony/vonage/answer does"
    ),
    new_stream=vonage.VonageStream,
)


async def ws_telnyx(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, _TELNYX)


async def ws_vonage(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, _VONAGE)
