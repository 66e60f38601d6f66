"""``/v1/projects``: studio projects — a timeline of voice, music and effects tracks, and its
versions.

Every change of the timeline (``PUT`` of the whole of it, adding, changing or removing a clip,
importing subtitles, restoring an old version) stores a new immutable version; ``If-Match:
<version>`` or ``base_version`` in the body makes a change conditional (409 when the project
has moved on). A timeline may only name voices the server has and files of the workspace
(another workspace's file is a 404 like a missing one). ``POST .../exports`` submits an
``export`` job (jobs/types/export.py) of the current version, or of the one named.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..engines.catalog import EngineRegistry
from ..errors import BadRequest, PayloadTooLarge, UnknownVoice, ValidationFailed
from ..identity.request_principal import principal_of
from ..jobs.types.export import ExportInput, check_exportable
from ..media.subtitles import Cue, parse_srt, parse_vtt
from ..projects.changes import TimelineDiff, add_clip, delete_clip, diff, update_clip
from ..projects.timeline import (
    MAX_CLIPS,
    MAX_TEXT,
    Clip,
    ProjectSettings,
    Timeline,
    Track,
    TTSClip,
    VideoAsset,
)
from ..protocols.json_messages import validate_model
from ..store.files import FileStore
from ..store.projects import MAX_PAGE_SIZE, Author, ProjectRecord, ProjectRepository
from .bodies import read_json_object, read_model, read_query
from .files import FILES
from .jobs import JOBS, JobModel
from .multipart import read_form
from .resources import POOL, REGISTRY

__all__ = [
    "PROJECTS_PREFIX",
    "ClipAddBody",
    "DiffQuery",
    "ExportBody",
    "PageQuery",
    "ProjectCreateBody",
    "ProjectModel",
    "ProjectPageModel",
    "ProjectRenameBody",
    "TimelineBody",
    "VersionModel",
    "VersionPageModel",
    "projects_app",
]

PROJECTS_PREFIX: Final = "/v1/projects"
MAX_SUBTITLE_BYTES: Final = 2 * 1024 * 1024
_VERSION_TAG = re.compile(r'^(?:W/)?"?(\d{1,9})"?$')

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ProjectModel(BaseModel):
    id: UUID
    name: str
    version: int = Field(description="the current version; send it back as If-Match")
    created_at: datetime
    updated_at: datetime
    settings: ProjectSettings
    video_asset: VideoAsset | None
    tracks: list[Track]

    @classmethod
    def of(cls, record: ProjectRecord) -> ProjectModel:
        timeline = Timeline.model_validate(record.timeline)
        return cls(
            id=record.id,
            name=record.name,
            version=record.version,
            created_at=record.created_at,
            updated_at=record.updated_at,
            settings=timeline.settings,
            video_asset=timeline.video_asset,
            tracks=timeline.tracks,
        )


class ProjectPageModel(BaseModel):
    data: list[ProjectModel]
    next_cursor: str | None


class VersionSummary(BaseModel):
    version: int
    created_at: datetime
    author_user_id: UUID | None
    author_key_id: UUID | None
    summary: str


class VersionModel(VersionSummary):
    timeline: Timeline


class VersionPageModel(BaseModel):
    data: list[VersionSummary]
    next_cursor: str | None  # pass as ``cursor`` for older versions


class ProjectCreateBody(Timeline):
    name: Name


class TimelineBody(Timeline):
    base_version: int | None = Field(None, ge=1)
    summary: Annotated[str, StringConstraints(max_length=200)] | None = None


class ProjectRenameBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name


class ClipAddBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clip: Clip
    base_version: int | None = Field(None, ge=1)


class ExportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    version: int | None = Field(None, ge=1)
    loudness: float | None = Field(None, ge=-40.0, le=-5.0)


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    cursor: Annotated[str, StringConstraints(max_length=100)] | None = None


class DiffQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_version: int = Field(alias="from", ge=1)
    to_version: int = Field(alias="to", ge=1)


class SubtitleQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    voice_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    track_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    format: Literal["srt", "vtt"] | None = None  # None: WebVTT when it starts with WEBVTT
    base_version: int | None = Field(None, ge=1)


def _json(
    body: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        text=body.model_dump_json(by_alias=True), status=status, headers=headers
    )


def _project_response(record: ProjectRecord, status: int = 200) -> web.Response:
    return _json(ProjectModel.of(record), status, {"ETag": f'"{record.version}"'})


def _repo(request: web.Request) -> ProjectRepository:
    return ProjectRepository(request.config_dict[POOL])


def _author(request: web.Request) -> Author:
    principal = principal_of(request)
    return Author(principal.user_id, principal.key_id)


def _base_version(request: web.Request, in_body: int | None) -> int | None:
    """The version a change is based on: ``If-Match`` or the body's ``base_version``."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return in_body
    found = _VERSION_TAG.match(header.strip())
    if found is None:
        raise ValidationFailed(
            "If-Match must be the project's version, e.g. If-Match: 3",
            details={"fields": [{"field": "If-Match", "message": "not a version number"}]},
        )
    version = int(found.group(1))
    if in_body is not None and in_body != version:
        raise ValidationFailed("If-Match and base_version disagree")
    return version


