"""Recording critical actions from a request: who, from where, on what (``store/audit.py``).

Handlers call ``audit(request, action, target_type, target_id, details=...)``; the actor and
workspace come from the request's principal (or are given, for signing in, which has none
yet), the address and User-Agent from the request.

A failed append never passes silently: ``audit`` raises the store's outage error (503), and
each call site decides, in a comment, whether that stops the action or, where the action has
already happened, how the failure is reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from aiohttp import web

from ..errors import ServiceUnavailable
from ..store import db
from ..store.audit import Actor, AuditEntry, AuditLog
from ..store.keys import Principal
from .request_principal import PRINCIPAL

__all__ = ["AUDIT_TRAIL", "AuditTrail", "actor_of", "audit", "client_ip"]

log = logging.getLogger(__name__)

_UNSET: Final[Any] = object()


@dataclass(frozen=True, slots=True)
class AuditTrail:
    """The audit log and how to read a client's address (behind a proxy or not)."""

    log: AuditLog
    trust_forwarded_headers: bool = False


AUDIT_TRAIL: web.AppKey[AuditTrail] = web.AppKey("voicestream_audit_trail", AuditTrail)


def client_ip(request: web.Request, *, trust_forwarded_headers: bool) -> str | None:
    """The client's address: the peer's, or behind a trusted proxy its ``X-Forwarded-For``.

    The rightmost entry, the one the proxy itself appended: everything left of it came from
    the client and could say anything. Without ``trust_forwarded_headers`` the header is
    ignored, exactly as the Origin check ignores ``X-Forwarded-Host`` then.
    """
    if trust_forwarded_headers:
        hops = [
            hop.strip()
            for line in request.headers.getall("X-Forwarded-For", [])
            for hop in line.split(",")
            if hop.strip()
        ]
        if hops:
            return hops[-1]
    return request.remote


def actor_of(principal: Principal) -> Actor:
    """The principal as an actor: its key, or its signed-in user (shown by e-mail if known)."""
    # Read defensively: sign-in gives principals a user and makes the key optional.
    user_id: UUID | None = getattr(principal, "user_id", None)
    key_id: UUID | None = getattr(principal, "key_id", None)
    display: str | None = getattr(principal, "email", None)
    return Actor(display=display, user_id=user_id, key_id=key_id)


async def audit(
    request: web.Request,
    action: str,
    target_type: str | None = None,
    target_id: str | UUID | None = None,
    *,
    details: dict[str, Any] | None = None,
    actor: Actor | None = None,
    workspace_id: UUID | None = _UNSET,
) -> AuditEntry:
    """Append an entry for ``action`` made by this request.

    ``actor`` and ``workspace_id`` default to the request's principal's; pass them where there
    is no principal yet (``auth.signed_in``: the user, and no workspace). Raises
    ServiceUnavailable when the entry cannot be written.
    """
    trail = request.config_dict[AUDIT_TRAIL]
    principal = request.get(PRINCIPAL)
    if actor is None:
        if principal is None:
            raise ValueError(f"audit({action!r}): no principal on this request; pass actor=")
        actor = actor_of(principal)
    if workspace_id is _UNSET:
        workspace_id = principal.workspace_id if principal is not None else None
    try:
        return await trail.log.record(
            action,
            actor=actor,
            workspace_id=workspace_id,
            target_type=target_type,
            target_id=target_id,
            ip=client_ip(request, trust_forwarded_headers=trail.trust_forwarded_headers),
            user_agent=request.headers.get("User-Agent"),
            details=details,
        )
    except ServiceUnavailable:
        raise
    except db.PostgresError as exc:
        # Not an outage, yet the entry is not written (a lock or statement timeout): still a
        # 503 to the caller, never an action that slips through unrecorded.
        log.warning("audit entry %s not written: %r", action, exc)
        raise ServiceUnavailable(
            "the audit log is temporarily unavailable; try again shortly",
            details={"service": "the audit log"},
        ) from exc
