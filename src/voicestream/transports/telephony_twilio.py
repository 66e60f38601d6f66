"""Phone calls through Twilio Media Streams, bridged to a conversation.

``POST /v1/telephony/twilio/voice`` (Twilio's voice webhook) answers with TwiML that connects
the call to ``WS /v1/telephony/twilio?agent_id=…`` and hands it a short-lived ticket as a
``<Parameter>``: Twilio cannot send our key on the upgrade, so the socket opens without one and
checks the ticket from ``start.customParameters`` before it touches any audio.

The webhook takes either of two proofs:

* our API key, as every API call: any agent of the key's workspace;
* Twilio's ``X-Twilio-Signature``, checked with ``VOICESTREAM_TWILIO_AUTH_TOKEN``, for setups
  where Twilio cannot send a key. The token is one per server, so a signature proves that the
  request came from that Twilio account, not which workspace it speaks for: a signed webhook
  reaches **public agents only** (ones anyone may already talk to through the widget), and a
  private agent still needs the key. Otherwise whoever holds the one Twilio account could reach
  every workspace's private agents.

On the socket (``telephony_bridge``): caller μ-law 8 kHz → 16 kHz PCM → the session; agent
audio → 20 ms μ-law ``media`` frames at playback pace, a ``mark`` after each agent utterance,
``clear`` on barge-in, DTMF digits to the agent, ``stop`` ends the call.
"""

from __future__ import annotations

from urllib.parse import urlencode
from xml.sax.saxutils import quoteattr

from aiohttp import web

from ..engines.agents.base import AgentConfig
from ..errors import AuthError, Forbidden, NotFound, ValidationFailed
from ..protocols import twilio_media as twilio
from ..rest.multipart import read_form_fields
from ..rest.resources import AGENTS, SETTINGS
from .context import optional_principal
from .telephony_bridge import CallFraming, call_ticket, http_base, serve_call, ws_base
from .twilio_signature import signature_matches

__all__ = ["STREAM_PATH", "VOICE_PATH", "add_twilio_routes", "post_twilio_voice", "ws_twilio"]

STREAM_PATH = "/v1/telephony/twilio"
VOICE_PATH = "/v1/telephony/twilio/voice"
SIGNATURE_HEADER = "X-Twilio-Signature"


def add_twilio_routes(app: web.Application) -> None:
    app.router.add_get(STREAM_PATH, ws_twilio)
    app.router.add_post(VOICE_PATH, post_twilio_voice)


# ---- TwiML ---------------------------------------------------------------------------------


async def post_twilio_voice(request: web.Request) -> web.Response:
    rt = request.app
    form = await read_form_fields(request)
    principal = optional_principal(request)
    if principal is None:
        # Before anything else is said about the request.
        _check_signature(request, [(k, v) for k, v in form.items() if isinstance(v, str)])
    agent_id = request.query.get("agent_id") or form.get("agent_id")
    if not isinstance(agent_id, str) or not agent_id:
        raise ValidationFailed("agent_id is required (query or form field)")
    agent = await _webhook_agent(request, agent_id)
    url = f"{ws_base(request)}{STREAM_PATH}?{urlencode({'agent_id': agent.id})}"
    ticket = call_ticket(rt, agent, principal)
    twiml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Connect><Stream url={quoteattr(url)}>"
        f'<Parameter name="ticket" value={quoteattr(ticket)}/>'
        "</Stream></Connect></Response>"
    )
    return web.Response(text=twiml, content_type="text/xml")


def _check_signature(request: web.Request, params: list[tuple[str, str]]) -> None:
    """No key was sent: the request must carry Twilio's valid signature."""
    signature = request.headers.get(SIGNATURE_HEADER)
    if signature is None:
        raise AuthError(
            "missing API key: send 'Authorization: Bearer <key>' or 'xi-api-key: <key>', "
            f"or let Twilio sign the webhook ({SIGNATURE_HEADER}) with "
            "VOICESTREAM_TWILIO_AUTH_TOKEN set on the server"
        )
    token = request.app[SETTINGS].twilio_auth_token
    if not token:
        raise AuthError(
            f"{SIGNATURE_HEADER} cannot be checked: VOICESTREAM_TWILIO_AUTH_TOKEN is not set"
        )
    url = http_base(request) + request.raw_path  # the URL exactly as Twilio requested it
    if not signature_matches(token, url, params, signature):
        raise Forbidden(f"{SIGNATURE_HEADER} does not match this request")


async def _webhook_agent(request: web.Request, agent_id: str) -> AgentConfig:
    rt = request.app
    principal = optional_principal(request)
    if principal is not None:
        # The agent must be in the key's workspace: a ticket never reaches across tenants.
        return await rt[AGENTS].get_config(str(principal.workspace_id), agent_id)
    try:
        return await rt[AGENTS].get_public_config(agent_id)
    except NotFound:
        raise Forbidden(
            "no public agent with this id: a signed Twilio webhook reaches public agents only; "
            "send an API key for a private agent"
        ) from None


# ---- the media socket ----------------------------------------------------------------------


# Twilio's JSON text frames, μ-law 8 kHz both ways; Twilio says "stop" when the caller hangs up.
_TWILIO = CallFraming(
    transport="twilio",
    ticket_hint='the TwiML <Parameter name="ticket"> is required',
    new_stream=twilio.TwilioStream,
)


async def ws_twilio(request: web.Request) -> web.StreamResponse:
    return await serve_call(request, _TWILIO)