async def _check_references(request: web.Request, timeline: Timeline) -> None:
    """Every voice the timeline names exists here and every file is the workspace's.

    Raises:
        UnknownVoice: a voice the server does not have (400: a body field).
        NotFound: a file that is missing or another workspace's.
        ValidationFailed: a file whose upload has not arrived.
    """
    registry: EngineRegistry = request.config_dict[REGISTRY]
    for voice_id in timeline.voice_ids():
        try:
            registry.voice(voice_id)
        except UnknownVoice as exc:
            raise UnknownVoice(
                f"unknown voice {voice_id!r} in the timeline (GET /v1/voices lists them)",
                details={"voice_id": voice_id},
            ) from exc
    files: FileStore = request.config_dict[FILES]
    workspace_id = principal_of(request).workspace_id
    for file_id in timeline.file_ids():
        record = await files.get(workspace_id, file_id)  # NotFound for another workspace's
        if not record.uploaded:
            raise ValidationFailed(
                f"file {file_id} has no bytes yet: finish its upload first",
                details={"file_id": str(file_id)},
            )


def _timeline_of(body: Timeline) -> Timeline:
    return Timeline(settings=body.settings, video_asset=body.video_asset, tracks=body.tracks)


# --- projects -------------------------------------------------------------------------------


async def create_project(request: web.Request) -> web.Response:
    body = await read_model(request, ProjectCreateBody)
    timeline = _timeline_of(body)
    await _check_references(request, timeline)
    record = await _repo(request).create(
        principal_of(request).workspace_id, body.name, timeline.dump(), _author(request)
    )
    headers = {"Location": f"{PROJECTS_PREFIX}/{record.id}", "ETag": f'"{record.version}"'}
    return _json(ProjectModel.of(record), 201, headers)


