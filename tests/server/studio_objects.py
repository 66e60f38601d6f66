"""Studio projects stored directly for the policy matrix: a project with one chapter (no text,
so a convert asked for by the matrix is a 422 and starts no job) and a snapshot of each kind
naming a small stored file."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from voicestream.rest.files import FILES
from voicestream.rest.resources import POOL
from voicestream.store.studio import (
    NewStudioChapter,
    NewStudioProject,
    StudioStore,
    new_studio_id,
)

_PROJECT = NewStudioProject(
    name="matrix",
    default_title_voice_id="slt",
    default_paragraph_voice_id="slt",
    default_model_id="eleven_multilingual_v2",
)


async def _audio_file(server: Any, workspace_id: str) -> uuid.UUID:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"not really mp3"

    record = await server.app[FILES].upload(
        workspace_id, name="s.mp3", content_type="audio/mpeg", chunks=chunks()
    )
    return record.id


async def stored_studio_project(server: Any, workspace_id: str) -> dict[str, str]:
    """The path parameters of a project, its chapter and their snapshots."""
    studio = StudioStore(server.app[POOL])
    project = await studio.create(workspace_id, _PROJECT, [NewStudioChapter("c", {"blocks": []})])
    (chapter,) = await studio.chapters(workspace_id, project.id)
    ids = {
        "studio_project_id": project.id,
        "chapter_id": chapter.id,
        "project_snapshot_id": new_studio_id(),
        "chapter_snapshot_id": new_studio_id(),
    }
    for snapshot, chapter_id in (
        (ids["project_snapshot_id"], None),
        (ids["chapter_snapshot_id"], chapter.id),
    ):
        await studio.add_snapshot(
            workspace_id,
            snapshot,
            project_id=project.id,
            chapter_id=chapter_id,
            job_id=None,
            name="s",
            file_id=await _audio_file(server, workspace_id),
            duration=1.0,
            characters=0,
        )
    return ids


def missing_studio_ids() -> dict[str, str]:
    return {
        "studio_project_id": new_studio_id(),
        "chapter_id": new_studio_id(),
        "project_snapshot_id": new_studio_id(),
        "chapter_snapshot_id": new_studio_id(),
    }
