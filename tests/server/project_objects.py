"""Native studio projects (``/v1/projects``) stored directly for the policy matrix: one voice
track holding one TTS block, so every project route finds what its path names."""

from __future__ import annotations

import uuid
from typing import Any

from voicestream.rest.resources import POOL
from voicestream.store.projects import Author, ProjectRepository

TRACK_ID = "t_matrix"
CLIP_ID = "c_matrix"
_TIMELINE = {
    "tracks": [
        {
            "id": TRACK_ID,
            "kind": "voice",
            "clips": [{"id": CLIP_ID, "type": "tts", "start": 0.0, "text": "Hi.",
                       "voice_id": "slt"}],
        }
    ]
}  # fmt: skip


async def stored_project(server: Any, workspace_id: str) -> dict[str, str]:
    """The path parameters of a new project of ``workspace_id``."""
    record = await ProjectRepository(server.app[POOL]).create(
        uuid.UUID(workspace_id), "matrix", _TIMELINE, Author()
    )
    return {"project_id": str(record.id), "version": "1", "track_id": TRACK_ID,
            "clip_id": CLIP_ID}  # fmt: skip


def missing_project_ids() -> dict[str, str]:
    return {"project_id": str(uuid.uuid4()), "version": "1", "track_id": TRACK_ID,
            "clip_id": CLIP_ID}  # fmt: skip