async def list_projects(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    page = await _repo(request).list(
        principal_of(request).workspace_id, limit=query.limit, cursor=query.cursor
    )
    models = [ProjectModel.of(p) for p in page.projects]
    return _json(ProjectPageModel(data=models, next_cursor=page.next_cursor))


async def get_project(request: web.Request) -> web.Response:
    record = await _repo(request).get(
        principal_of(request).workspace_id, request.match_info["project_id"]
    )
    return _project_response(record)


async def rename_project(request: web.Request) -> web.Response:
    workspace_id = principal_of(request).workspace_id
    project_id = request.match_info["project_id"]
    await _repo(request).get(workspace_id, project_id)  # 404 before the body's 422
    body = await read_model(request, ProjectRenameBody)
    return _project_response(await _repo(request).rename(workspace_id, project_id, body.name))


async def delete_project(request: web.Request) -> web.Response:
    await _repo(request).delete(
        principal_of(request).workspace_id, request.match_info["project_id"]
    )
    return web.Response(status=204)


async def _change(
    request: web.Request,
    edit: Any,
    summary: str,
    base_version: int | None,
) -> web.Response:
    """A new version: ``edit(current timeline) -> new timeline``, its references checked."""

    async def apply(current: ProjectRecord) -> tuple[dict[str, Any], str]:
        timeline: Timeline = edit(Timeline.model_validate(current.timeline))
        await _check_references(request, timeline)
        return timeline.dump(), summary

    record = await _repo(request).change(
        principal_of(request).workspace_id,
        request.match_info["project_id"],
        apply,
        _author(request),
        base_version=_base_version(request, base_version),
    )
    return _project_response(record)


async def replace_timeline(request: web.Request) -> web.Response:
    workspace_id = principal_of(request).workspace_id
    await _repo(request).get(workspace_id, request.match_info["project_id"])
    body = await read_model(request, TimelineBody)
    timeline = _timeline_of(body)
    return await _change(
        request, lambda _: timeline, body.summary or "timeline replaced", body.base_version
    )


async def add_project_clip(request: web.Request) -> web.Response:
    workspace_id = principal_of(request).workspace_id
    await _repo(request).get(workspace_id, request.match_info["project_id"])
    body = await read_model(request, ClipAddBody)
    track_id = request.match_info["track_id"]
    return await _change(
        request,
        lambda current: add_clip(current, track_id, body.clip),
        f"clip {body.clip.id} added to track {track_id}",
        body.base_version,
    )


async def update_project_clip(request: web.Request) -> web.Response:
    workspace_id = principal_of(request).workspace_id
    await _repo(request).get(workspace_id, request.match_info["project_id"])
    changes = await read_json_object(request)
    base = changes.pop("base_version", None)
    if base is not None and (not isinstance(base, int) or isinstance(base, bool) or base < 1):
        raise ValidationFailed(
            "base_version must be a version number",
            details={"fields": [{"field": "base_version", "message": "not a version number"}]},
        )
    clip_id = request.match_info["clip_id"]
    fields = ", ".join(sorted(changes)) or "nothing"
    return await _change(
        request,
        lambda current: update_clip(current, clip_id, changes),
        f"clip {clip_id} changed: {fields}"[:200],
        base,
    )


async def delete_project_clip(request: web.Request) -> web.Response:
    clip_id = request.match_info["clip_id"]
    return await _change(
        request, lambda current: delete_clip(current, clip_id), f"clip {clip_id} removed", None
    )


# --- versions -------------------------------------------------------------------------------


def _version_number(request: web.Request) -> int:
    text = request.match_info["version"]
    if not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise ValidationFailed(
            f"version must be a positive number, not {text!r}",
            details={"fields": [{"field": "version", "message": "not a version number"}]},
        )
    return int(text)


async def list_versions(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    before: int | None = None
    if query.cursor is not None:
        if not query.cursor.isdigit() or len(query.cursor) > 9:
            raise ValidationFailed(
                "cursor must be the next_cursor of the page before",
                details={"fields": [{"field": "cursor", "message": "malformed"}]},
            )
        before = int(query.cursor)
    page = await _repo(request).versions(
        principal_of(request).workspace_id,
        request.match_info["project_id"],
        limit=query.limit,
        before=before,
    )
    data = [
        VersionSummary(
            version=v.version,
            created_at=v.created_at,
            author_user_id=v.author_user_id,
            author_key_id=v.author_key_id,
            summary=v.summary,
        )
        for v in page.versions
    ]
    return _json(VersionPageModel(data=data, next_cursor=page.next_cursor))


async def get_version(request: web.Request) -> web.Response:
    version = _version_number(request)
    found = await _repo(request).version(
        principal_of(request).workspace_id, request.match_info["project_id"], version
    )
    model = VersionModel(
        version=found.version,
        created_at=found.created_at,
        author_user_id=found.author_user_id,
        author_key_id=found.author_key_id,
        summary=found.summary,
        timeline=Timeline.model_validate(found.timeline),
    )
    return _json(model)


async def restore_version(request: web.Request) -> web.Response:
    version = _version_number(request)
    old = await _repo(request).version(
        principal_of(request).workspace_id, request.match_info["project_id"], version
    )
    timeline = Timeline.model_validate(old.timeline)
    # A restored version names the same files; one deleted since is refused (404), as in an
    # edit: a version that cannot render is never made current.
    return await _change(request, lambda _: timeline, f"restored version {version}", None)


async def diff_versions(request: web.Request) -> web.Response:
    workspace_id = principal_of(request).workspace_id
    project_id = request.match_info["project_id"]
    repo = _repo(request)
    await repo.get(workspace_id, project_id)
    query = read_query(request, DiffQuery)
    old = await repo.version(workspace_id, project_id, query.from_version)
    new = await repo.version(workspace_id, project_id, query.to_version)
    result: TimelineDiff = diff(
        Timeline.model_validate(old.timeline),
        Timeline.model_validate(new.timeline),
        old.version,
        new.version,
    )
    return _json(result)


# --- subtitles and exports --------------------------------------------------------------------


async def _subtitle_request(request: web.Request) -> tuple[SubtitleQuery, str]:
    """The import's options and the document's text: a multipart form (``file`` and the
    options as fields) or the document as the body with the options in the query."""
    too_large = PayloadTooLarge(
        f"a subtitle file may have at most {MAX_SUBTITLE_BYTES} bytes",
        details={"max_bytes": MAX_SUBTITLE_BYTES},
    )
    if request.content_type.startswith("multipart/"):
        form = await read_form(request, file_limit=MAX_SUBTITLE_BYTES, too_large=too_large)
        if form.file is None:
            raise ValidationFailed(
                "the form needs a file part named 'file' with the SRT or VTT document",
                details={"fields": [{"field": "file", "message": "missing"}]},
            )
        given = {name: values[0] for name, values in form.fields.items() if values}
        raw = form.file.data
    else:
        given = dict(request.query)
        if request.content_length is not None and request.content_length > MAX_SUBTITLE_BYTES:
            raise too_large
        raw = await request.read()
        if len(raw) > MAX_SUBTITLE_BYTES:
            raise too_large
    options = validate_model(SubtitleQuery, given, "options")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"the subtitle file is not UTF-8 text (byte {exc.start})",
            details={"byte": exc.start},
        ) from None
    return options, text


def _cues(text: str, fmt: Literal["srt", "vtt"] | None) -> list[Cue]:
    if fmt is None:
        fmt = "vtt" if text.lstrip("\ufeff").startswith("WEBVTT") else "srt"
    cues = parse_vtt(text) if fmt == "vtt" else parse_srt(text)
    if not any(cue.text.strip() for cue in cues):
        raise ValidationFailed("the subtitle file has no cue with text")
    if len(cues) > MAX_CLIPS:
        raise ValidationFailed(f"a subtitle file may have at most {MAX_CLIPS} cues")
    return cues


def _with_subtitles(
    timeline: Timeline, cues: list[Cue], voice_id: str, track_id: str | None
) -> Timeline:
    blocks = [
        TTSClip(start=cue.start, text=" ".join(cue.text.split())[:MAX_TEXT], voice_id=voice_id)
        for cue in cues
        if cue.text.strip()
    ]
    data = timeline.dump()
    target = next((t for t in data["tracks"] if t["id"] == track_id), None)
    if target is None:
        given: dict[str, Any] = {"kind": "voice", "name": "Subtitles"}
        if track_id:
            given["id"] = track_id
        track = Track.model_validate(given)
        target = track.model_dump(mode="json")
        data["tracks"].append(target)
    target["clips"].extend(block.model_dump(mode="json") for block in blocks)
    return validate_model(Timeline, data, "timeline")


async def import_subtitles(request: web.Request) -> web.Response:
    workspace_id = principal_of(request).workspace_id
    await _repo(request).get(workspace_id, request.match_info["project_id"])
    options, text = await _subtitle_request(request)
    cues = _cues(text, options.format)
    summary = f"{len(cues)} subtitle cues imported as TTS blocks"
    return await _change(
        request,
        lambda current: _with_subtitles(current, cues, options.voice_id, options.track_id),
        summary,
        options.base_version,
    )


async def export_project(request: web.Request) -> web.Response:
    principal = principal_of(request)
    project_id = request.match_info["project_id"]
    repo = _repo(request)
    project = await repo.get(principal.workspace_id, project_id)
    body = await read_model(request, ExportBody)
    version = body.version or project.version
    found = await repo.version(principal.workspace_id, project.id, version)
    given = {"project_id": str(project.id), "version": version, "format": body.format,
             "loudness": body.loudness}  # fmt: skip
    job_input = validate_model(ExportInput, given, "request body").model_dump(mode="json")
    timeline = Timeline.model_validate(found.timeline)
    # What would fail the run at once is refused here, before anything is stored.
    check_exportable(timeline, body.format)
    await _check_references(request, timeline)
    submission = await request.config_dict[JOBS].submit(
        principal.workspace_id,
        "export",
        job_input,
        user_id=principal.user_id,
        key_id=principal.key_id,
        files=request.config_dict[FILES].for_submission(principal.workspace_id),
    )
    headers = {"Location": f"/v1/jobs/{submission.job.id}"}
    return _json(JobModel.of(submission.job), 202, headers)


def projects_app() -> web.Application:
    """The sub-app to mount at ``PROJECTS_PREFIX``."""
    app = web.Application()
    app.add_routes(
        [
            web.post("", create_project),
            web.get("", list_projects, allow_head=False),
            web.get("/{project_id}", get_project, allow_head=False),
            web.put("/{project_id}", replace_timeline),
            web.patch("/{project_id}", rename_project),
            web.delete("/{project_id}", delete_project),
            web.post("/{project_id}/tracks/{track_id}/clips", add_project_clip),
            web.patch("/{project_id}/clips/{clip_id}", update_project_clip),
            web.delete("/{project_id}/clips/{clip_id}", delete_project_clip),
            web.get("/{project_id}/versions", list_versions, allow_head=False),
            web.get("/{project_id}/versions/{version}", get_version, allow_head=False),
            web.post("/{project_id}/versions/{version}/restore", restore_version),
            web.get("/{project_id}/diff", diff_versions, allow_head=False),
            web.post("/{project_id}/subtitles", import_subtitles),
            web.post("/{project_id}/exports", export_project),
        ]
    )
    return app
