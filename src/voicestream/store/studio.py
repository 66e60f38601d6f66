"""ElevenLabs Studio projects: chapters of blocks of TTS nodes, and their converted audio (0019).

Every lookup takes the workspace: another workspace's project, chapter or snapshot is a
missing one. A project and its first chapters are written in one transaction, and a
conversion marks its chapters in the transaction that submits its job (``mark_converting``
takes that connection), so a project never shows a conversion without its job.

``state`` is read from the job a project or chapter last went to: ``converting`` while that
job is queued or running, ``default`` otherwise (also after a job that failed or died, whose
error the chapter then carries). What a chapter's newest snapshot converted is read from that
job's input, so an edit since shows as unconverted text.
"""

from __future__ import annotations

import builtins
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from voicestream.errors import NotFound
from voicestream.store import db
from voicestream.store._records import Id, clean, parse_id

__all__ = [
    "NewStudioChapter",
    "NewStudioProject",
    "StudioChapter",
    "StudioProject",
    "StudioSnapshot",
    "StudioStore",
    "new_studio_id",
]

_ACTIVE: Final = ("queued", "running")
# ``converted_blocks``: the chapter's blocks as its newest snapshot's job read them (the job's
# input keeps what was converted), so an edit since then shows as unconverted text.
_CHAPTER_COLUMNS: Final = """
    c.id, c.project_id, c.position, c.name, c.content, c.last_conversion_at,
    c.converted_characters, j.status AS job_status, j.error->>'message' AS job_error,
    c.updated_at,
    EXISTS (SELECT 1 FROM studio_snapshots s WHERE s.chapter_id = c.id) AS has_snapshot,
    (SELECT converted->'blocks'
     FROM studio_snapshots s JOIN jobs sj ON sj.id = s.job_id,
          jsonb_array_elements(sj.input->'chapters') AS converted
     WHERE s.chapter_id = c.id AND converted->>'chapter_id' = c.id
     ORDER BY s.created_at DESC, s.id LIMIT 1) AS converted_blocks
"""
_CHAPTER_FROM: Final = """
    studio_chapters c JOIN studio_projects p ON p.id = c.project_id
    LEFT JOIN jobs j ON j.id = c.job_id
"""
_PROJECT_COLUMNS: Final = """
    p.id, p.workspace_id, p.name, p.default_title_voice_id, p.default_paragraph_voice_id,
    p.default_model_id, p.quality_preset, p.volume_normalization, p.acx_volume_normalization,
    p.metadata, p.last_conversion_at, p.created_at,
    (j.status IN ('queued', 'running')
     OR EXISTS (SELECT 1 FROM studio_chapters c JOIN jobs cj ON cj.id = c.job_id
                WHERE c.project_id = p.id AND cj.status IN ('queued', 'running')))
        AS converting,
    EXISTS (SELECT 1 FROM studio_snapshots s
            WHERE s.project_id = p.id AND s.chapter_id IS NULL) AS has_snapshot
"""
_PROJECT_FROM: Final = "studio_projects p LEFT JOIN jobs j ON j.id = p.job_id"
_SNAPSHOT_COLUMNS: Final = (
    "s.id, s.project_id, s.chapter_id, s.job_id, s.name, s.file_id, s.duration, s.created_at"
)


def new_studio_id() -> str:
    """An opaque id like ElevenLabs' (20 characters)."""
    return secrets.token_hex(10)


@dataclass(frozen=True, slots=True)
class NewStudioChapter:
    name: str
    content: dict[str, Any]  # {"blocks": [...]}, already checked


@dataclass(frozen=True, slots=True)
class NewStudioProject:
    name: str
    default_title_voice_id: str
    default_paragraph_voice_id: str
    default_model_id: str
    quality_preset: str = "standard"
    volume_normalization: bool = False
    acx_volume_normalization: bool = False
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StudioChapter:
    id: str
    project_id: str
    position: int
    name: str
    content: dict[str, Any]
    last_conversion_at: datetime | None
    converted_characters: int
    job_status: str | None
    has_snapshot: bool
    # The last conversion job's error message, when that job failed.
    job_error: str | None = None
    updated_at: datetime | None = None
    # The blocks as last converted; None when never converted, or that job's row is gone.
    converted_blocks: builtins.list[dict[str, Any]] | None = None

    @property
    def converting(self) -> bool:
        return self.job_status in _ACTIVE

    @property
    def last_conversion_error(self) -> str | None:
        if self.job_status == "failed":
            return self.job_error or "the conversion failed"
        if self.job_status == "cancelled":
            return "the conversion was cancelled"
        return None


