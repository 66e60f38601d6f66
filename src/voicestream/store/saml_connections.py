"""A workspace's SAML identity provider, the AuthnRequests sent to it, and the assertion ids
already consumed (migration 0022).

Every lookup takes the workspace: another workspace's connection, request or assertion is as
missing as one that never existed. Requests and seen assertions are kept until they expire;
``take_request`` uses one up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final
from uuid import UUID

from voicestream.store import db
from voicestream.store.keys import Role

__all__ = ["SamlConnection", "SamlConnectionRepository"]

_COLUMNS: Final = (
    "workspace_id, idp_entity_id, idp_sso_url, idp_certificate, default_role, allowed_domains, "
    "created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class SamlConnection:
    workspace_id: UUID
    idp_entity_id: str
    idp_sso_url: str
    idp_certificate: str  # PEM
    default_role: Role
    allowed_domains: tuple[str, ...]  # lower case; empty: any
    created_at: datetime
    updated_at: datetime


def _connection(row: db.Record) -> SamlConnection:
    values = {name: row[name] for name in _COLUMNS.split(", ")}
    values["allowed_domains"] = tuple(values["allowed_domains"])
    return SamlConnection(**values)


class SamlConnectionRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def get(self, workspace_id: UUID) -> SamlConnection | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM saml_connections WHERE workspace_id = $1", workspace_id
        )
        return _connection(row) if row is not None else None

    async def put(
        self,
        workspace_id: UUID,
        *,
        idp_entity_id: str,
        idp_sso_url: str,
        idp_certificate: str,
        default_role: Role,
        allowed_domains: tuple[str, ...],
    ) -> SamlConnection:
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO saml_connections (workspace_id, idp_entity_id, idp_sso_url,
                idp_certificate, default_role, allowed_domains)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (workspace_id) DO UPDATE
            SET idp_entity_id = excluded.idp_entity_id, idp_sso_url = excluded.idp_sso_url,
                idp_certificate = excluded.idp_certificate,
                default_role = excluded.default_role,
                allowed_domains = excluded.allowed_domains, updated_at = now()
            RETURNING {_COLUMNS}
            """,
            workspace_id,
            idp_entity_id,
            idp_sso_url,
            idp_certificate,
            default_role,
            list(allowed_domains),
        )
        return _connection(row)

    async def delete(self, workspace_id: UUID) -> bool:
        deleted: str = await self._pool.execute(
            "DELETE FROM saml_connections WHERE workspace_id = $1", workspace_id
        )
        return deleted != "DELETE 0"

    async def save_request(
        self, workspace_id: UUID, request_id: str, relay_state: str | None, ttl_s: int
    ) -> None:
        await self._pool.execute(
            """
            WITH swept AS (DELETE FROM saml_requests WHERE expires_at < now())
            INSERT INTO saml_requests (request_id, workspace_id, relay_state, expires_at)
            VALUES ($1, $2, $3, now() + make_interval(secs => $4))
            """,
            request_id,
            workspace_id,
            relay_state,
            float(ttl_s),
        )

    async def pending_request(self, workspace_id: UUID, request_id: str) -> str | None:
        """The relay state of a live request of ours (``""`` without one); None when there is
        no such request (unknown, answered already, or expired)."""
        row = await self._pool.fetchrow(
            "SELECT relay_state FROM saml_requests WHERE workspace_id = $1 AND request_id = $2 "
            "AND expires_at > now()",
            workspace_id,
            request_id,
        )
        return (row["relay_state"] or "") if row is not None else None

    async def consume(
        self, workspace_id: UUID, request_id: str, assertion_id: str, keep_until: datetime
    ) -> bool:
        """Use up the request and remember the assertion, at once; False when either was
        used already (a replay)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM saml_assertions_seen WHERE expires_at < now()")
            fresh = await conn.fetchval(
                """
                INSERT INTO saml_assertions_seen (workspace_id, assertion_id, expires_at)
                VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1
                """,
                workspace_id,
                assertion_id,
                keep_until,
            )
            taken = await conn.fetchval(
                "DELETE FROM saml_requests WHERE workspace_id = $1 AND request_id = $2 "
                "AND expires_at > now() RETURNING 1",
                workspace_id,
                request_id,
            )
            return fresh is not None and taken is not None
