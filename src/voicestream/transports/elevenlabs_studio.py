"""ElevenLabs Studio projects (``/elevenlabs/v1/studio/projects``), as the official SDK calls them.

A project is a document: chapters of blocks (``p``, ``h1``-``h3``) of TTS nodes (a voice and
its text), created blank, from ``from_content_json`` or from an uploaded document. Converting a
project or a chapter is a ``studio_convert`` job (jobs/types/studio_convert.py) submitted
through the jobs layer, its credits reserved like a tts job's; its audio comes back as
snapshots (transports/elevenlabs_studio_snapshots.py). Stored in store/studio.py, apart from
the native timeline projects of ``/v1/projects``. Errors come in ElevenLabs' shape, like the
rest of ``/elevenlabs``; another workspace's project is a 404 like a missing one.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Final
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..errors import BadRequest, NotFound, PayloadTooLarge, UnknownVoice, ValidationFailed
from ..jobs.studio_content import (
    KnownVoice,
    StudioChapterContent,
    chapters_from_document,
    chapters_from_json,
    parse_chapter_content,
)
from ..jobs.types.studio_convert import ConvertChapter, StudioConvertInput
from ..media.documents import parse_document
from ..protocols.elevenlabs import DEFAULT_TTS_MODEL
from ..rest.bodies import read_model
from ..rest.files import FILES
from ..rest.jobs import JOBS
from ..rest.multipart import Form, read_form
from ..rest.resources import MEDIA_EXECUTOR, POOL, REGISTRY, SETTINGS
from ..store import db
from ..store.jobs import JobRecord
from ..store.studio import (
    NewStudioChapter,
    NewStudioProject,
    StudioStore,
    new_studio_id,
)
from .context import principal_of
from .elevenlabs_rest import PREFIX
from .elevenlabs_sockets import Handler, elevenlabs_errors
from .elevenlabs_studio_shapes import chapter_json, extended_json, project_json
from .elevenlabs_studio_snapshots import (
    archive_project_snapshot,
    get_chapter_snapshot,
    get_project_snapshot,
    list_chapter_snapshots,
    list_project_snapshots,
    stream_chapter_snapshot,
    stream_project_snapshot,
)

__all__ = ["add_elevenlabs_studio_routes"]

_PROJECTS: Final = "/v1/studio/projects"
_PROJECT: Final = _PROJECTS + "/{studio_project_id}"
_CHAPTER: Final = _PROJECT + "/chapters/{chapter_id}"
_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off", ""})
_QUALITY: Final = ("standard", "high", "ultra", "ultra_lossless")
# Writes the studio rows in the transaction that submits their conversion job.
WithJob = Callable[[db.Connection, JobRecord], Awaitable[None]]


def add_elevenlabs_studio_routes(app: web.Application) -> None:
    """Mount the Studio projects, chapters, conversions and snapshots."""
    routes: list[tuple[str, str, Handler]] = [
        ("GET", _PROJECTS, list_projects),
        ("POST", _PROJECTS, create_project),
        ("GET", _PROJECT, get_project),
        ("POST", _PROJECT, update_project),
        ("DELETE", _PROJECT, delete_project),
        ("POST", _PROJECT + "/content", update_content),
        ("POST", _PROJECT + "/convert", convert_project),
        ("GET", _PROJECT + "/snapshots", list_project_snapshots),
        ("GET", _PROJECT + "/snapshots/{project_snapshot_id}", get_project_snapshot),
        ("POST", _PROJECT + "/snapshots/{project_snapshot_id}/stream", stream_project_snapshot),
        ("POST", _PROJECT + "/snapshots/{project_snapshot_id}/archive", archive_project_snapshot),
        ("GET", _PROJECT + "/chapters", list_chapters),
        ("POST", _PROJECT + "/chapters", create_chapter),
        ("GET", _CHAPTER, get_chapter),
        ("POST", _CHAPTER, update_chapter),
        ("DELETE", _CHAPTER, delete_chapter),
        ("POST", _CHAPTER + "/convert", convert_chapter),
        ("GET", _CHAPTER + "/snapshots", list_chapter_snapshots),
        ("GET", _CHAPTER + "/snapshots/{chapter_snapshot_id}", get_chapter_snapshot),
        ("POST", _CHAPTER + "/snapshots/{chapter_snapshot_id}/stream", stream_chapter_snapshot),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, PREFIX + path, elevenlabs_errors(handler))


# --- inputs ---------------------------------------------------------------------------------


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}", details={"fields": [{"field": field, "message": message}]}
    )


def _flag(fields: dict[str, str], name: str) -> bool:
    value = fields.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _invalid(name, f"must be true or false, got {value!r}")


def _studio(request: web.Request) -> StudioStore:
    return StudioStore(request.app[POOL])


def _known_voice(request: web.Request) -> KnownVoice:
    registry = request.app[REGISTRY]

    def known(voice_id: str) -> bool:
        try:
            registry.voice(voice_id)
        except UnknownVoice:
            return False
        return True

    return known


def _voice_field(request: web.Request, name: str, value: str | None) -> str:
    """A default voice: known, or a 422 naming the field (ElevenLabs' validation shape)."""
    voice = value or request.app[SETTINGS].default_voice
    if not _known_voice(request)(voice):
        raise _invalid(name, f"unknown voice {voice!r}; GET /v1/voices lists the voices")
    return voice


def _ids(request: web.Request) -> tuple[UUID, str]:
    return principal_of(request).workspace_id, request.match_info["studio_project_id"]


def _refuse_url(value: str | None) -> None:
    if value:
        raise BadRequest(
            "from_url is not supported: this server fetches no web pages; send "
            "from_document or from_content_json instead",
            details={"param": "from_url"},
        )


async def _content_form(request: web.Request, what: str) -> tuple[Form, dict[str, str]]:
    """The multipart form that creates a project or replaces its content, and its last value
    of each field."""
    if not request.content_type.startswith("multipart/"):
        raise BadRequest(f"{what} expects multipart/form-data")
    limit = request.app[SETTINGS].max_upload_bytes
    form = await read_form(
        request,
        file_limit=limit,
        too_large=PayloadTooLarge(f"from_document exceeds {limit} bytes"),
        file_field="from_document",
    )
    return form, {name: values[-1] for name, values in form.fields.items()}


async def _chapters_of(
    request: web.Request,
    form: Form,
    fields: dict[str, str],
    title_voice: str,
    paragraph_voice: str,
) -> list[tuple[str, dict[str, Any]]]:
    """The chapters ``from_document`` or ``from_content_json`` make (none for neither)."""
    content_json = fields.get("from_content_json")
    if form.file is not None and content_json:
        raise _invalid("from_content_json", "give from_document or from_content_json, not both")
    if form.file is not None:
        upload = form.file
        parse = functools.partial(
            parse_document, upload.data, upload.content_type or None, upload.filename
        )
        document = await request.app[MEDIA_EXECUTOR].run(parse)
        return chapters_from_document(document, title_voice, paragraph_voice)
    if content_json:
        return chapters_from_json(content_json, _known_voice(request))
    return []


# --- projects -------------------------------------------------------------------------------


async def list_projects(request: web.Request) -> web.StreamResponse:
    projects = await _studio(request).list(principal_of(request).workspace_id)
    return web.json_response({"projects": [project_json(p) for p in projects]})


async def create_project(request: web.Request) -> web.StreamResponse:
    """``POST /v1/studio/projects`` (multipart): blank, from a document or from content JSON;
    ``auto_convert`` submits the conversion in the same transaction."""
    form, fields = await _content_form(request, "creating a studio project")
    name = fields.get("name", "").strip()
    if not name or len(name) > 255:
        raise _invalid("name", "must be 1 to 255 characters")
    _refuse_url(fields.get("from_url"))
    title_voice = _voice_field(
        request, "default_title_voice_id", fields.get("default_title_voice_id")
    )
    paragraph_voice = _voice_field(
        request, "default_paragraph_voice_id", fields.get("default_paragraph_voice_id")
    )
    quality = fields.get("quality_preset") or "standard"
    if quality not in _QUALITY:
        raise _invalid("quality_preset", f"must be one of {', '.join(_QUALITY)}")
    chapters = await _chapters_of(request, form, fields, title_voice, paragraph_voice)
    meta_fields = ("title", "author", "description", "language", "content_type", "isbn_number")
    metadata: dict[str, Any] = {k: fields[k] for k in meta_fields if fields.get(k)}
    if form.file is not None:
        metadata["source_type"] = "book"
    new = NewStudioProject(
        name=name,
        default_title_voice_id=title_voice,
        default_paragraph_voice_id=paragraph_voice,
        default_model_id=fields.get("default_model_id") or DEFAULT_TTS_MODEL,
        quality_preset=quality,
        volume_normalization=_flag(fields, "volume_normalization"),
        acx_volume_normalization=_flag(fields, "acx_volume_normalization"),
        metadata=metadata,
    )
    auto_convert = _flag(fields, "auto_convert")
    principal = principal_of(request)
    project_id = new_studio_id()
    rows = [(new_studio_id(), NewStudioChapter(n, content)) for n, content in chapters]
    if not auto_convert:
        async with request.app[POOL].acquire() as conn, conn.transaction():
            await StudioStore.insert(conn, principal.workspace_id, project_id, new, rows)
    else:
        job_input = _convert_input(
            project_id,
            name,
            new.acx_volume_normalization,
            [(chapter_id, c.name, c.content) for chapter_id, c in rows],
            whole=True,
        )

        async def write(conn: db.Connection, job: JobRecord) -> None:
            await StudioStore.insert(conn, principal.workspace_id, project_id, new, rows)
            await StudioStore.mark_converting(
                conn, project_id, [r[0] for r in rows], job.id, whole_project=True
            )

        await _submit(request, job_input, write)
    project = await _studio(request).get(principal.workspace_id, project_id)
    return web.json_response({"project": project_json(project)})


async def get_project(request: web.Request) -> web.StreamResponse:
    workspace_id, project_id = _ids(request)
    studio = _studio(request)
    project = await studio.get(workspace_id, project_id)
    chapters = await studio.chapters(workspace_id, project_id)
    return web.json_response(extended_json(project, chapters))


class ProjectUpdateBody(BaseModel):
    """What the SDK's ``update`` sends (it requires the first three; here all are optional)."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(None, min_length=1, max_length=255)
    default_title_voice_id: str | None = Field(None, min_length=1, max_length=200)
    default_paragraph_voice_id: str | None = Field(None, min_length=1, max_length=200)
    title: str | None = Field(None, max_length=1000)
    author: str | None = Field(None, max_length=1000)
    isbn_number: str | None = Field(None, max_length=100)
    volume_normalization: bool | None = None


async def update_project(request: web.Request) -> web.StreamResponse:
    workspace_id, project_id = _ids(request)
    await _studio(request).get(workspace_id, project_id)  # a missing project before a bad body
    body = await read_model(request, ProjectUpdateBody)
    for field in ("default_title_voice_id", "default_paragraph_voice_id"):
        if (value := getattr(body, field)) is not None:
            _voice_field(request, field, value)
    metadata = {
        k: v
        for k, v in (("title", body.title), ("author", body.author), ("isbn", body.isbn_number))
        if v is not None
    }
    if "isbn" in metadata:
        metadata["isbn_number"] = metadata.pop("isbn")
    project = await _studio(request).update(
        workspace_id,
        project_id,
        name=body.name,
        default_title_voice_id=body.default_title_voice_id,
        default_paragraph_voice_id=body.default_paragraph_voice_id,
        metadata=metadata,
        volume_normalization=body.volume_normalization,
    )
    return web.json_response({"project": project_json(project)})


async def update_content(request: web.Request) -> web.StreamResponse:
    """``POST /v1/studio/projects/{id}/content`` (multipart): the project's chapters replaced
    by those of ``from_document`` or ``from_content_json`` (none: a blank project), the old
    chapters' snapshots with them; ``auto_convert`` submits the conversion in the same
    transaction. Bad input changes nothing."""
    workspace_id, project_id = _ids(request)
    studio = _studio(request)
    project = await studio.get(workspace_id, project_id)  # a missing project before a bad body
    form, fields = await _content_form(request, "updating a studio project's content")
    _refuse_url(fields.get("from_url"))
    auto_convert = _flag(fields, "auto_convert")
    chapters = await _chapters_of(
        request,
        form,
        fields,
        project.default_title_voice_id,
        project.default_paragraph_voice_id,
    )
    rows = [(new_studio_id(), NewStudioChapter(n, content)) for n, content in chapters]
    old_files: list[UUID] = []
    if not auto_convert:
        async with request.app[POOL].acquire() as conn, conn.transaction():
            old_files = await StudioStore.replace_chapters(conn, workspace_id, project_id, rows)
    else:
        job_input = _convert_input(
            project_id,
            project.name,
            project.acx_volume_normalization,
            [(chapter_id, c.name, c.content) for chapter_id, c in rows],
            whole=True,
        )

        async def write(conn: db.Connection, job: JobRecord) -> None:
            old_files.extend(
                await StudioStore.replace_chapters(conn, workspace_id, project_id, rows)
            )
            await StudioStore.mark_converting(
                conn, project_id, [r[0] for r in rows], job.id, whole_project=True
            )

        await _submit(request, job_input, write)
    await _delete_files(request, old_files)
    return web.json_response({"project": project_json(await studio.get(workspace_id, project_id))})


async def _delete_files(request: web.Request, file_ids: list[UUID]) -> None:
    files = request.app[FILES]
    workspace_id = principal_of(request).workspace_id
    for file_id in file_ids:
        try:
            await files.delete(workspace_id, file_id)
        except NotFound:
            continue  # deleted through /v1/files already


async def delete_project(request: web.Request) -> web.StreamResponse:
    """The project, its chapters and snapshots, and the snapshots' audio files."""
    workspace_id, project_id = _ids(request)
    file_ids = await _studio(request).delete(workspace_id, project_id)
    await _delete_files(request, file_ids)
    return web.json_response({"status": "ok"})


# --- conversion -----------------------------------------------------------------------------


def _convert_input(
    project_id: str,
    project_name: str,
    acx: bool,
    chapters: list[tuple[str, str, dict[str, Any]]],
    *,
    whole: bool,
) -> dict[str, Any]:
    """The job's input, or a 422 when there is nothing to read aloud."""
    converted = [
        ConvertChapter(
            chapter_id=chapter_id,
            name=name,
            blocks=StudioChapterContent.model_validate(content).blocks,
        )
        for chapter_id, name, content in chapters
    ]
    if not any(chapter.characters for chapter in converted):
        raise ValidationFailed(
            "there is no text to convert: add content first",
            details={"fields": [{"field": "content", "message": "no text to convert"}]},
        )
    job_input = StudioConvertInput(
        project_id=project_id,
        project_name=project_name,
        whole_project=whole,
        chapters=converted,
        acx=acx,
    )
    return job_input.model_dump(mode="json")


async def _submit(request: web.Request, job_input: dict[str, Any], write: WithJob) -> None:
    principal = principal_of(request)
    await request.app[JOBS].submit(
        principal.workspace_id,
        "studio_convert",
        job_input,
        user_id=principal.user_id,
        key_id=principal.key_id,
        with_job=write,
    )


async def _convert(request: web.Request, chapter_id: str | None) -> web.StreamResponse:
    workspace_id, project_id = _ids(request)
    studio = _studio(request)
    project = await studio.get(workspace_id, project_id)
    if chapter_id is None:
        chapters = await studio.chapters(workspace_id, project_id)
    else:
        chapters = [await studio.chapter(workspace_id, project_id, chapter_id)]
    job_input = _convert_input(
        project.id,
        project.name,
        project.acx_volume_normalization,
        [(c.id, c.name, c.content) for c in chapters],
        whole=chapter_id is None,
    )
    ids = [c.id for c in chapters]

    async def write(conn: db.Connection, job: JobRecord) -> None:
        await StudioStore.mark_converting(
            conn, project.id, ids, job.id, whole_project=chapter_id is None
        )

    await _submit(request, job_input, write)
    return web.json_response({"status": "ok"})


async def convert_project(request: web.Request) -> web.StreamResponse:
    return await _convert(request, None)


async def convert_chapter(request: web.Request) -> web.StreamResponse:
    return await _convert(request, request.match_info["chapter_id"])


# --- chapters -------------------------------------------------------------------------------


async def list_chapters(request: web.Request) -> web.StreamResponse:
    workspace_id, project_id = _ids(request)
    chapters = await _studio(request).chapters(workspace_id, project_id)
    return web.json_response({"chapters": [chapter_json(c) for c in chapters]})


async def get_chapter(request: web.Request) -> web.StreamResponse:
    workspace_id, project_id = _ids(request)
    chapter = await _studio(request).chapter(
        workspace_id, project_id, request.match_info["chapter_id"]
    )
    return web.json_response(chapter_json(chapter, content=True))


class ChapterCreateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=255)
    from_url: str | None = None


