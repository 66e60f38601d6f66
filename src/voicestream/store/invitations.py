"""Invitations into a workspace: an e-mail address, a role, a single-use expiring token.

The token is stored as its SHA-256 only. Accepting takes a row lock on the invitation, so
two uses of one token cannot both succeed; an invitation is used up only when it makes a
membership (a wrong address or an existing membership leaves it usable).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from voicestream.store import db
from voicestream.store.keys import Role

__all__ = ["Acceptance", "Invitation", "InvitationRepository"]


@dataclass(frozen=True, slots=True)
class Invitation:
    id: UUID
    workspace_id: UUID
    email: str
    role: Role
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Acceptance:
    """``joined`` with the invitation, or why not: ``unknown`` (also used or expired),
    ``wrong_email``, ``already_member``."""

    outcome: Literal["joined", "unknown", "wrong_email", "already_member"]
    invitation: Invitation | None = None


_COLUMNS = "id, workspace_id, email, role, created_at, expires_at"


def _invitation(row: db.Record) -> Invitation:
    return Invitation(**{name: row[name] for name in _COLUMNS.split(", ")})


class InvitationRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def create(
        self,
        workspace_id: UUID,
        email: str,
        role: Role,
        token_hash: bytes,
        ttl_s: float,
        invited_by: UUID | None,
    ) -> Invitation:
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO invitations (workspace_id, email, role, token_hash, expires_at,
                                     invited_by_user_id)
            VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), $6)
            RETURNING {_COLUMNS}
            """,
            workspace_id,
            email,
            role,
            token_hash,
            float(ttl_s),
            invited_by,
        )
        return _invitation(row)

    async def accept(self, token_hash: bytes, user_id: UUID, email: str) -> Acceptance:
        """Make ``user_id`` (whose address is ``email``) a member with the invited role."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                SELECT {_COLUMNS} FROM invitations
                WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > now()
                FOR UPDATE
                """,
                token_hash,
            )
            if row is None:
                return Acceptance("unknown")
            invitation = _invitation(row)
            if invitation.email.lower() != email.lower():
                return Acceptance("wrong_email", invitation)
            joined = await conn.fetchval(
                """
                INSERT INTO memberships (workspace_id, user_id, role) VALUES ($1, $2, $3)
                ON CONFLICT (user_id, workspace_id) DO NOTHING RETURNING true
                """,
                invitation.workspace_id,
                user_id,
                invitation.role,
            )
            if not joined:
                return Acceptance("already_member", invitation)
            await conn.execute(
                "UPDATE invitations SET accepted_at = now(), accepted_by_user_id = $2 "
                "WHERE id = $1",
                invitation.id,
                user_id,
            )
            # The token reached the address: it is verified now, as a magic link would.
            await conn.execute(
                "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) "
                "WHERE id = $1",
                user_id,
            )
            return Acceptance("joined", invitation)
