"""Invitations into a workspace: an e-mail address, a role, a single-use expiring token.

The token is stored as its SHA-256 only. Accepting takes a row lock on the invitation, so
two uses of one token cannot both succeed; an invitation is used up only when it makes a
membership (a wrong address or an existing membership leaves it usable). Cancelling deletes
a pending invitation under the same lock, so a token is either accepted or cancelled, never
both; the audit log keeps the record of it.
"""

from __future__ import annotations

import base64
import binascii
import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal
from uuid import UUID

from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store.keys import Role

__all__ = [
    "INVITATION_STATUSES",
    "MAX_PAGE_SIZE",
    "Acceptance",
    "Invitation",
    "InvitationPage",
    "InvitationRepository",
    "InvitationStatus",
]

InvitationStatus = Literal["pending", "accepted", "expired"]
INVITATION_STATUSES: Final[tuple[InvitationStatus, ...]] = ("pending", "accepted", "expired")
MAX_PAGE_SIZE: Final = 200
_STATUS_CONDITION: Final[dict[InvitationStatus, str]] = {
    "pending": "accepted_at IS NULL AND expires_at > now()",
    "accepted": "accepted_at IS NOT NULL",
    "expired": "accepted_at IS NULL AND expires_at <= now()",
}
_CURSOR_PREFIX: Final = "inv:"


@dataclass(frozen=True, slots=True)
class Invitation:
    id: UUID
    workspace_id: UUID
    email: str
    role: Role
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None = None

    @property
    def status(self) -> InvitationStatus:
        if self.accepted_at is not None:
            return "accepted"
        return "pending" if self.expires_at > datetime.now(self.expires_at.tzinfo) else "expired"


@dataclass(frozen=True, slots=True)
class InvitationPage:
    invitations: builtins.list[Invitation]
    next_cursor: str | None  # None on the last page


@dataclass(frozen=True, slots=True)
class Acceptance:
    """``joined`` with the invitation, or why not: ``unknown`` (also used or expired),
    ``wrong_email``, ``already_member``."""

    outcome: Literal["joined", "unknown", "wrong_email", "already_member"]
    invitation: Invitation | None = None


_COLUMNS = "id, workspace_id, email, role, created_at, expires_at, accepted_at"


def _invitation(row: db.Record) -> Invitation:
    return Invitation(**{name: row[name] for name in _COLUMNS.split(", ")})


def _cursor(invitation: Invitation) -> str:
    raw = f"{_CURSOR_PREFIX}{invitation.created_at.isoformat()}|{invitation.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, UUID]:
    """The (created_at, id) a cursor continues after; ValidationFailed for one we did not
    hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raw = ""
    stamp, _, ident = raw.removeprefix(_CURSOR_PREFIX).partition("|")
    after: tuple[datetime, UUID] | None
    try:
        after = datetime.fromisoformat(stamp), UUID(ident)
    except ValueError:
        after = None
    if not raw.startswith(_CURSOR_PREFIX) or after is None or after[0].tzinfo is None:
        raise ValidationFailed(
            "cursor is not one this server handed out",
            details={"fields": [{"field": "cursor", "message": "not a cursor of this list"}]},
        )
    return after


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

    async def list(
        self,
        workspace_id: UUID,
        status: InvitationStatus,
        *,
        limit: int,
        cursor: str | None = None,
    ) -> InvitationPage:
        """One page of the workspace's invitations in ``status``, newest first; ``cursor`` is
        the previous page's ``next_cursor`` (ValidationFailed for one not handed out)."""
        conditions = ["workspace_id = $1", _STATUS_CONDITION[status]]
        args: builtins.list[object] = [workspace_id, limit + 1]
        if cursor is not None:
            # Keyset paging: stable however many invitations are made or cancelled meanwhile.
            created_at, invitation_id = _after(cursor)
            conditions.append("(created_at, id) < ($3, $4)")
            args += [created_at, invitation_id]
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM invitations WHERE {' AND '.join(conditions)} "
            "ORDER BY created_at DESC, id DESC LIMIT $2",
            *args,
        )
        invitations = [_invitation(row) for row in rows[:limit]]
        more = len(rows) > limit
        return InvitationPage(invitations, _cursor(invitations[-1]) if more else None)

    async def get(self, workspace_id: UUID, invitation_id: UUID) -> Invitation:
        """Raises NotFound for no such invitation in this workspace."""
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM invitations WHERE workspace_id = $1 AND id = $2",
            workspace_id,
            invitation_id,
        )
        if row is None:
            raise NotFound("no such invitation", details={"invitation_id": str(invitation_id)})
        return _invitation(row)

    async def cancel(self, workspace_id: UUID, invitation_id: UUID) -> Invitation | None:
        """Delete the invitation if it was not accepted (expired ones too); returns it, or
        None when it is gone or was accepted meanwhile. The delete waits for an acceptance
        holding the row and then finds it accepted, so the token cannot also join."""
        row = await self._pool.fetchrow(
            f"DELETE FROM invitations WHERE workspace_id = $1 AND id = $2 "
            f"AND accepted_at IS NULL RETURNING {_COLUMNS}",
            workspace_id,
            invitation_id,
        )
        return None if row is None else _invitation(row)
