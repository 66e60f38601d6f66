"""The OpenAPI entries of ``/v1/projects`` (rest/projects.py), merged into ``OPERATIONS``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..projects.changes import TimelineDiff
from ..rest.jobs import JobModel
from ..rest.openapi import NO_CONTENT, STRING, Op, Resp, ok
from ..rest.projects import (
    ClipAddBody,
    DiffQuery,
    ExportBody,
    PageQuery,
    ProjectCreateBody,
    ProjectModel,
    ProjectPageModel,
    ProjectRenameBody,
    TimelineBody,
    VersionModel,
    VersionPageModel,
)

__all__ = ["PROJECT_OPERATIONS"]

_TAG: Final = "projects"
_STALE: Final = Resp("`If-Match` or `base_version` is not the current version any more.")
_CHANGED: Final = {
    200: Resp("The project at its new version.", model=ProjectModel, headers={"ETag": "It."}),
    409: _STALE,
}
_SUBTITLE_PARAMS: Final[Mapping[str, Mapping[str, Any]]] = {
    "voice_id": {"type": "string"},
    "track_id": {"type": "string"},
    "format": {"type": "string", "enum": ["srt", "vtt"]},
    "base_version": {"type": "integer", "minimum": 1},
}

PROJECT_OPERATIONS: Final[Mapping[tuple[str, str], Op]] = {
    ("POST", "/v1/projects"): Op(
        "Create a project: a name and a timeline (version 1)",
        _TAG,
        body=ProjectCreateBody,
        responses=ok(ProjectModel, 201, "The project."),
    ),
    ("GET", "/v1/projects"): Op(
        "The workspace's projects, newest first",
        _TAG,
        query=PageQuery,
        responses=ok(ProjectPageModel),
    ),
    ("GET", "/v1/projects/{project_id}"): Op(
        "A project at its current version", _TAG, responses=ok(ProjectModel)
    ),
    ("PUT", "/v1/projects/{project_id}"): Op(
        "Replace the timeline: a new version",
        _TAG,
        description="Conditional with `If-Match: <version>` or `base_version`.",
        body=TimelineBody,
        responses=_CHANGED,
    ),
    ("PATCH", "/v1/projects/{project_id}"): Op(
        "Rename a project (no new version)",
        _TAG,
        body=ProjectRenameBody,
        responses=ok(ProjectModel),
    ),
    ("DELETE", "/v1/projects/{project_id}"): Op(
        "Delete a project and its versions", _TAG, responses={204: NO_CONTENT}
    ),
    ("POST", "/v1/projects/{project_id}/tracks/{track_id}/clips"): Op(
        "Add a clip to a track: a new version", _TAG, body=ClipAddBody, responses=_CHANGED
    ),
    ("PATCH", "/v1/projects/{project_id}/clips/{clip_id}"): Op(
        "Change a clip's fields: a new version",
        _TAG,
        description="The body holds the fields to set (and optionally `base_version`).",
        body_media={"application/json": {"type": "object"}},
        responses=_CHANGED,
    ),
    ("DELETE", "/v1/projects/{project_id}/clips/{clip_id}"): Op(
        "Remove a clip: a new version", _TAG, responses=_CHANGED
    ),
    ("GET", "/v1/projects/{project_id}/versions"): Op(
        "The project's versions, newest first",
        _TAG,
        query=PageQuery,
        responses=ok(VersionPageModel),
    ),
    ("GET", "/v1/projects/{project_id}/versions/{version}"): Op(
        "One version and its timeline", _TAG, responses=ok(VersionModel)
    ),
    ("POST", "/v1/projects/{project_id}/versions/{version}/restore"): Op(
        "Restore a version: a new version equal to it", _TAG, responses=_CHANGED
    ),
    ("GET", "/v1/projects/{project_id}/diff"): Op(
        "What changed between two versions (`from`, `to`)",
        _TAG,
        query=DiffQuery,
        responses=ok(TimelineDiff),
    ),
    ("POST", "/v1/projects/{project_id}/subtitles"): Op(
        "Import SRT or WebVTT: one TTS block per cue, at its start",
        _TAG,
        description="The document as the body with the options in the query, or a multipart "
        "form with a `file` part and the options as fields.",
        body_media={
            "text/plain": STRING,
            "application/x-subrip": STRING,
            "text/vtt": STRING,
            "multipart/form-data": {"type": "object"},
        },
        params=_SUBTITLE_PARAMS,
        responses=_CHANGED,
    ),
    ("POST", "/v1/projects/{project_id}/exports"): Op(
        "Export a version: submits an `export` job",
        _TAG,
        body=ExportBody,
        responses={202: Resp("Accepted: the job, queued.", model=JobModel)},
    ),
}
