"""``POST|PATCH /v1/convai/webrtc/offer``: voice conversations over WebRTC (aiortc).

Signalling follows Pipecat's SmallWebRTC shape, so its clients work unchanged:

* ``POST`` ``{"sdp", "type": "offer", "agent_id", "session_id"?, "end_user_id"?, "ticket"?,
  "pc_id"?, "pc_secret"?}`` → ``{"sdp", "type": "answer", "pc_id", "pc_secret",
  "session_id"}``. A known ``pc_id`` renegotiates that connection instead of opening a new
  conversation.
* ``PATCH`` ``{"pc_id", "candidates": [{"candidate", "sdp_mid", "sdp_mline_index"}],
  "ticket"?, "pc_secret"?}`` → ``{"status": "success"}``: trickle ICE; an empty ``candidate``
  ends the candidates. Clients that gather first and put their candidates in the offer need no
  PATCH.

A peer answers only to whoever created it: the same API key, or the same ticket (in the body or
as ``?ticket=``; it may have expired meanwhile). Every anonymous caller of a public agent looks
alike, so a peer opened with neither answers to whoever sends back its ``pc_secret``, a random
value only its creator was told. To anyone else its ``pc_id`` is unknown (404), and a ``POST``
naming it opens a new connection of the caller's own.

The answer carries all of the server's candidates (aiortc gathers before answering). No
STUN/TURN servers are configured: the server is reached directly (loopback, LAN, or a public
address); ``iceServers=[]`` also stops aiortc from asking Google's STUN server by default.
Everything about the call itself lives in ``webrtc_peer.WebRTCPeer``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Literal

from aiohttp import web
from aiortc import RTCConfiguration, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription, candidate_from_sdp
from pydantic import BaseModel, ConfigDict, Field

from ..errors import BadRequest, NotFound, Overloaded
from ..identity.page_origins import require_origin
from ..rest.bodies import read_model
from ..rest.resources import METRICS, SETTINGS
from .convai_common import caller_tag, open_conversation
from .socket_registry import track_connection
from .webrtc_ice import keep_remote_candidate, pin_host_addresses, pinned_addresses
from .webrtc_peer import WebRTCPeer

__all__ = [
    "WEBRTC_PEERS",
    "CandidatesAccepted",
    "InvalidCandidate",
    "InvalidSDP",
    "PeerRegistry",
    "WebRTCAnswer",
    "check_offer_sdp",
    "options_webrtc_offer",
    "patch_webrtc_offer",
    "post_webrtc_offer",
    "webrtc_peers",
]

log = logging.getLogger(__name__)

_MAX_SDP_CHARS = 64 * 1024  # a browser's audio + data offer is ~3-6 KB
_MAX_PEERS = 1000
# Answering gathers host candidates only (no STUN), which takes milliseconds; this bounds a
# pathological interface list or a wedged resolver.
_ANSWER_TIMEOUT_S = 10.0


_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
_MDNS_HOST = re.compile(r"[A-Za-z0-9-]{1,63}\.local")
# The widget runs on other sites' pages. No cookies are involved (a ticket or a public agent
# authorizes, or an API key the page itself would have to hold), so any origin may call.
_CORS = {"Access-Control-Allow-Origin": "*"}
_CORS_PREFLIGHT = {
    **_CORS,
    "Access-Control-Allow-Methods": "POST, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization, xi-api-key",
    "Access-Control-Max-Age": "600",
}


class InvalidSDP(BadRequest):
    code = "invalid_sdp"


class InvalidCandidate(BadRequest):
    code = "invalid_candidate"


class PeerRegistry:
    """Every live peer connection of this process, by ``pc_id``."""

    def __init__(self, limit: int = _MAX_PEERS) -> None:
        self.limit = limit
        self._peers: dict[str, WebRTCPeer] = {}
        self._secrets: dict[str, str] = {}  # by pc_id: proves an anonymous caller created it

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, pc_id: object) -> bool:
        """Still registered: live, or closing and not yet done with its conversation."""
        return pc_id in self._peers

    def get(self, pc_id: str, caller: str, secret: str | None) -> WebRTCPeer:
        """``caller``: ``convai_common.caller_tag``; another caller's peer is not found."""
        peer = self.find(pc_id, caller, secret)
        if peer is None:
            raise NotFound("unknown or closed peer connection", details={"pc_id": pc_id})
        return peer

    def find(self, pc_id: str | None, caller: str, secret: str | None) -> WebRTCPeer | None:
        """The caller's own live peer; ``secret``: the ``pc_secret`` it was answered with."""
        peer = self._peers.get(pc_id) if pc_id else None
        if peer is None or peer.closed or peer.lease.owner != caller:
            return None
        # A key or a ticket names its holder; "public" names everyone, so only the secret does.
        if caller == "public" and not hmac.compare_digest(
            (secret or "").encode(), self._secrets.get(peer.pc_id, "").encode()
        ):
            return None
        return peer

    def check_room(self) -> None:
        if len(self._peers) >= self.limit:
            raise Overloaded("too many WebRTC connections on this server; try again later")

    def add(self, peer: WebRTCPeer) -> str:
        """Register a new peer; returns its ``pc_secret``."""
        self._peers[peer.pc_id] = peer
        secret = self._secrets[peer.pc_id] = secrets.token_urlsafe(32)
        return secret

    def discard(self, peer: WebRTCPeer) -> None:
        if self._peers.get(peer.pc_id) is peer:
            del self._peers[peer.pc_id]
            self._secrets.pop(peer.pc_id, None)

    async def close_all(self) -> None:
        # Server shutdown is not a hang-up: the conversations stay resumable.
        peers = list(self._peers.values())
        await asyncio.gather(*(p.close(ended=False) for p in peers), return_exceptions=True)
        self._peers.clear()
        self._secrets.clear()


