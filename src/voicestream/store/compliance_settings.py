"""A workspace's compliance settings: the HIPAA mode and what it makes stricter
(``workspace_compliance``, migration 0024). No row: the mode is off, nothing is stricter."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final
from uuid import UUID

from voicestream.store import db

__all__ = [
    "DEFAULT_TOKEN_MINUTES",
    "ComplianceSettings",
    "get_settings",
    "has_second_factor",
    "set_settings",
]

DEFAULT_TOKEN_MINUTES: Final = 15
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ComplianceSettings:
    hipaa: bool = False
    keep_tts_history: bool = False
    keep_conversation_audio: bool = False
    ip_allow_list: tuple[Network, ...] = field(default_factory=tuple)
    access_token_minutes: int = DEFAULT_TOKEN_MINUTES


async def get_settings(pool: db.Pool | db.Connection, workspace_id: UUID) -> ComplianceSettings:
    row = await pool.fetchrow(
        """
        SELECT hipaa, keep_tts_history, keep_conversation_audio, ip_allow_list,
               access_token_minutes
        FROM workspace_compliance WHERE workspace_id = $1
        """,
        workspace_id,
    )
    if row is None:
        return ComplianceSettings()
    return ComplianceSettings(
        hipaa=row["hipaa"],
        keep_tts_history=row["keep_tts_history"],
        keep_conversation_audio=row["keep_conversation_audio"],
        ip_allow_list=tuple(ipaddress.ip_network(n, strict=False) for n in row["ip_allow_list"]),
        access_token_minutes=row["access_token_minutes"],
    )


async def set_settings(
    pool: db.Pool | db.Connection, workspace_id: UUID, settings: ComplianceSettings
) -> ComplianceSettings:
    await pool.execute(
        """
        INSERT INTO workspace_compliance (workspace_id, hipaa, keep_tts_history,
            keep_conversation_audio, ip_allow_list, access_token_minutes)
        VALUES ($1, $2, $3, $4, $5::cidr[], $6)
        ON CONFLICT (workspace_id) DO UPDATE SET hipaa = EXCLUDED.hipaa,
            keep_tts_history = EXCLUDED.keep_tts_history,
            keep_conversation_audio = EXCLUDED.keep_conversation_audio,
            ip_allow_list = EXCLUDED.ip_allow_list,
            access_token_minutes = EXCLUDED.access_token_minutes, updated_at = now()
        """,
        workspace_id,
        settings.hipaa,
        settings.keep_tts_history,
        settings.keep_conversation_audio,
        list(settings.ip_allow_list),
        settings.access_token_minutes,
    )
    return settings


async def has_second_factor(pool: db.Pool | db.Connection, user_id: UUID) -> bool:
    """Whether the user signs in with more than a password: a confirmed TOTP factor, or a
    passkey (itself a possession factor)."""
    found: bool = await pool.fetchval(
        """
        SELECT EXISTS (SELECT 1 FROM totp_factors WHERE user_id = $1 AND confirmed_at IS NOT NULL)
            OR EXISTS (SELECT 1 FROM passkeys WHERE user_id = $1)
        """,
        user_id,
    )
    return found
