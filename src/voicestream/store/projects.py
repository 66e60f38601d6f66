"""Studio projects and the versions of their timelines (migration 0018).

Every lookup takes the workspace: another workspace's project is as missing as one that never
existed. A change of the timeline adds a version in the same transaction that moves the
project's ``current_version``, under the project row's lock, so two concurrent edits become two
versions one after the other, or (with a base version) one of them is refused.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID, uuid4

from voicestream.errors import Conflict, NotFound
from voicestream.store import db
from voicestream.store._records import Id, parse_id

__all__ = [
    "MAX_PAGE_SIZE",
    "Author",
    "ProjectPage",
    "ProjectRecord",
    "ProjectRepository",
    "VersionPage",
    "VersionRecord",
]

MAX_PAGE_SIZE: Final = 100
_PROJECT: Final = """
    p.id, p.workspace_id, p.name, p.current_version, p.created_at, p.updated_at, v.timeline
"""
_VERSION: Final = (
    "project_id, version, timeline, author_user_id, author_key_id, summary, created_at"
)


@dataclass(frozen=True, slots=True)
class Author:
    user_id: UUID | None = None
    key_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    id: UUID
    workspace_id: UUID
    name: str
    version: int
    timeline: dict[str, Any]  # the current version's
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class VersionRecord:
    project_id: UUID
    version: int
    timeline: dict[str, Any]
    author_user_id: UUID | None
    author_key_id: UUID | None
    summary: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ProjectPage:
    projects: list[ProjectRecord]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class VersionPage:
    versions: list[VersionRecord]
    next_cursor: str | None  # the version number to continue below


def _json(value: Any) -> dict[str, Any]:
    # No JSON codec is registered on the pool: jsonb arrives as its text.
    loaded = json.loads(value) if isinstance(value, str) else value
    assert isinstance(loaded, dict)
    return loaded


def _project(row: Any) -> ProjectRecord:
    return ProjectRecord(
        row["id"],
        row["workspace_id"],
        row["name"],
        row["current_version"],
        _json(row["timeline"]),
        row["created_at"],
        row["updated_at"],
    )


def _version(row: Any) -> VersionRecord:
    return VersionRecord(
        row["project_id"],
        row["version"],
        _json(row["timeline"]),
        row["author_user_id"],
        row["author_key_id"],
        row["summary"],
        row["created_at"],
    )


def _missing(project_id: Id) -> NotFound:
    return NotFound(f"no project with id {str(project_id)!r}")


# An edit: given the current project, the next timeline and its summary.
Edit = Callable[[ProjectRecord], Awaitable[tuple[dict[str, Any], str]]]


class ProjectRepository:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    async def create(
        self, workspace_id: UUID, name: str, timeline: dict[str, Any], author: Author
    ) -> ProjectRecord:
        project_id = uuid4()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO projects (id, workspace_id, name, current_version) "
                "VALUES ($1, $2, $3, 1)",
                project_id,
                workspace_id,
                name,
            )
            await _insert_version(conn, project_id, 1, timeline, author, "created")
        return await self.get(workspace_id, project_id)

    async def get(self, workspace_id: Id, project_id: Id) -> ProjectRecord:
        ws = parse_id(workspace_id, "workspace")
        pid = parse_id(project_id, "project")
        row = await self._pool.fetchrow(
            f"""
            SELECT {_PROJECT} FROM projects p
            JOIN project_versions v ON v.project_id = p.id AND v.version = p.current_version
            WHERE p.id = $1 AND p.workspace_id = $2
            """,
            pid,
            ws,
        )
        if row is None:
            raise _missing(project_id)
        return _project(row)

    async def list(self, workspace_id: UUID, *, limit: int, cursor: str | None) -> ProjectPage:
        """Newest first; ``cursor`` is the last id of the page before."""
        after: tuple[datetime, UUID] | None = None
        if cursor is not None:
            row = await self._pool.fetchrow(
                "SELECT created_at, id FROM projects WHERE id = $1 AND workspace_id = $2",
                parse_id(cursor, "cursor"),
                workspace_id,
            )
            if row is None:
                raise NotFound("the cursor names no project of this workspace")
            after = (row["created_at"], row["id"])
        rows = await self._pool.fetch(
            f"""
            SELECT {_PROJECT} FROM projects p
            JOIN project_versions v ON v.project_id = p.id AND v.version = p.current_version
            WHERE p.workspace_id = $1
              AND ($2::timestamptz IS NULL OR (p.created_at, p.id) < ($2, $3))
            ORDER BY p.created_at DESC, p.id DESC
            LIMIT $4
            """,
            workspace_id,
            after[0] if after else None,
            after[1] if after else None,
            limit + 1,
        )
        projects = [_project(r) for r in rows[:limit]]
        more = len(rows) > limit
        return ProjectPage(projects, str(projects[-1].id) if more and projects else None)

    async def rename(self, workspace_id: Id, project_id: Id, name: str) -> ProjectRecord:
        ws = parse_id(workspace_id, "workspace")
        pid = parse_id(project_id, "project")
        status = await self._pool.execute(
            "UPDATE projects SET name = $3, updated_at = now() WHERE id = $1 AND workspace_id = $2",
            pid,
            ws,
            name,
        )
        if status.endswith(" 0"):
            raise _missing(project_id)
        return await self.get(ws, pid)

    async def delete(self, workspace_id: Id, project_id: Id) -> None:
        ws = parse_id(workspace_id, "workspace")
        pid = parse_id(project_id, "project")
        status = await self._pool.execute(
            "DELETE FROM projects WHERE id = $1 AND workspace_id = $2", pid, ws
        )
        if status.endswith(" 0"):
            raise _missing(project_id)

    async def change(
        self,
        workspace_id: Id,
        project_id: Id,
        edit: Edit,
        author: Author,
        *,
        base_version: int | None = None,
    ) -> ProjectRecord:
        """A new version made by ``edit`` from the current one, under the project's lock.

        Raises:
            NotFound: no such project in the workspace.
            Conflict: ``base_version`` is given and is no longer the current version.
        """
        ws = parse_id(workspace_id, "workspace")
        pid = parse_id(project_id, "project")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""
                SELECT {_PROJECT} FROM projects p
                JOIN project_versions v ON v.project_id = p.id AND v.version = p.current_version
                WHERE p.id = $1 AND p.workspace_id = $2
                FOR UPDATE OF p
                """,
                pid,
                ws,
            )
            if row is None:
                raise _missing(project_id)
            current = _project(row)
            if base_version is not None and base_version != current.version:
                raise Conflict(
                    f"the project is at version {current.version}, not {base_version}: "
                    "read it again and apply your change to that version",
                    details={"current_version": current.version, "base_version": base_version},
                )
            timeline, summary = await edit(current)
            version = current.version + 1
            await _insert_version(conn, pid, version, timeline, author, summary)
            await conn.execute(
                "UPDATE projects SET current_version = $2, updated_at = now() WHERE id = $1",
                pid,
                version,
            )
        return await self.get(ws, pid)

    async def versions(
        self, workspace_id: Id, project_id: Id, *, limit: int, before: int | None
    ) -> VersionPage:
        """Newest first, below version ``before`` when given."""
        project = await self.get(workspace_id, project_id)
        rows = await self._pool.fetch(
            f"""
            SELECT {_VERSION} FROM project_versions
            WHERE project_id = $1 AND ($2::integer IS NULL OR version < $2)
            ORDER BY version DESC LIMIT $3
            """,
            project.id,
            before,
            limit + 1,
        )
        versions = [_version(r) for r in rows[:limit]]
        more = len(rows) > limit
        return VersionPage(versions, str(versions[-1].version) if more and versions else None)

    async def version(self, workspace_id: Id, project_id: Id, version: int) -> VersionRecord:
        project = await self.get(workspace_id, project_id)
        row = await self._pool.fetchrow(
            f"SELECT {_VERSION} FROM project_versions WHERE project_id = $1 AND version = $2",
            project.id,
            version,
        )
        if row is None:
            raise NotFound(
                f"project {project.id} has no version {version} (it is at {project.version})",
                details={"current_version": project.version},
            )
        return _version(row)


async def _insert_version(
    conn: db.Connection,
    project_id: UUID,
    version: int,
    timeline: dict[str, Any],
    author: Author,
    summary: str,
) -> None:
    await conn.execute(
        f"""
        INSERT INTO project_versions ({_VERSION.replace(", created_at", "")})
        VALUES ($1, $2, $3::jsonb, $4, $5, $6)
        """,
        project_id,
        version,
        json.dumps(timeline, ensure_ascii=False),
        author.user_id,
        author.key_id,
        summary[:500],
    )