async def create_chapter(request: web.Request) -> web.StreamResponse:
    workspace_id, project_id = _ids(request)
    studio = _studio(request)
    await studio.get(workspace_id, project_id)  # a missing project before a bad body
    body = await read_model(request, ChapterCreateBody)
    _refuse_url(body.from_url)
    chapter = await studio.add_chapter(
        workspace_id, project_id, NewStudioChapter(body.name, {"blocks": []})
    )
    return web.json_response({"chapter": chapter_json(chapter, content=True)})


class ChapterUpdateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(None, min_length=1, max_length=255)
    content: dict[str, Any] | None = None


async def update_chapter(request: web.Request) -> web.StreamResponse:
    workspace_id, project_id = _ids(request)
    chapter_id = request.match_info["chapter_id"]
    body = await read_model(request, ChapterUpdateBody)
    studio = _studio(request)
    # The 404s first: a bad body for a missing chapter is still a missing chapter.
    await studio.chapter(workspace_id, project_id, chapter_id)
    content = None
    if body.content is not None:
        content = parse_chapter_content(body.content, _known_voice(request))
    chapter = await studio.update_chapter(
        workspace_id, project_id, chapter_id, name=body.name, content=content
    )
    return web.json_response({"chapter": chapter_json(chapter, content=True)})


async def delete_chapter(request: web.Request) -> web.StreamResponse:
    workspace_id, project_id = _ids(request)
    file_ids = await _studio(request).delete_chapter(
        workspace_id, project_id, request.match_info["chapter_id"]
    )
    await _delete_files(request, file_ids)
    return web.json_response({"status": "ok"})
