"""SCIM Users and Groups of a workspace (migration 0022).

Each resource is kept as the document the identity provider sent (``document``, JSON), beside
the columns filters and provisioning read (``userName``, ``externalId``, ``displayName``,
``active``) and the account a User provisions (``user_id``). Group membership lives in its
own table as well as in the group's document, so a deleted User leaves every group at once.
Every lookup takes the workspace: another workspace's resource is a 404.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID

import asyncpg

from voicestream.errors import Conflict, NotFound
from voicestream.store import db

__all__ = [
    "FilterColumn",
    "ScimGroupFields",
    "ScimGroupRow",
    "ScimResourceRepository",
    "ScimUserFields",
    "ScimUserRow",
]

# The columns a simple ``eq`` filter is answered from (the rest is matched in Python).
FilterColumn = Literal["user_name", "external_id", "display_name"]
_USER_COLUMNS: Final = (
    "id, workspace_id, user_id, user_name, external_id, display_name, active, document, "
    "version, created_at, updated_at"
)
_GROUP_COLUMNS: Final = (
    "id, workspace_id, display_name, external_id, document, version, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class ScimUserFields:
    """What a User's creation or replacement writes."""

    user_name: str
    external_id: str | None
    display_name: str | None
    active: bool
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ScimGroupFields:
    """What a Group's creation or replacement writes."""

    display_name: str
    external_id: str | None
    document: dict[str, Any]
    member_ids: Sequence[UUID]


@dataclass(frozen=True, slots=True)
class ScimUserRow:
    id: UUID
    workspace_id: UUID
    user_id: UUID | None
    user_name: str
    external_id: str | None
    display_name: str | None
    active: bool
    document: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ScimGroupRow:
    id: UUID
    workspace_id: UUID
    display_name: str
    external_id: str | None
    document: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    member_ids: frozenset[UUID]  # the SCIM ids of its Users


def _user(row: db.Record) -> ScimUserRow:
    values = {name: row[name] for name in _USER_COLUMNS.split(", ")}
    values["document"] = json.loads(values["document"])
    return ScimUserRow(**values)


def _group(row: db.Record, member_ids: frozenset[UUID]) -> ScimGroupRow:
    values = {name: row[name] for name in _GROUP_COLUMNS.split(", ")}
    values["document"] = json.loads(values["document"])
    return ScimGroupRow(**values, member_ids=member_ids)


def _existing(row: db.Record | None, kind: str, ident: UUID) -> db.Record:
    if row is None:
        raise NotFound(f"no such {kind}", details={"id": str(ident)})
    return row


def _taken(what: str, value: str) -> Conflict:
    return Conflict(f"a {what} {value!r} exists already", details={"scimType": "uniqueness"})


class ScimResourceRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    # --- Users --------------------------------------------------------------------------

    async def create_user(
        self,
        workspace_id: UUID,
        fields: ScimUserFields,
    ) -> ScimUserRow:
        """Raises Conflict when the userName is taken here (whatever its case)."""
        try:
            row = await self._pool.fetchrow(
                f"""
                INSERT INTO scim_users
                    (workspace_id, user_name, external_id, display_name, active, document)
                VALUES ($1, $2, $3, $4, $5, $6::jsonb)
                RETURNING {_USER_COLUMNS}
                """,
                workspace_id,
                fields.user_name,
                fields.external_id,
                fields.display_name,
                fields.active,
                json.dumps(fields.document),
            )
        except asyncpg.UniqueViolationError:
            raise _taken("userName", fields.user_name) from None
        return _user(row)

    async def get_user(self, workspace_id: UUID, scim_id: UUID) -> ScimUserRow:
        row = await self._pool.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM scim_users WHERE workspace_id = $1 AND id = $2",
            workspace_id,
            scim_id,
        )
        return _user(_existing(row, "User", scim_id))

    async def replace_user(
        self,
        workspace_id: UUID,
        scim_id: UUID,
        fields: ScimUserFields,
    ) -> ScimUserRow:
        """Raises NotFound, or Conflict when the new userName is another User's."""
        try:
            row = await self._pool.fetchrow(
                f"""
                UPDATE scim_users
                SET user_name = $3, external_id = $4, display_name = $5, active = $6,
                    document = $7::jsonb, version = version + 1, updated_at = now()
                WHERE workspace_id = $1 AND id = $2
                RETURNING {_USER_COLUMNS}
                """,
                workspace_id,
                scim_id,
                fields.user_name,
                fields.external_id,
                fields.display_name,
                fields.active,
                json.dumps(fields.document),
            )
        except asyncpg.UniqueViolationError:
            raise _taken("userName", fields.user_name) from None
        return _user(_existing(row, "User", scim_id))

    async def set_account(self, workspace_id: UUID, scim_id: UUID, user_id: UUID | None) -> None:
        """Raises Conflict when another User here provisions that account already."""
        try:
            await self._pool.execute(
                "UPDATE scim_users SET user_id = $3 WHERE workspace_id = $1 AND id = $2",
                workspace_id,
                scim_id,
                user_id,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(
                "another User of this workspace provisions that e-mail address already",
                details={"scimType": "uniqueness"},
            ) from None

    async def delete_user(self, workspace_id: UUID, scim_id: UUID) -> ScimUserRow:
        row = await self._pool.fetchrow(
            f"DELETE FROM scim_users WHERE workspace_id = $1 AND id = $2 RETURNING {_USER_COLUMNS}",
            workspace_id,
            scim_id,
        )
        return _user(_existing(row, "User", scim_id))

    async def list_users(
        self, workspace_id: UUID, where: tuple[FilterColumn, str] | None
    ) -> builtins.list[ScimUserRow]:
        """The workspace's Users, oldest first; ``where`` narrows to one column's value."""
        clause, args = _where(where, case_insensitive={"user_name"})
        rows = await self._pool.fetch(
            f"SELECT {_USER_COLUMNS} FROM scim_users WHERE workspace_id = $1 {clause} "
            "ORDER BY created_at, id",
            workspace_id,
            *args,
        )
        return [_user(row) for row in rows]

    async def groups_of(self, workspace_id: UUID, scim_id: UUID) -> builtins.list[tuple[UUID, str]]:
        rows = await self._pool.fetch(
            "SELECT g.id, g.display_name FROM scim_group_members m JOIN scim_groups g "
            "ON g.id = m.group_id WHERE m.workspace_id = $1 AND m.scim_user_id = $2 "
            "ORDER BY g.display_name",
            workspace_id,
            scim_id,
        )
        return [(row["id"], row["display_name"]) for row in rows]

    # --- Groups -------------------------------------------------------------------------

    async def create_group(
        self,
        workspace_id: UUID,
        fields: ScimGroupFields,
    ) -> ScimGroupRow:
        """Raises Conflict (displayName taken here) or NotFound (a member is no User here)."""
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(
                    f"""
                    INSERT INTO scim_groups (workspace_id, display_name, external_id, document)
                    VALUES ($1, $2, $3, $4::jsonb) RETURNING {_GROUP_COLUMNS}
                    """,
                    workspace_id,
                    fields.display_name,
                    fields.external_id,
                    json.dumps(fields.document),
                )
            except asyncpg.UniqueViolationError:
                raise _taken("group", fields.display_name) from None
            members = await _set_members(conn, workspace_id, row["id"], fields.member_ids)
            return _group(row, members)

    async def get_group(self, workspace_id: UUID, group_id: UUID) -> ScimGroupRow:
        row = await self._pool.fetchrow(
            f"SELECT {_GROUP_COLUMNS} FROM scim_groups WHERE workspace_id = $1 AND id = $2",
            workspace_id,
            group_id,
        )
        found = _existing(row, "Group", group_id)
        return _group(found, (await _members(self._pool, [group_id]))[group_id])

    async def replace_group(
        self,
        workspace_id: UUID,
        group_id: UUID,
        fields: ScimGroupFields,
    ) -> tuple[ScimGroupRow, frozenset[UUID]]:
        """The group now, and its members before. Raises NotFound or Conflict."""
        async with self._pool.acquire() as conn, conn.transaction():
            before = (await _members(conn, [group_id]))[group_id]
            try:
                row = await conn.fetchrow(
                    f"""
                    UPDATE scim_groups
                    SET display_name = $3, external_id = $4, document = $5::jsonb,
                        version = version + 1, updated_at = now()
                    WHERE workspace_id = $1 AND id = $2
                    RETURNING {_GROUP_COLUMNS}
                    """,
                    workspace_id,
                    group_id,
                    fields.display_name,
                    fields.external_id,
                    json.dumps(fields.document),
                )
            except asyncpg.UniqueViolationError:
                raise _taken("group", fields.display_name) from None
            found = _existing(row, "Group", group_id)
            members = await _set_members(conn, workspace_id, group_id, fields.member_ids)
            return _group(found, members), before

    async def delete_group(self, workspace_id: UUID, group_id: UUID) -> ScimGroupRow:
        async with self._pool.acquire() as conn, conn.transaction():
            before = (await _members(conn, [group_id]))[group_id]
            row = await conn.fetchrow(
                f"DELETE FROM scim_groups WHERE workspace_id = $1 AND id = $2 "
                f"RETURNING {_GROUP_COLUMNS}",
                workspace_id,
                group_id,
            )
            return _group(_existing(row, "Group", group_id), before)

    async def list_groups(
        self, workspace_id: UUID, where: tuple[FilterColumn, str] | None
    ) -> builtins.list[ScimGroupRow]:
        clause, args = _where(where, case_insensitive=set())
        rows = await self._pool.fetch(
            f"SELECT {_GROUP_COLUMNS} FROM scim_groups WHERE workspace_id = $1 {clause} "
            "ORDER BY created_at, id",
            workspace_id,
            *args,
        )
        members = await _members(self._pool, [row["id"] for row in rows])
        return [_group(row, members[row["id"]]) for row in rows]


def _where(
    where: tuple[FilterColumn, str] | None, *, case_insensitive: set[str]
) -> tuple[str, list[str]]:
    if where is None:
        return "", []
    column, value = where
    if column in case_insensitive:
        return f"AND lower({column}) = lower($2)", [value]
    return f"AND {column} = $2", [value]


async def _members(
    conn: db.Pool | db.Connection, group_ids: list[UUID]
) -> dict[UUID, frozenset[UUID]]:
    """Each group's member ids."""
    rows = await conn.fetch(
        "SELECT group_id, scim_user_id FROM scim_group_members WHERE group_id = ANY($1::uuid[])",
        group_ids,
    )
    by_group: dict[UUID, set[UUID]] = {}
    for row in rows:
        by_group.setdefault(row["group_id"], set()).add(row["scim_user_id"])
    return {group_id: frozenset(by_group.get(group_id, ())) for group_id in group_ids}


async def _set_members(
    conn: db.Connection, workspace_id: UUID, group_id: UUID, member_ids: Sequence[UUID]
) -> frozenset[UUID]:
    wanted = set(member_ids)
    found = await conn.fetch(
        "SELECT id FROM scim_users WHERE workspace_id = $1 AND id = ANY($2::uuid[])",
        workspace_id,
        list(wanted),
    )
    missing = wanted - {row["id"] for row in found}
    if missing:
        raise NotFound(
            "a group member is no User of this workspace",
            details={"members": sorted(str(m) for m in missing)[:10]},
        )
    await conn.execute("DELETE FROM scim_group_members WHERE group_id = $1", group_id)
    await conn.executemany(
        "INSERT INTO scim_group_members (workspace_id, group_id, scim_user_id) VALUES ($1, $2, $3)",
        [(workspace_id, group_id, member) for member in wanted],
    )
    return frozenset(wanted)
