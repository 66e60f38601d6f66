"""Conversation tickets: short-lived signed tokens that let a browser widget, a phone carrier or
an ElevenLabs client, none of which may hold an API key, open one conversation with one agent.

``POST /v1/convai/tickets`` (with a key) mints a ``webchat`` ticket; the widget passes it as
``ticket``. ElevenLabs signed URLs carry an ``elevenlabs`` one, the telephony answer webhooks a
``telephony`` one. HS256 with the server's secret, and verification pins the algorithm, issuer,
audience and the claims it needs (RFC 8725), so a token minted for anything else is refused.

A ticket is bound to one agent and one transport family, and opens one conversation: its
``jti`` is consumed in Redis (``SET NX``, kept as long as the ticket would still verify) the
first time it opens one. Resuming that same conversation with ``session_id`` is not a second
use. The end user a ticket names is the only one its conversation may speak for.

A ticket speaks for whoever minted it: the API key (claim ``key``), or the signed-in member
(claim ``usr``). It opens nothing once that key is revoked, or once that member has left the
workspace, been made a viewer or been disabled, or signed out everywhere since it was minted
(``check_minter``), although its signature still verifies; a lapsed member's ticket is
refused exactly like a forged one. What it opened closes then too
(``transports/socket_registry.py``).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal
from uuid import UUID

import jwt

from ..errors import AuthError

if TYPE_CHECKING:
    import redis.asyncio

    from ..store.keys import ApiKeyRepository
    from ..store.members import MemberRepository

__all__ = [
    "END_USER_ID",
    "END_USER_RULE",
    "MAX_TTL_S",
    "Family",
    "Ticket",
    "check_minter",
    "family_of",
    "mint_ticket",
    "redeem_ticket",
    "release_ticket",
    "ticket_holder",
    "verify_ticket",
]

_ISSUER = "voicestream"
_AUDIENCE = "convai"
_ALGORITHM = "HS256"
MAX_TTL_S = 3600

Family = Literal["webchat", "elevenlabs", "telephony"]
# A conversation's transport → the family of tickets that may open it.
_FAMILIES: Final[dict[str, Family]] = {
    "websocket": "webchat",
    "webrtc": "webchat",
    "elevenlabs": "elevenlabs",
    "twilio": "telephony",
    "telnyx": "telephony",
    "vonage": "telephony",
}
_BY_NAME: Final[dict[str, Family]] = {
    "webchat": "webchat",
    "elevenlabs": "elevenlabs",
    "telephony": "telephony",
}
_WHAT: Final[dict[Family, str]] = {
    "webchat": "the web widget (/v1/convai/stream, WebRTC)",
    "elevenlabs": "the ElevenLabs conversation socket",
    "telephony": "a phone call's media stream",
}
END_USER_ID: Final = re.compile(r"[\w.@:+-]{1,200}")
END_USER_RULE: Final = "end_user_id must be 1-200 letters, digits or . @ : + - _"


@dataclass(frozen=True, slots=True)
class Ticket:
    workspace_id: str
    agent_id: str
    end_user_id: str | None
    family: Family
    jti: str
    expires_at: int  # unix seconds
    key_id: UUID | None = None  # the API key that minted it; None in tickets from before
    user_id: UUID | None = None  # the signed-in member who minted it
    issued_at: float = 0.0  # unix seconds: refused once its minter signed out everywhere


def family_of(transport: str) -> Family:
    try:
        return _FAMILIES[transport]
    except KeyError:
        raise ValueError(f"no ticket family for transport {transport!r}") from None


def mint_ticket(
    secret: str,
    *,
    workspace_id: str,
    agent_id: str,
    end_user_id: str | None,
    ttl_s: int,
    family: Family,
    key_id: UUID | None,
    user_id: UUID | None = None,
) -> str:
    """``key_id``: the API key of the call that mints it, ``user_id`` the signed-in member (a
    user session); the ticket dies with that key, or with that member's access."""
    # Milliseconds, as access tokens: a ticket minted just after signing out everywhere
    # (with a new session) must not count as minted before it.
    now = round(time.time(), 3)
    claims: dict[str, object] = {
        "iss": _ISSUER,
        "aud": _AUDIENCE,
        "sub": agent_id,
        "wsp": workspace_id,
        "fam": family,
        "iat": now,
        "exp": int(now) + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if end_user_id:
        claims["uid"] = end_user_id
    if key_id is not None:
        claims["key"] = str(key_id)
    if user_id is not None:
        claims["usr"] = str(user_id)
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def _decode(secret: str, token: str, *, check_expiry: bool) -> dict[str, object]:
    try:
        claims: dict[str, object] = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            audience=_AUDIENCE,
            issuer=_ISSUER,
            options={
                "require": ["exp", "iat", "sub", "iss", "aud", "jti"],
                "verify_exp": check_expiry,
            },
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("the conversation ticket has expired") from None
    except jwt.PyJWTError:
        raise AuthError("invalid conversation ticket") from None
    return claims


def verify_ticket(secret: str, token: str, *, family: Family) -> Ticket:
    """Raises ``AuthError`` for anything but a valid, unexpired ticket of ours for ``family``.

    Verifying does not use the ticket up; ``redeem_ticket`` does.
    """
    claims = _decode(secret, token, check_expiry=True)
    workspace, jti, exp = claims.get("wsp"), claims["jti"], claims["exp"]
    raw_family = claims.get("fam")
    fam = _BY_NAME.get(raw_family) if isinstance(raw_family, str) else None
    if not isinstance(workspace, str) or fam is None or not isinstance(jti, str):
        raise AuthError("invalid conversation ticket")
    if fam != family:
        raise AuthError(
            f"this ticket opens {_WHAT[fam]} only, not {_WHAT[family]}",
            details={"ticket_family": fam, "needed": family},
        )
    uid = claims.get("uid")
    return Ticket(
        workspace,
        str(claims["sub"]),
        uid if isinstance(uid, str) else None,
        family,
        jti,
        int(exp) if isinstance(exp, int | float) else 0,
        _uuid_claim(claims.get("key")),
        _uuid_claim(claims.get("usr")),
        float(iat) if isinstance(iat := claims["iat"], int | float) else 0.0,
    )


def _uuid_claim(raw: object) -> UUID | None:
    if raw is None:
        return None
    try:
        return UUID(str(raw))
    except ValueError:
        raise AuthError("invalid conversation ticket") from None


async def check_minter(keys: ApiKeyRepository, members: MemberRepository, ticket: Ticket) -> None:
    """Raises ``AuthError`` when the key that minted ``ticket`` has been revoked since, or the
    member who minted it may no longer open a conversation in its workspace."""
    if ticket.key_id is not None and await keys.revoked_among([ticket.key_id]):
        raise AuthError("the API key that issued this ticket has been revoked")
    if ticket.user_id is not None:
        try:
            workspace_id = UUID(ticket.workspace_id)
        except ValueError:
            raise AuthError("invalid conversation ticket") from None
        minter = (workspace_id, ticket.user_id)
        if await members.lapsed_among([minter], issued_at=ticket.issued_at):
            # As a forged ticket: it says nothing of who was removed.
            raise AuthError("invalid conversation ticket")


def ticket_holder(secret: str, token: str) -> str | None:
    """The ``jti`` of a genuine ticket of ours, expired or used up alike; None otherwise.

    Proves that a caller holds the ticket that created something (a WebRTC peer), long after
    the ticket itself stopped opening conversations.
    """
    try:
        jti = _decode(secret, token, check_expiry=False)["jti"]
    except AuthError:
        return None
    return jti if isinstance(jti, str) else None


def _used_key(jti: str) -> str:
    return f"vs:ticket:used:{jti}"


async def redeem_ticket(redis: redis.asyncio.Redis, ticket: Ticket) -> None:
    """Use the ticket up: the first caller wins, atomically, across every server process.

    Raises:
        AuthError: it has opened a conversation already.
    """
    # Remembered as long as the signature would still be accepted; after that expiry refuses it.
    ttl = max(1, ticket.expires_at - int(time.time()) + 1)
    if not await redis.set(_used_key(ticket.jti), "1", nx=True, ex=ttl):
        raise AuthError(
            "this ticket has already opened a conversation; tickets are single use, so mint a "
            "new one for each conversation"
        )


async def release_ticket(redis: redis.asyncio.Redis, ticket: Ticket) -> None:
    """Undo ``redeem_ticket`` when what the ticket was used for never happened (the database
    was down, the offer was bad), so the holder can try again with it."""
    await redis.delete(_used_key(ticket.jti))
