"""People who sign in and their workspace memberships.

An e-mail address is unique whatever its case (``lower(email)`` index), kept as typed for
display. Passwords arrive here already hashed (``identity/passwords.py``); this module never
sees one in clear.

``session_principal`` runs on every request made with an access token, so a member removed
or a user disabled loses access at once: one query on two primary keys.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from uuid import UUID

from voicestream.errors import Conflict, NotFound
from voicestream.store import db
from voicestream.store.keys import Principal, Role, parse_role
from voicestream.store.workspaces import ensure_workspace, validate_workspace_name

__all__ = ["Membership", "SessionLookup", "User", "UserRepository"]

_USER_COLUMNS: Final = (
    "id, email, password_hash, email_verified_at, created_at, disabled_at, sessions_revoked_at"
)
# $1 e-mail, $2 password hash (None: magic links only), $3 verified; no row if the address is
# taken, whatever its case.
_INSERT_USER: Final = f"""
    INSERT INTO users (email, password_hash, email_verified_at)
    VALUES ($1, $2, CASE WHEN $3 THEN now() END)
    ON CONFLICT ((lower(email))) DO NOTHING
    RETURNING {_USER_COLUMNS}
"""


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    email: str
    password_hash: str | None  # argon2id PHC string; never leaves the server
    email_verified_at: datetime | None
    created_at: datetime
    disabled_at: datetime | None
    sessions_revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class Membership:
    workspace_id: UUID
    workspace_name: str
    role: Role
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SessionLookup:
    """What an access token's user may act as: ``user_ok`` False when the user is gone,
    disabled or signed out everywhere since the token was issued; ``principal`` None (with
    ``user_ok``) when the user is no member of the workspace asked for, or of any."""

    user_ok: bool
    principal: Principal | None


def _user(row: db.Record) -> User:
    return User(**{name: row[name] for name in _USER_COLUMNS.split(", ")})


class UserRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def get(self, user_id: UUID) -> User | None:
        row = await self._pool.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id)
        return _user(row) if row else None

    async def by_email(self, email: str) -> User | None:
        row = await self._pool.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE lower(email) = lower($1)", email
        )
        return _user(row) if row else None

    async def sign_up(
        self, email: str, password_hash: str | None, workspace: str, *, verified: bool = False
    ) -> User | None:
        """Create the user and ``workspace``, which they own; None if the address is taken.

        Raises:
            Conflict: the workspace name is taken (whether or not the address is).
            ValidationFailed: a malformed workspace name.
        """
        validate_workspace_name(workspace)
        async with self._pool.acquire() as conn, conn.transaction():
            # The workspace first: its answer must not depend on whether the address exists,
            # or a taken name would tell an address apart from a free one.
            workspace_id = await conn.fetchval(
                "INSERT INTO workspaces (name) VALUES ($1) ON CONFLICT (name) DO NOTHING "
                "RETURNING id",
                workspace,
            )
            if workspace_id is None:
                raise Conflict(
                    f"the workspace name {workspace!r} is taken; choose another",
                    details={"workspace": workspace},
                )
            row = await conn.fetchrow(_INSERT_USER, email, password_hash, verified)
            if row is None:
                await conn.execute("DELETE FROM workspaces WHERE id = $1", workspace_id)
                return None
            await conn.execute(
                "INSERT INTO memberships (workspace_id, user_id, role) VALUES ($1, $2, 'owner')",
                workspace_id,
                row["id"],
            )
            return _user(row)

    async def workspace_taken(self, name: str) -> bool:
        taken: bool = await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM workspaces WHERE name = $1)", name
        )
        return taken

    async def create(self, email: str, password_hash: str | None, *, verified: bool) -> User:
        """A user with no membership yet (the CLI adds one). Raises Conflict if the address
        is taken."""
        row = await self._pool.fetchrow(_INSERT_USER, email, password_hash, verified)
        if row is None:
            raise Conflict(f"a user with the e-mail {email!r} exists already")
        return _user(row)

    async def set_membership(self, user_id: UUID, workspace: str, role: str) -> Membership:
        """Make the user a member of ``workspace`` (created if missing) with ``role``."""
        checked = parse_role(role)
        async with self._pool.acquire() as conn, conn.transaction():
            workspace_id = await ensure_workspace(conn, workspace)
            row = await conn.fetchrow(
                """
                INSERT INTO memberships (workspace_id, user_id, role) VALUES ($1, $2, $3)
                ON CONFLICT (user_id, workspace_id) DO UPDATE SET role = excluded.role
                RETURNING created_at
                """,
                workspace_id,
                user_id,
                checked,
            )
        return Membership(workspace_id, workspace, checked, row["created_at"])

    async def remove_membership(self, user_id: UUID, workspace_id: UUID) -> None:
        status = await self._pool.execute(
            "DELETE FROM memberships WHERE user_id = $1 AND workspace_id = $2",
            user_id,
            workspace_id,
        )
        if status.endswith(" 0"):
            raise NotFound("no such membership")

    async def memberships(self, user_id: UUID) -> builtins.list[Membership]:
        """The user's workspaces, oldest membership first (the default workspace)."""
        rows = await self._pool.fetch(
            """
            SELECT m.workspace_id, w.name, m.role, m.created_at
            FROM memberships m JOIN workspaces w ON w.id = m.workspace_id
            WHERE m.user_id = $1 ORDER BY m.created_at, m.workspace_id
            """,
            user_id,
        )
        return [Membership(r["workspace_id"], r["name"], r["role"], r["created_at"]) for r in rows]

    async def list(self, workspace: str | None = None) -> builtins.list[tuple[User, Membership]]:
        """Every membership (optionally of one workspace) with its user, by e-mail."""
        rows = await self._pool.fetch(
            f"""
            SELECT {", ".join("u." + c for c in _USER_COLUMNS.split(", "))},
                   m.workspace_id, w.name AS workspace_name, m.role, m.created_at AS joined
            FROM users u JOIN memberships m ON m.user_id = u.id
            JOIN workspaces w ON w.id = m.workspace_id
            WHERE $1::text IS NULL OR w.name = $1
            ORDER BY lower(u.email), m.created_at
            """,
            workspace,
        )
        return [
            (_user(r), Membership(r["workspace_id"], r["workspace_name"], r["role"], r["joined"]))
            for r in rows
        ]

    async def mark_verified(self, user_id: UUID) -> None:
        await self._pool.execute(
            "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1",
            user_id,
        )

    async def set_password_hash(self, user_id: UUID, password_hash: str) -> None:
        """Replace the hash alone (a rehash with current parameters at sign-in)."""
        await self._pool.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash
        )

    async def reset_password(self, user_id: UUID, password_hash: str, at: float) -> None:
        """A new password: every refresh token of the user is revoked, every access token
        issued before ``at`` (unix seconds, the clock that stamps tokens' ``iat``) refused,
        and the address counts as verified (the reset mail reached it)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                UPDATE users SET password_hash = $2, sessions_revoked_at = to_timestamp($3),
                       email_verified_at = coalesce(email_verified_at, now())
                WHERE id = $1
                """,
                user_id,
                password_hash,
                at,
            )
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = now() "
                "WHERE user_id = $1 AND revoked_at IS NULL",
                user_id,
            )

    async def end_sessions(self, user_id: UUID, at: float) -> builtins.list[UUID]:
        """Sign the user out everywhere: every refresh token revoked, every access token
        issued before ``at`` (unix seconds, as ``reset_password``) refused. Returns the
        workspaces they are a member of, where what they opened must close."""
        async with self._pool.acquire() as conn, conn.transaction():
            # greatest() skips NULL; an earlier reset's later stamp (a clock step) stays.
            await conn.execute(
                "UPDATE users SET sessions_revoked_at = "
                "greatest(sessions_revoked_at, to_timestamp($2)) WHERE id = $1",
                user_id,
                at,
            )
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = now() "
                "WHERE user_id = $1 AND revoked_at IS NULL",
                user_id,
            )
            rows = await conn.fetch(
                "SELECT workspace_id FROM memberships WHERE user_id = $1", user_id
            )
        return [row["workspace_id"] for row in rows]

    async def set_disabled(self, user_id: UUID, disabled: bool) -> None:
        await self._pool.execute(
            "UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END "
            "WHERE id = $1",
            user_id,
            disabled,
        )

    async def session_principal(
        self, user_id: UUID, workspace_id: UUID | None, issued_at: float
    ) -> SessionLookup:
        """The principal of an access token issued at ``issued_at`` (unix seconds) to
        ``user_id``, in ``workspace_id`` or else the user's oldest membership."""
        row = await self._pool.fetchrow(
            """
            SELECT m.workspace_id, w.name AS workspace_name, m.role
            FROM users u
            LEFT JOIN LATERAL (
                SELECT workspace_id, role FROM memberships
                WHERE user_id = u.id AND ($2::uuid IS NULL OR workspace_id = $2)
                ORDER BY created_at, workspace_id LIMIT 1
            ) m ON true
            LEFT JOIN workspaces w ON w.id = m.workspace_id
            WHERE u.id = $1 AND u.disabled_at IS NULL
              AND (u.sessions_revoked_at IS NULL
                   OR $3::float8 >= extract(epoch FROM u.sessions_revoked_at))
            """,
            user_id,
            workspace_id,
            issued_at,
        )
        if row is None:
            return SessionLookup(False, None)
        if row["workspace_id"] is None:
            return SessionLookup(True, None)
        principal = Principal(
            key_id=None,
            user_id=user_id,
            workspace_id=row["workspace_id"],
            workspace_name=row["workspace_name"],
            role=row["role"],
        )
        return SessionLookup(True, principal)
