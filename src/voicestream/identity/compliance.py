"""The HIPAA mode's rules, and a workspace's IP allow-list: what a request must satisfy and
what is recorded about it (the settings: ``store/compliance_settings.py``).

With a workspace's HIPAA mode on:

- every signed-in member needs a second factor (a confirmed TOTP factor or a passkey): a
  member without one is refused with 403 ``mfa_required`` on the workspace's routes (their own
  routes, MFA set-up included, stay open);
- an access token older than the workspace's ``access_token_minutes`` (15 by default, shorter
  than the server-wide lifetime) is refused for it with a 401: the client refreshes;
- every read of personal data (TTS history and its audio, conversations and their transcripts,
  dubs and their transcripts, project texts, files) is audited as ``data.read``;
- TTS history (and conversation audio, which the server does not record anyway) is not kept
  unless the workspace says so.

The IP allow-list applies whether the mode is on or not: a request from an address outside it
gets 403 ``ip_not_allowed``. The address is the socket peer's; ``X-Forwarded-For`` counts only
behind a trusted proxy (``VOICESTREAM_TRUST_FORWARDED_HEADERS``), exactly as for the audit log.

Settings are read per request through a short cache: a change made through this process is in
force at once (``forget``), one made through another within ``ttl_s``.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterable
from typing import Final
from uuid import UUID

from aiohttp import web

from ..store import db
from ..store.compliance_settings import ComplianceSettings, get_settings, has_second_factor
from ..store.keys import Principal

__all__ = [
    "COMPLIANCE",
    "ComplianceRules",
    "address_listed",
    "is_personal_data_read",
    "requester_of",
]

_CACHE_SIZE: Final = 10_000
# GET routes (canonical, as the policy table names them) that return personal data.
_PERSONAL_DATA = re.compile(
    r"^(/elevenlabs)?/v1/("
    r"history(/.*)?"
    r"|conversations(/.*)?|convai/sessions/.*"
    r"|files/\{file_id\}.*"
    r"|dubbing(/.*)?"
    r"|projects(/.*)?"
    r"|studio/projects(/.*)?"
    r")$"
)
_PERSONAL_DATA_POSTS: Final = frozenset({"/elevenlabs/v1/history/download"})


def is_personal_data_read(method: str, route: str) -> bool:
    if method in ("GET", "HEAD"):
        return _PERSONAL_DATA.match(route) is not None
    return method == "POST" and route in _PERSONAL_DATA_POSTS


def address_listed(
    address: str | None, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d
    return any(ip.version == net.version and ip in net for net in networks)


def requester_of(principal: Principal) -> str:
    """Who asked, as a tombstone shows it once the workspace's keys and members are gone."""
    return principal.tag


class ComplianceRules:
    """Each workspace's compliance settings, cached briefly, and the checks built on them."""

    def __init__(
        self, pool: db.Pool, *, trust_forwarded_headers: bool = False, ttl_s: float = 2.0
    ) -> None:
        self._pool = pool
        self.trust_forwarded_headers = trust_forwarded_headers
        self._ttl_s = ttl_s
        self._cache: dict[UUID, tuple[float, ComplianceSettings]] = {}

    async def settings_for(self, workspace_id: UUID) -> ComplianceSettings:
        now = time.monotonic()
        cached = self._cache.get(workspace_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        settings = await get_settings(self._pool, workspace_id)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[workspace_id] = (now + self._ttl_s, settings)
        return settings

    def forget(self, workspace_id: UUID) -> None:
        self._cache.pop(workspace_id, None)

    async def has_second_factor(self, user_id: UUID) -> bool:
        return await has_second_factor(self._pool, user_id)

    async def keeps_tts_history(self, workspace_id: UUID) -> bool:
        settings = await self.settings_for(workspace_id)
        return not settings.hipaa or settings.keep_tts_history


COMPLIANCE: web.AppKey[ComplianceRules] = web.AppKey("voicestream_compliance", ComplianceRules)