WEBRTC_PEERS: web.AppKey[PeerRegistry] = web.AppKey("voicestream_webrtc_peers", PeerRegistry)


async def webrtc_peers(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the registry lives with the app; shutdown closes every connection."""
    registry = PeerRegistry()
    app[WEBRTC_PEERS] = registry
    pinned = app[SETTINGS].webrtc_host_addresses
    if pinned:
        pin_host_addresses(pinned.split(","))
    yield
    await registry.close_all()


class OfferRequest(BaseModel):
    # Pipecat clients also send restart_pc / request_data; they are accepted and ignored.
    model_config = ConfigDict(extra="ignore")

    sdp: str = Field(min_length=1, max_length=_MAX_SDP_CHARS)
    type: Literal["offer"]
    agent_id: str | None = Field(None, max_length=100)
    session_id: str | None = Field(None, max_length=100)
    end_user_id: str | None = Field(None, max_length=200)
    ticket: str | None = Field(None, max_length=4096)
    pc_id: str | None = Field(None, max_length=100)
    pc_secret: str | None = Field(None, max_length=100)


class IceCandidateIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    candidate: str = Field(max_length=1024)
    sdp_mid: str | None = Field(None, max_length=64)
    sdp_mline_index: int | None = Field(None, ge=0, le=64)


class CandidatesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pc_id: str = Field(min_length=1, max_length=100)
    candidates: list[IceCandidateIn] = Field(max_length=100)
    ticket: str | None = Field(None, max_length=4096)
    pc_secret: str | None = Field(None, max_length=100)


class WebRTCAnswer(BaseModel):
    sdp: str
    type: Literal["answer"]
    pc_id: str = Field(description="Names this peer connection in a PATCH or a renegotiation.")
    pc_secret: str | None = Field(
        None,
        description="Proves to a later PATCH or renegotiation that the caller opened this "
        "peer; given when the peer is opened (and again when an offer sends it back).",
    )
    session_id: str


class CandidatesAccepted(BaseModel):
    status: Literal["success"]


def check_offer_sdp(sdp: str) -> None:
    """Refuse what aiortc would accept and then fail on silently (it parses almost anything).

    Raises:
        InvalidSDP: not an SDP offer with ICE credentials and DTLS fingerprints.
    """
    if not sdp.lstrip().startswith("v=0"):
        raise InvalidSDP("not an SDP document: it must start with 'v=0'")
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises whatever the bad line trips over
        raise InvalidSDP(f"the SDP could not be parsed: {exc}") from None
    if not any(m.kind in ("audio", "application") for m in desc.media):
        raise InvalidSDP("the offer has neither an audio nor a data channel (m=application)")
    for m in desc.media:
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise InvalidSDP(f"m={m.kind} has no a=ice-ufrag / a=ice-pwd")
        if m.dtls is None or not m.dtls.fingerprints:
            raise InvalidSDP(f"m={m.kind} has no a=fingerprint")


async def post_webrtc_offer(request: web.Request) -> web.Response:
    rt = request.app
    registry = request.app[WEBRTC_PEERS]
    body = await read_model(request, OfferRequest)
    check_offer_sdp(body.sdp)
    offer = RTCSessionDescription(sdp=_reachable_candidates_only(body.sdp), type="offer")
    ticket = body.ticket or request.query.get("ticket")
    peer = registry.find(body.pc_id, caller_tag(request, ticket), body.pc_secret)
    if peer is not None:
        await require_origin(request, peer.session.agent.workspace_id)
        answer = await _negotiate(peer.pc, offer)
        return _answer_response(answer, peer.pc_id, body.pc_secret, peer.session.id)

    registry.check_room()
    lease = await open_conversation(
        request,
        agent_id=body.agent_id or "",
        session_id=body.session_id,
        end_user_id=body.end_user_id,
        transport="webrtc",
        ticket=ticket,
    )
    pc_id = uuid.uuid4().hex
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peer = WebRTCPeer(rt, pc_id, pc, lease, on_closed=_forget(request.app))
    pc_secret = registry.add(peer)
    track_connection(request, peer, lambda _err: peer.close(ended=True), lambda: peer.closed)
    rt[METRICS].active_streams.labels("convai_webrtc").inc()
    try:
        answer = await _negotiate(pc, offer, before_answer=peer.attach_media)
    except BaseException:
        # A bad offer never started a call: a resumed conversation stays resumable, and the
        # ticket it used may try again.
        try:
            await lease.give_back_ticket()
        finally:
            await peer.close(ended=False)
        raise
    peer.start()
    log.debug("peer %s: answered for session %s", pc_id, lease.session.id)
    return _answer_response(answer, pc_id, pc_secret, lease.session.id)


async def patch_webrtc_offer(request: web.Request) -> web.Response:
    registry = request.app[WEBRTC_PEERS]
    body = await read_model(request, CandidatesRequest)
    caller = caller_tag(request, body.ticket or request.query.get("ticket"))
    peer = registry.get(body.pc_id, caller, body.pc_secret)
    await require_origin(request, peer.session.agent.workspace_id)
    # All parsed before any is added: a bad batch changes nothing.
    parsed = [_parse_candidate(item) for item in body.candidates]
    for candidate in parsed:
        if candidate is None or keep_remote_candidate(candidate.ip):
            await peer.pc.addIceCandidate(candidate)  # None: end of candidates
    accepted = CandidatesAccepted(status="success")
    return web.json_response(text=accepted.model_dump_json(), headers=_CORS)


async def options_webrtc_offer(request: web.Request) -> web.Response:
    """CORS preflight: the widget signals from the embedding site's origin."""
    return web.Response(status=204, headers=_CORS_PREFLIGHT)


def _reachable_candidates_only(sdp: str) -> str:
    """Drop the offer's candidates that pinned addresses could not reach (see webrtc_ice)."""
    if pinned_addresses() is None:
        return sdp
    lines = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            if len(fields) > 4 and not keep_remote_candidate(fields[4]):
                continue
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _parse_candidate(item: IceCandidateIn) -> RTCIceCandidate | None:
    text = item.candidate.strip().removeprefix("a=").removeprefix("candidate:")
    if not text:
        return None
    if item.sdp_mid is None and item.sdp_mline_index is None:
        raise InvalidCandidate("a candidate needs sdp_mid or sdp_mline_index")
    try:
        candidate = candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError):
        raise InvalidCandidate(f"not an ICE candidate: {item.candidate[:100]!r}") from None
    # aiortc accepts all of these silently (and never connects to them): say so instead.
    if not _valid_host(candidate.ip):
        raise InvalidCandidate(f"candidate address {candidate.ip[:64]!r} is not an IP or .local")
    if not 1 <= candidate.port <= 65535 or candidate.component not in (1, 2):
        raise InvalidCandidate("candidate port or component is out of range")
    if candidate.protocol.lower() not in ("udp", "tcp") or candidate.type not in _TYPES:
        raise InvalidCandidate("candidate protocol or type is unknown")
    candidate.sdpMid = item.sdp_mid
    candidate.sdpMLineIndex = item.sdp_mline_index
    return candidate


