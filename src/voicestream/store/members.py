"""A workspace's members seen from the workspace: list, change a role, remove, create one.

Every lookup takes the workspace id: a user who is no member of it is as missing as one who
does not exist. Changes to owners run under a lock on the workspace's owner rows, so two
owners demoting each other at once cannot leave the workspace with none.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from voicestream.errors import Conflict, NotFound
from voicestream.store import db
from voicestream.store.keys import ApiKeyRepository, Role
from voicestream.store.workspaces import validate_workspace_name

__all__ = ["LastOwner", "Member", "MemberRepository", "Removal", "WorkspaceUser"]

# A member as a connection knows them: (workspace id, user id).
WorkspaceUser = tuple[UUID, UUID]


@dataclass(frozen=True, slots=True)
class Member:
    user_id: UUID
    email: str
    role: Role
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class Removal:
    member: Member
    revoked_key_ids: list[UUID]  # the keys the member had made in the workspace


class LastOwner(Conflict):
    """The change would leave the workspace without an owner."""


def _member(row: db.Record) -> Member:
    return Member(row["user_id"], row["email"], row["role"], row["created_at"])


_SELECT = """
    SELECT m.user_id, u.email, m.role, m.created_at
    FROM memberships m JOIN users u ON u.id = m.user_id
"""


class MemberRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def list(self, workspace_id: UUID) -> builtins.list[Member]:
        """Members, oldest first."""
        rows = await self._pool.fetch(
            _SELECT + " WHERE m.workspace_id = $1 ORDER BY m.created_at, m.user_id",
            workspace_id,
        )
        return [_member(row) for row in rows]

    async def lapsed_among(
        self, members: Iterable[WorkspaceUser], *, issued_at: float | None = None
    ) -> set[WorkspaceUser]:
        """Which of these members may no longer act in their workspace: removed, made a
        viewer, or their account disabled (what they opened must close); with
        ``issued_at`` (unix seconds: a credential's), also those who signed out everywhere
        after it, which that credential then no longer speaks for."""
        pairs = builtins.list(members)
        rows = await self._pool.fetch(
            """
            SELECT s.workspace_id, s.user_id
            FROM unnest($1::uuid[], $2::uuid[]) AS s (workspace_id, user_id)
            WHERE NOT EXISTS (
                SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id
                WHERE m.workspace_id = s.workspace_id AND m.user_id = s.user_id
                  AND m.role <> 'viewer' AND u.disabled_at IS NULL
                  AND ($3::float8 IS NULL OR u.sessions_revoked_at IS NULL
                       OR $3::float8 >= extract(epoch FROM u.sessions_revoked_at))
            )
            """,
            [workspace_id for workspace_id, _ in pairs],
            [user_id for _, user_id in pairs],
            issued_at,
        )
        return {(row["workspace_id"], row["user_id"]) for row in rows}

    async def signed_out_since(self, since: Mapping[UUID, float]) -> dict[UUID, float]:
        """Which of these users (user id -> unix seconds) signed out everywhere after the
        time given, and when (unix seconds): what they opened before then must close."""
        user_ids = builtins.list(since)
        rows = await self._pool.fetch(
            """
            SELECT u.id, extract(epoch FROM u.sessions_revoked_at)::float8 AS revoked_at
            FROM unnest($1::uuid[], $2::float8[]) AS s (user_id, since)
            JOIN users u ON u.id = s.user_id
            WHERE u.sessions_revoked_at > to_timestamp(s.since)
            """,
            user_ids,
            [since[user_id] for user_id in user_ids],
        )
        return {row["id"]: row["revoked_at"] for row in rows}

    async def get(self, workspace_id: UUID, user_id: UUID) -> Member:
        row = await self._pool.fetchrow(
            _SELECT + " WHERE m.workspace_id = $1 AND m.user_id = $2", workspace_id, user_id
        )
        if row is None:
            raise NotFound("no such member", details={"user_id": str(user_id)})
        return _member(row)

    async def add(self, workspace_id: UUID, user_id: UUID, role: Role) -> Member | None:
        """Make the user a member with ``role``; None when they are one already (their role
        is left as it is)."""
        row = await self._pool.fetchrow(
            """
            WITH added AS (
                INSERT INTO memberships (workspace_id, user_id, role) VALUES ($1, $2, $3)
                ON CONFLICT (user_id, workspace_id) DO NOTHING
                RETURNING user_id, role, created_at
            )
            SELECT a.user_id, u.email, a.role, a.created_at
            FROM added a JOIN users u ON u.id = a.user_id
            """,
            workspace_id,
            user_id,
            role,
        )
        return _member(row) if row is not None else None

    async def set_role(self, workspace_id: UUID, user_id: UUID, role: Role) -> tuple[Role, Member]:
        """Give the member ``role``; returns their role before and the member now.

        Raises NotFound (no such member here) or LastOwner.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            before = await self._locked(conn, workspace_id, user_id, leaving=role != "owner")
            row = await conn.fetchrow(
                """
                WITH changed AS (
                    UPDATE memberships SET role = $3
                    WHERE workspace_id = $1 AND user_id = $2
                    RETURNING user_id, role, created_at
                )
                SELECT c.user_id, u.email, c.role, c.created_at
                FROM changed c JOIN users u ON u.id = c.user_id
                """,
                workspace_id,
                user_id,
                role,
            )
            return before.role, _member(row)

    async def remove(self, workspace_id: UUID, user_id: UUID) -> Removal:
        """Remove the member and revoke the keys they made here, in one transaction.

        Raises NotFound (no such member here) or LastOwner.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            member = await self._locked(conn, workspace_id, user_id, leaving=True)
            await conn.execute(
                "DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2",
                workspace_id,
                user_id,
            )
            revoked = await ApiKeyRepository(self._pool).revoke_created_by(
                workspace_id, user_id, conn
            )
            return Removal(member, revoked)

    async def create_workspace(self, name: str, owner_id: UUID) -> tuple[UUID, datetime]:
        """A new workspace owned by ``owner_id``. Raises Conflict when the name is taken,
        ValidationFailed when it is malformed."""
        validate_workspace_name(name)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO workspaces (name) VALUES ($1) ON CONFLICT (name) DO NOTHING "
                "RETURNING id, created_at",
                name,
            )
            if row is None:
                raise Conflict(
                    f"the workspace name {name!r} is taken; choose another",
                    details={"name": name},
                )
            await conn.execute(
                "INSERT INTO memberships (workspace_id, user_id, role) VALUES ($1, $2, 'owner')",
                row["id"],
                owner_id,
            )
            return row["id"], row["created_at"]

    async def _locked(
        self, conn: db.Connection, workspace_id: UUID, user_id: UUID, *, leaving: bool
    ) -> Member:
        # Every owner row of the workspace is locked, the member's own row too: concurrent
        # changes to owners queue here, and each sees the owners the previous one left.
        owners = await conn.fetch(
            "SELECT user_id FROM memberships WHERE workspace_id = $1 AND role = 'owner' "
            "ORDER BY user_id FOR UPDATE",
            workspace_id,
        )
        row = await conn.fetchrow(
            _SELECT + " WHERE m.workspace_id = $1 AND m.user_id = $2 FOR UPDATE OF m",
            workspace_id,
            user_id,
        )
        if row is None:
            raise NotFound("no such member", details={"user_id": str(user_id)})
        member = _member(row)
        if leaving and member.role == "owner" and len(owners) <= 1:
            raise LastOwner(
                "this is the workspace's last owner: make another member owner first",
                details={"user_id": str(user_id)},
            )
        return member
