"""What the OpenAPI document says about ElevenLabs' Studio projects
(``transports/elevenlabs_studio.py``). Merged into ``openapi_compat_routes.COMPAT_OPERATIONS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel

from ..rest.openapi import BINARY, MULTIPART, OBJECT_BODY, Op, Resp
from ..transports.elevenlabs_studio import (
    ChapterCreateBody,
    ChapterUpdateBody,
    ProjectUpdateBody,
)

__all__ = ["STUDIO_OPERATIONS"]

_EL: Final = "ElevenLabs"
_P: Final = "/elevenlabs/v1/studio/projects"
_ONE: Final = _P + "/{studio_project_id}"
_CH: Final = _ONE + "/chapters/{chapter_id}"
_MP3: Final = {200: Resp("The snapshot's MP3.", media="audio/mpeg", schema=BINARY)}
_ZIP: Final = {200: Resp("A zip of the chapters' MP3s.", media="application/zip", schema=BINARY)}


def _op(
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    body_media: Mapping[str, Mapping[str, Any]] | None = None,
    responses: Mapping[int, Resp] | None = None,
) -> Op:
    return Op(
        f"ElevenLabs Studio: {summary}",
        _EL,
        compat=True,
        body=body,
        body_media=body_media,
        responses=responses or {},
    )


STUDIO_OPERATIONS: Final[Mapping[tuple[str, str], Op]] = {
    ("GET", _P): _op("list projects"),
    ("POST", _P): _op(
        "create a project (blank, from a document or from content JSON)", body_media=MULTIPART
    ),
    ("GET", _ONE): _op("a project with its chapters"),
    ("POST", _ONE): _op("update a project", body=ProjectUpdateBody),
    ("DELETE", _ONE): _op("delete a project, its snapshots and their audio"),
    ("POST", _ONE + "/content"): _op(
        "replace a project's chapters (from a document or from content JSON)",
        body_media=MULTIPART,
    ),
    ("POST", _ONE + "/convert"): _op("convert the whole project (a studio_convert job)"),
    ("GET", _ONE + "/snapshots"): _op("the project's snapshots"),
    ("GET", _ONE + "/snapshots/{project_snapshot_id}"): _op("a project snapshot"),
    ("POST", _ONE + "/snapshots/{project_snapshot_id}/stream"): _op(
        "a project snapshot's audio", body_media=OBJECT_BODY, responses=_MP3
    ),
    ("POST", _ONE + "/snapshots/{project_snapshot_id}/archive"): _op(
        "a project snapshot's chapters as a zip", responses=_ZIP
    ),
    ("GET", _ONE + "/chapters"): _op("the project's chapters"),
    ("POST", _ONE + "/chapters"): _op("add a chapter", body=ChapterCreateBody),
    ("GET", _CH): _op("a chapter with its content"),
    ("POST", _CH): _op("update a chapter's name or content", body=ChapterUpdateBody),
    ("DELETE", _CH): _op("delete a chapter and its snapshots"),
    ("POST", _CH + "/convert"): _op("convert one chapter (a studio_convert job)"),
    ("GET", _CH + "/snapshots"): _op("the chapter's snapshots"),
    ("GET", _CH + "/snapshots/{chapter_snapshot_id}"): _op("a chapter snapshot"),
    ("POST", _CH + "/snapshots/{chapter_snapshot_id}/stream"): _op(
        "a chapter snapshot's audio", body_media=OBJECT_BODY, responses=_MP3
    ),
}