@dataclass(frozen=True, slots=True)
class StudioProject:
    id: str
    workspace_id: UUID
    name: str
    default_title_voice_id: str
    default_paragraph_voice_id: str
    default_model_id: str
    quality_preset: str
    volume_normalization: bool
    acx_volume_normalization: bool
    metadata: dict[str, Any]
    last_conversion_at: datetime | None
    created_at: datetime
    converting: bool
    has_snapshot: bool


@dataclass(frozen=True, slots=True)
class StudioSnapshot:
    id: str
    project_id: str
    chapter_id: str | None
    job_id: UUID | None
    name: str
    file_id: UUID | None
    duration: float
    created_at: datetime


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _chapter(row: db.Record) -> StudioChapter:
    return StudioChapter(
        id=row["id"],
        project_id=row["project_id"],
        position=row["position"],
        name=row["name"],
        content=_json(row["content"]),
        last_conversion_at=row["last_conversion_at"],
        converted_characters=row["converted_characters"],
        job_status=row["job_status"],
        has_snapshot=row["has_snapshot"],
        job_error=row["job_error"],
        updated_at=row["updated_at"],
        converted_blocks=_json(row["converted_blocks"]),
    )


def _project(row: db.Record) -> StudioProject:
    return StudioProject(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        default_title_voice_id=row["default_title_voice_id"],
        default_paragraph_voice_id=row["default_paragraph_voice_id"],
        default_model_id=row["default_model_id"],
        quality_preset=row["quality_preset"],
        volume_normalization=row["volume_normalization"],
        acx_volume_normalization=row["acx_volume_normalization"],
        metadata=_json(row["metadata"]),
        last_conversion_at=row["last_conversion_at"],
        created_at=row["created_at"],
        converting=bool(row["converting"]),
        has_snapshot=row["has_snapshot"],
    )


def _snapshot(row: db.Record) -> StudioSnapshot:
    return StudioSnapshot(
        id=row["id"],
        project_id=row["project_id"],
        chapter_id=row["chapter_id"],
        job_id=row["job_id"],
        name=row["name"],
        file_id=row["file_id"],
        duration=row["duration"],
        created_at=row["created_at"],
    )


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


async def _insert_chapter(
    conn: db.Connection, chapter_id: str, project_id: str, position: int, chapter: NewStudioChapter
) -> None:
    await conn.execute(
        """
        INSERT INTO studio_chapters (id, project_id, position, name, content)
        VALUES ($1, $2, $3, $4, $5::jsonb)
        """,
        chapter_id,
        project_id,
        position,
        clean(chapter.name),
        _dump(chapter.content),
    )


async def _lock_project(conn: db.Connection, workspace_id: UUID, project_id: str) -> None:
    """The project's row locked for the transaction; NotFound when it is not the workspace's."""
    found = await conn.fetchval(
        "SELECT id FROM studio_projects WHERE id = $1 AND workspace_id = $2 FOR UPDATE",
        project_id,
        workspace_id,
    )
    if found is None:
        raise _no_project(project_id)


def _no_project(project_id: str) -> NotFound:
    return NotFound(f"no studio project with id {project_id!r}")


def _no_chapter(chapter_id: str) -> NotFound:
    return NotFound(f"no chapter with id {chapter_id!r}")