def _valid_host(host: str) -> bool:
    if _MDNS_HOST.fullmatch(host):
        return True  # browsers hide local addresses behind mDNS names; aioice resolves them
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _negotiate(
    pc: RTCPeerConnection,
    offer: RTCSessionDescription,
    *,
    before_answer: Callable[[], None] | None = None,
) -> RTCSessionDescription:
    try:
        await pc.setRemoteDescription(offer)
    except Exception as exc:  # aiortc raises ValueError, InvalidStateError, … on bad offers
        raise InvalidSDP(f"the offer was refused: {exc}") from None
    if before_answer is not None:
        before_answer()
    try:
        async with asyncio.timeout(_ANSWER_TIMEOUT_S):
            await pc.setLocalDescription(await pc.createAnswer())
    except (ValueError, RuntimeError) as exc:
        raise InvalidSDP(f"no answer fits this offer: {exc}") from None
    local = pc.localDescription
    assert local is not None
    return local


def _forget(app: web.Application) -> Callable[[WebRTCPeer], None]:
    def forget(peer: WebRTCPeer) -> None:
        app[WEBRTC_PEERS].discard(peer)
        app[METRICS].active_streams.labels("convai_webrtc").dec()

    return forget


def _answer_response(
    answer: RTCSessionDescription, pc_id: str, pc_secret: str | None, session_id: str
) -> web.Response:
    assert answer.type == "answer"  # what createAnswer() made
    body = WebRTCAnswer(
        sdp=answer.sdp, type="answer", pc_id=pc_id, pc_secret=pc_secret, session_id=session_id
    )
    return web.json_response(text=body.model_dump_json(exclude_none=True), headers=_CORS)