class StudioStore:
    def __init__(self, pool: db.Pool) -> None:
        self._pool = pool

    # --- projects -------------------------------------------------------------------------

    async def create(
        self, workspace_id: Id, new: NewStudioProject, chapters: Sequence[NewStudioChapter]
    ) -> StudioProject:
        ws = parse_id(workspace_id, "workspace")
        project_id = new_studio_id()
        async with self._pool.acquire() as conn, conn.transaction():
            await self.insert(conn, ws, project_id, new, [(new_studio_id(), c) for c in chapters])
        return await self.get(ws, project_id)

    @staticmethod
    async def insert(
        conn: db.Connection,
        workspace_id: UUID,
        project_id: str,
        new: NewStudioProject,
        chapters: Sequence[tuple[str, NewStudioChapter]],
    ) -> None:
        """Within the caller's transaction (one that also submits its conversion job): the
        project and its chapters, with the ids given."""
        await conn.execute(
            """
            INSERT INTO studio_projects (id, workspace_id, name, default_title_voice_id,
                default_paragraph_voice_id, default_model_id, quality_preset,
                volume_normalization, acx_volume_normalization, metadata)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
            """,
            project_id,
            workspace_id,
            clean(new.name),
            new.default_title_voice_id,
            new.default_paragraph_voice_id,
            new.default_model_id,
            new.quality_preset,
            new.volume_normalization,
            new.acx_volume_normalization,
            _dump(new.metadata or {}),
        )
        for position, (chapter_id, chapter) in enumerate(chapters):
            await _insert_chapter(conn, chapter_id, project_id, position, chapter)

    async def exists(self, workspace_id: Id, project_id: str) -> bool:
        ws = parse_id(workspace_id, "workspace")
        found = await self._pool.fetchval(
            "SELECT 1 FROM studio_projects WHERE id = $1 AND workspace_id = $2", project_id, ws
        )
        return found is not None

    async def get(self, workspace_id: Id, project_id: str) -> StudioProject:
        ws = parse_id(workspace_id, "workspace")
        row = await self._pool.fetchrow(
            f"SELECT {_PROJECT_COLUMNS} FROM {_PROJECT_FROM} "
            "WHERE p.id = $1 AND p.workspace_id = $2",
            project_id,
            ws,
        )
        if row is None:
            raise _no_project(project_id)
        return _project(row)

    async def list(self, workspace_id: Id) -> builtins.list[StudioProject]:
        ws = parse_id(workspace_id, "workspace")
        rows = await self._pool.fetch(
            f"SELECT {_PROJECT_COLUMNS} FROM {_PROJECT_FROM} WHERE p.workspace_id = $1 "
            "ORDER BY p.created_at DESC, p.id",
            ws,
        )
        return [_project(row) for row in rows]

    async def update(
        self,
        workspace_id: Id,
        project_id: str,
        *,
        name: str | None = None,
        default_title_voice_id: str | None = None,
        default_paragraph_voice_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        volume_normalization: bool | None = None,
    ) -> StudioProject:
        ws = parse_id(workspace_id, "workspace")
        done = await self._pool.fetchval(
            """
            UPDATE studio_projects SET
                name = COALESCE($3, name),
                default_title_voice_id = COALESCE($4, default_title_voice_id),
                default_paragraph_voice_id = COALESCE($5, default_paragraph_voice_id),
                metadata = metadata || COALESCE($6::jsonb, '{}'::jsonb),
                volume_normalization = COALESCE($7, volume_normalization),
                updated_at = now()
            WHERE id = $1 AND workspace_id = $2
            RETURNING id
            """,
            project_id,
            ws,
            clean(name) if name is not None else None,
            default_title_voice_id,
            default_paragraph_voice_id,
            _dump(metadata) if metadata else None,
            volume_normalization,
        )
        if done is None:
            raise _no_project(project_id)
        return await self.get(ws, project_id)

    async def delete(self, workspace_id: Id, project_id: str) -> builtins.list[UUID]:
        """Deletes the project, its chapters and snapshots; returns the snapshots' file ids
        (the caller deletes the files: storage is not this module's)."""
        ws = parse_id(workspace_id, "workspace")
        async with self._pool.acquire() as conn, conn.transaction():
            # The row locked first: a snapshot a conversion is adding now (add_snapshot locks
            # it too) is either in the list below or never written.
            await _lock_project(conn, ws, project_id)
            files = await conn.fetch(
                """
                SELECT s.file_id FROM studio_snapshots s JOIN studio_projects p
                    ON p.id = s.project_id
                WHERE p.id = $1 AND p.workspace_id = $2 AND s.file_id IS NOT NULL
                """,
                project_id,
                ws,
            )
            gone = await conn.fetchval(
                "DELETE FROM studio_projects WHERE id = $1 AND workspace_id = $2 RETURNING id",
                project_id,
                ws,
            )
            if gone is None:
                raise _no_project(project_id)
        return [row["file_id"] for row in files]

    @staticmethod
    async def replace_chapters(
        conn: db.Connection,
        workspace_id: UUID,
        project_id: str,
        chapters: Sequence[tuple[str, NewStudioChapter]],
    ) -> builtins.list[UUID]:
        """Within the caller's transaction (one that may also submit their conversion): the
        project's chapters become ``chapters``, the old ones going with their snapshots.
        Returns those snapshots' file ids, for the caller to delete once committed. NotFound
        when the project is not the workspace's."""
        await _lock_project(conn, workspace_id, project_id)
        files = await conn.fetch(
            "SELECT file_id FROM studio_snapshots WHERE project_id = $1 "
            "AND chapter_id IS NOT NULL AND file_id IS NOT NULL",
            project_id,
        )
        await conn.execute("DELETE FROM studio_chapters WHERE project_id = $1", project_id)
        for position, (chapter_id, chapter) in enumerate(chapters):
            await _insert_chapter(conn, chapter_id, project_id, position, chapter)
        await conn.execute(
            "UPDATE studio_projects SET updated_at = now() WHERE id = $1", project_id
        )
        return [row["file_id"] for row in files]

    # --- chapters -------------------------------------------------------------------------

    async def chapters(self, workspace_id: Id, project_id: str) -> builtins.list[StudioChapter]:
        """NotFound when the project is not the workspace's."""
        ws = parse_id(workspace_id, "workspace")
        await self.get(ws, project_id)
        rows = await self._pool.fetch(
            f"SELECT {_CHAPTER_COLUMNS} FROM {_CHAPTER_FROM} "
            "WHERE p.id = $1 AND p.workspace_id = $2 ORDER BY c.position, c.created_at",
            project_id,
            ws,
        )
        return [_chapter(row) for row in rows]

    async def chapter(self, workspace_id: Id, project_id: str, chapter_id: str) -> StudioChapter:
        ws = parse_id(workspace_id, "workspace")
        row = await self._pool.fetchrow(
            f"SELECT {_CHAPTER_COLUMNS} FROM {_CHAPTER_FROM} "
            "WHERE c.id = $1 AND p.id = $2 AND p.workspace_id = $3",
            chapter_id,
            project_id,
            ws,
        )
        if row is None:
            await self.get(ws, project_id)  # the project's own 404 first
            raise _no_chapter(chapter_id)
        return _chapter(row)

    async def add_chapter(
        self, workspace_id: Id, project_id: str, chapter: NewStudioChapter
    ) -> StudioChapter:
        ws = parse_id(workspace_id, "workspace")
        async with self._pool.acquire() as conn, conn.transaction():
            # The project's row, locked: two chapters added at once get distinct positions.
            await _lock_project(conn, ws, project_id)
            position = await conn.fetchval(
                "SELECT COALESCE(max(position) + 1, 0) FROM studio_chapters WHERE project_id = $1",
                project_id,
            )
            chapter_id = new_studio_id()
            await _insert_chapter(conn, chapter_id, project_id, position, chapter)
        return await self.chapter(ws, project_id, chapter_id)

    async def update_chapter(
        self,
        workspace_id: Id,
        project_id: str,
        chapter_id: str,
        *,
        name: str | None = None,
        content: dict[str, Any] | None = None,
    ) -> StudioChapter:
        ws = parse_id(workspace_id, "workspace")
        done = await self._pool.fetchval(
            """
            UPDATE studio_chapters c SET
                name = COALESCE($4, c.name),
                content = COALESCE($5::jsonb, c.content),
                updated_at = now()
            FROM studio_projects p
            WHERE c.id = $1 AND p.id = c.project_id AND p.id = $2 AND p.workspace_id = $3
            RETURNING c.id
            """,
            chapter_id,
            project_id,
            ws,
            clean(name) if name is not None else None,
            _dump(content) if content is not None else None,
        )
        if done is None:
            await self.get(ws, project_id)
            raise _no_chapter(chapter_id)
        return await self.chapter(ws, project_id, chapter_id)

    async def delete_chapter(
        self, workspace_id: Id, project_id: str, chapter_id: str
    ) -> builtins.list[UUID]:
        """Deletes the chapter and its snapshots; returns their file ids."""
        ws = parse_id(workspace_id, "workspace")
        await self.chapter(ws, project_id, chapter_id)
        async with self._pool.acquire() as conn, conn.transaction():
            files = await conn.fetch(
                "SELECT file_id FROM studio_snapshots WHERE chapter_id = $1 "
                "AND file_id IS NOT NULL",
                chapter_id,
            )
            gone = await conn.fetchval(
                """
                DELETE FROM studio_chapters c USING studio_projects p
                WHERE c.id = $1 AND p.id = c.project_id AND p.id = $2 AND p.workspace_id = $3
                RETURNING c.id
                """,
                chapter_id,
                project_id,
                ws,
            )
            if gone is None:
                raise _no_chapter(chapter_id)
        return [row["file_id"] for row in files]

    # --- conversion -----------------------------------------------------------------------

    @staticmethod
    async def mark_converting(
        conn: db.Connection,
        project_id: str,
        chapter_ids: Sequence[str],
        job_id: UUID,
        *,
        whole_project: bool,
    ) -> None:
        """Inside the submitting transaction: these chapters (and the project, when all of it
        is converted) now go to ``job_id``."""
        await conn.execute(
            "UPDATE studio_chapters SET job_id = $2 WHERE project_id = $1 AND id = ANY($3)",
            project_id,
            job_id,
            list(chapter_ids),
        )
        if whole_project:
            await conn.execute(
                "UPDATE studio_projects SET job_id = $2 WHERE id = $1", project_id, job_id
            )

    async def add_snapshot(
        self,
        workspace_id: Id,
        snapshot_id: str,
        *,
        project_id: str,
        chapter_id: str | None,
        job_id: UUID | None,
        name: str,
        file_id: UUID,
        duration: float,
        characters: int,
    ) -> bool:
        """A conversion's audio, once (a rerun of the job writes nothing new). False when the
        project or chapter was deleted meanwhile."""
        ws = parse_id(workspace_id, "workspace")
        async with self._pool.acquire() as conn, conn.transaction():
            owner = await conn.fetchval(
                "SELECT id FROM studio_projects WHERE id = $1 AND workspace_id = $2 FOR UPDATE",
                project_id,
                ws,
            )
            if owner is None:
                return False
            if chapter_id is not None:
                updated = await conn.fetchval(
                    """
                    UPDATE studio_chapters SET last_conversion_at = now(),
                        converted_characters = $3
                    WHERE id = $1 AND project_id = $2 RETURNING id
                    """,
                    chapter_id,
                    project_id,
                    characters,
                )
                if updated is None:
                    return False
            else:
                await conn.execute(
                    "UPDATE studio_projects SET last_conversion_at = now() WHERE id = $1",
                    project_id,
                )
            await conn.execute(
                """
                INSERT INTO studio_snapshots (id, project_id, chapter_id, job_id, name, file_id,
                                              duration)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (id) DO NOTHING
                """,
                snapshot_id,
                project_id,
                chapter_id,
                job_id,
                clean(name),
                file_id,
                duration,
            )
        return True

    async def snapshots(
        self, workspace_id: Id, project_id: str, chapter_id: str | None = None
    ) -> builtins.list[StudioSnapshot]:
        """The project's own snapshots, or ``chapter_id``'s; newest first."""
        ws = parse_id(workspace_id, "workspace")
        if chapter_id is None:
            await self.get(ws, project_id)
        else:
            await self.chapter(ws, project_id, chapter_id)
        rows = await self._pool.fetch(
            f"SELECT {_SNAPSHOT_COLUMNS} FROM studio_snapshots s "
            "WHERE s.project_id = $1 AND s.chapter_id IS NOT DISTINCT FROM $2 "
            "ORDER BY s.created_at DESC, s.id",
            project_id,
            chapter_id,
        )
        return [_snapshot(row) for row in rows]

    async def snapshot(
        self,
        workspace_id: Id,
        project_id: str,
        snapshot_id: str,
        chapter_id: str | None = None,
    ) -> StudioSnapshot:
        for found in await self.snapshots(workspace_id, project_id, chapter_id):
            if found.id == snapshot_id:
                return found
        raise NotFound(f"no snapshot with id {snapshot_id!r}")

    async def chapter_snapshots_of(
        self, workspace_id: Id, project_id: str, job_id: UUID | None = None
    ) -> builtins.list[StudioSnapshot]:
        """The newest snapshot of each chapter, in chapter order (``job_id``: that job's)."""
        ws = parse_id(workspace_id, "workspace")
        await self.get(ws, project_id)
        rows = await self._pool.fetch(
            f"""
            SELECT DISTINCT ON (c.position, c.id) {_SNAPSHOT_COLUMNS}
            FROM studio_snapshots s JOIN studio_chapters c ON c.id = s.chapter_id
            WHERE s.project_id = $1 AND ($2::uuid IS NULL OR s.job_id = $2)
            ORDER BY c.position, c.id, s.created_at DESC
            """,
            project_id,
            job_id,
        )
        return [_snapshot(row) for row in rows]
