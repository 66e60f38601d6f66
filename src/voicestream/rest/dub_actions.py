"""What the native (``rest/dubbing.py``) and ElevenLabs (``transports/elevenlabs_dubbing.py``)
dubbing APIs share: creating a dub from a form, re-rendering it, editing its segments,
importing subtitles, deleting it, and streaming its files.

Creating a dub streams each uploaded file to storage as it arrives (never whole in memory),
checks every input (the source is media with audio, the languages exist, a CSV's times, a
translation can be had), then stores the dub and its job in one transaction. Whatever fails
first, the files uploaded with the request are deleted again: a refused request leaves no dub
and no file.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final
from uuid import UUID, uuid4

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, ConfigDict, Field

from ..dubbing.languages import check_language
from ..dubbing.model import DubOptions, DubPlan, DubSegment
from ..dubbing.pipeline import map_cues
from ..dubbing.translation import parse_supplied_csv
from ..errors import (
    BadRequest,
    Conflict,
    InvalidAudio,
    NotFound,
    PayloadTooLarge,
    TranslationUnavailable,
    ValidationFailed,
)
from ..identity.request_principal import principal_of
from ..jobs.types.scratch import scratch_dir
from ..media.muxing import MediaInfo, probe
from ..media.subtitles import Cue, parse_srt, parse_vtt
from ..store import db
from ..store.dubs import DubChange, DubRecord, DubStore, NewDub
from ..store.files import FileRecord, FileStore
from ..store.jobs import JobRecord
from ..store.object_storage import CHUNK_BYTES, content_disposition
from .files import FILES
from .jobs import JOBS
from .multipart import MALFORMED_MULTIPART, MAX_FIELD_BYTES, read_form_fields
from .resources import MEDIA_EXECUTOR, POOL, REGISTRY, SETTINGS
from .workspace_translation import TRANSLATORS

__all__ = [
    "DubForm",
    "SegmentEdit",
    "create_dub",
    "delete_dub",
    "dubs_of",
    "edit_segment",
    "import_subtitles",
    "output_of",
    "plan_of",
    "read_dub_form",
    "render_dub",
    "stream_file",
]

DUBBING_JOB: Final = "dubbing"
# Uploads streamed to storage, by form field, and what each is to the dub.
_MEDIA_FIELDS: Final = {
    "file": "source",
    "background_audio_file": "background",
    "foreground_audio_file": "foreground",
}
# Small text files read whole: a CSV of translations, subtitles.
_TEXT_FILE_FIELDS: Final = ("csv_file",)
MAX_TEXT_FILE_BYTES: Final = 2 * 1024 * 1024
# Probing needs a seekable file; the first bytes hold every container's header but MP4's
# index may sit at the end, so the whole upload is copied.
_PROBE_CHUNK: Final = 1024 * 1024


def dubs_of(request: web.Request) -> DubStore:
    return DubStore(request.config_dict[POOL])


@dataclass(slots=True)
class DubForm:
    """A create request's fields, the files uploaded with it (deleted again by ``discard``
    unless the dub keeps them) and its small text files."""

    fields: dict[str, str] = field(default_factory=dict)
    uploads: dict[str, FileRecord] = field(default_factory=dict)  # role -> file
    texts: dict[str, bytes] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value if value is not None and value.strip() != "" else None

    async def discard(self, files: FileStore) -> None:
        for record in self.uploads.values():
            with contextlib.suppress(NotFound):
                await files.delete(record.workspace_id, record.id)
        self.uploads.clear()


async def read_dub_form(request: web.Request) -> DubForm:
    """The multipart create form, media parts streamed into storage as they arrive.

    Raises:
        BadRequest: not a well-formed multipart form, a field that is not text, a part
            given twice.
        PayloadTooLarge: a file past the upload limit, a field or CSV past its own.
    """
    files = request.config_dict[FILES]
    workspace_id = principal_of(request).workspace_id
    form = DubForm()
    # At most three media files and a CSV: a body this much past the limit holds a file past it.
    ceiling = 3 * files.max_bytes + MAX_TEXT_FILE_BYTES + 64 * MAX_FIELD_BYTES
    if (length := request.content_length) is not None and length > ceiling:
        raise PayloadTooLarge(
            f"the upload exceeds the limit of {files.max_bytes} bytes a file",
            details={"limit": files.max_bytes},
        )
    if not request.content_type.startswith("multipart/"):
        # A form without files (the SDK sends one urlencoded): its fields only.
        for name, value in (await read_form_fields(request)).items():
            form.fields.setdefault(name, value)
        return form
    try:
        try:
            reader = await request.multipart()
        except MALFORMED_MULTIPART:
            raise BadRequest("expected a multipart/form-data body") from None
        while True:
            try:
                part = await reader.next()
            except MALFORMED_MULTIPART as exc:
                raise BadRequest(f"malformed multipart body: {str(exc)[:200]}") from None
            if part is None:
                break
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            await _read_part(files, workspace_id, form, part)
    except BaseException:
        await asyncio.shield(form.discard(files))
        raise
    return form


async def _read_part(
    files: FileStore, workspace_id: UUID, form: DubForm, part: BodyPartReader
) -> None:
    name = part.name or ""
    if name in form.fields or name in form.texts or _MEDIA_FIELDS.get(name) in form.uploads:
        raise BadRequest(f"the form gives {name!r} more than once", details={"param": name})
    if name in _MEDIA_FIELDS:
        declared = part.headers.get("Content-Type", "").split(";")[0].strip().lower()
        record = await files.upload(
            workspace_id,
            name=(part.filename or name)[:255],
            content_type=declared or "application/octet-stream",
            chunks=_part_chunks(part),
        )
        form.uploads[_MEDIA_FIELDS[name]] = record
        return
    limit = MAX_TEXT_FILE_BYTES if name in _TEXT_FILE_FIELDS else MAX_FIELD_BYTES
    data = bytearray()
    while chunk := await _chunk(part):
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"{name!r} exceeds {limit} bytes", details={"param": name})
    if name in _TEXT_FILE_FIELDS:
        form.texts[name] = bytes(data)
        return
    try:
        form.fields[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"field {name!r} is not UTF-8 text", details={"param": name}) from None


async def _chunk(part: BodyPartReader) -> bytes:
    try:
        return bytes(await part.read_chunk(CHUNK_BYTES))
    except MALFORMED_MULTIPART as exc:
        raise BadRequest(f"malformed multipart body: {str(exc)[:200]}") from None
    except ConnectionError:
        raise BadRequest("the upload was cut off before its end") from None


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await _chunk(part):
        yield chunk


# --- checking the inputs ---------------------------------------------------------------------


def _field_error(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{name}: {message}", details={"fields": [{"field": name, "message": message}]}
    )


def _number(form: DubForm, name: str, kind: Callable[[str], float]) -> Any:
    raw = form.text(name)
    if raw is None:
        return None
    try:
        return kind(raw.strip())
    except ValueError:
        raise _field_error(name, f"must be a number, got {raw[:40]!r}") from None


def _flag(form: DubForm, name: str) -> bool:
    raw = (form.text(name) or "false").strip().lower()
    if raw not in ("true", "false", "1", "0"):
        raise _field_error(name, f"must be true or false, got {raw[:40]!r}")
    return raw in ("true", "1")


def options_of(form: DubForm) -> DubOptions:
    """The dub's options from the form's fields (ElevenLabs' names)."""
    targets_raw = form.text("target_lang")
    if targets_raw is None:
        raise _field_error("target_lang", "required: the language (or languages, a,b) to dub into")
    targets = [check_language(code.strip()) for code in targets_raw.split(",") if code.strip()]
    source_raw = (form.text("source_lang") or "auto").strip()
    source = None if source_raw.lower() == "auto" else check_language(source_raw)
    values: dict[str, Any] = {
        "source_language": source,
        "target_languages": list(dict.fromkeys(targets)),
        "num_speakers": _number(form, "num_speakers", int) or 0,
        "start_time": _number(form, "start_time", float),
        "end_time": _number(form, "end_time", float),
        "drop_background_audio": _flag(form, "drop_background_audio"),
    }
    if (output_format := form.text("output_format")) is not None:
        values["output_format"] = output_format
    try:
        options = DubOptions.model_validate(values)
    except ValueError as exc:
        raise ValidationFailed(f"dubbing options: {str(exc)[:400]}") from None
    start, end = options.start_time, options.end_time
    if start is not None and end is not None and end <= start:
        raise _field_error("end_time", "must be after start_time")
    return options


async def _probe(request: web.Request, files: FileStore, record: FileRecord) -> MediaInfo:
    """The stored file's streams (copied to a scratch file: demuxers seek)."""
    root = scratch_dir(request.config_dict[SETTINGS])
    _, chunks = await files.open(record.workspace_id, record.id)

    def open_scratch() -> Any:
        root.mkdir(parents=True, exist_ok=True)
        return tempfile.NamedTemporaryFile(dir=root, prefix="probe-")

    scratch = await asyncio.to_thread(open_scratch)
    try:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                await asyncio.to_thread(scratch.write, chunk)
        await asyncio.to_thread(scratch.flush)
        info: MediaInfo = await request.config_dict[MEDIA_EXECUTOR].run(
            partial(probe, Path(scratch.name))
        )
        return info
    finally:
        await asyncio.shield(asyncio.to_thread(scratch.close))


async def _media(
    request: web.Request, files: FileStore, record: FileRecord, role: str
) -> MediaInfo:
    try:
        info = await _probe(request, files, record)
    except InvalidAudio as exc:
        raise InvalidAudio(
            f"{role} file {record.name!r} is not usable media: {exc.message}",
            details={"param": role},
        ) from None
    if not info.has_audio:
        raise InvalidAudio(
            f"{role} file {record.name!r} has no audio stream: there is no speech to dub",
            details={"param": role},
        )
    return info


# --- creating --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Created:
    dub_id: UUID
    job: JobRecord
    duration: float


async def create_dub(request: web.Request, form: DubForm) -> Created:
    """Check the form and store the dub with its job; ``form``'s uploads are deleted again
    when anything is refused."""
    files = request.config_dict[FILES]
    try:
        return await _create(request, files, form)
    except BaseException:
        await asyncio.shield(form.discard(files))
        raise


async def _create(request: web.Request, files: FileStore, form: DubForm) -> Created:
    principal = principal_of(request)
    workspace_id = principal.workspace_id
    settings = request.config_dict[SETTINGS]
    options = options_of(form)
    source = form.uploads.get("source")
    file_id = form.text("file_id")
    if source is not None and file_id is not None:
        raise BadRequest("give either 'file' or 'file_id', not both", details={"param": "file"})
    if source is None and file_id is None:
        if form.text("source_url") is not None:
            raise BadRequest(
                "source_url is not supported here: upload the media as 'file'",
                details={"param": "source_url"},
            )
        raise ValidationFailed(
            "no source media: send it as the form's 'file' part (or 'file_id' of an upload)",
            details={"fields": [{"field": "file", "message": "required"}]},
        )
    owns_source = source is not None
    if source is None:
        assert file_id is not None
        source = await files.get(workspace_id, file_id.strip())
        if not source.uploaded:
            raise NotFound(f"file {source.id} has not been uploaded yet")
    info = await _media(request, files, source, "source")
    for role in ("background", "foreground"):
        if (extra := form.uploads.get(role)) is not None:
            await _media(request, files, extra, role)
    supplied: dict[str, Any] = {}
    if (csv := form.texts.get("csv_file")) is not None:
        lines = parse_supplied_csv(csv)
        supplied["lines"] = [line.model_dump(mode="json") for line in lines]
    source_language = options.source_language
    cross = [t for t in options.target_languages if t != source_language]
    if (
        source_language is not None
        and cross
        and "lines" not in supplied
        and await request.config_dict[TRANSLATORS].translator(workspace_id, settings) is None
    ):
        raise TranslationUnavailable(
            f"no translator is configured to dub {source_language} into {', '.join(cross)}: "
            "supply the translations (csv_file), set the workspace's translator (PUT "
            "/v1/workspaces/{workspace_id}/translation), or configure "
            "VOICESTREAM_TRANSLATION_BASE_URL",
            details={"languages": cross},
        )
    new = NewDub(
        id=uuid4(),
        workspace_id=workspace_id,
        name=form.text("name") or source.name,
        source_file_id=source.id,
        owns_source=owns_source,
        options=options.model_dump(mode="json"),
        supplied=supplied,
        media={
            "content_type": source.content_type,
            "duration": round(info.duration, 3),
            "has_video": info.has_video,
        },
        background_file_id=_id(form.uploads.get("background")),
        foreground_file_id=_id(form.uploads.get("foreground")),
    )
    dubs = dubs_of(request)

    async def store_dub(conn: db.Connection, job: JobRecord) -> None:
        await dubs.insert(conn, new, job.id)

    submission = await request.config_dict[JOBS].submit(
        workspace_id,
        DUBBING_JOB,
        {"dub_id": str(new.id), "file_id": str(source.id)},
        user_id=principal.user_id,
        key_id=principal.key_id,
        files=files.for_submission(workspace_id),
        with_job=store_dub,
    )
    return Created(new.id, submission.job, info.duration)


def _id(record: FileRecord | None) -> UUID | None:
    return record.id if record is not None else None


# --- re-rendering and editing -----------------------------------------------------------------


async def render_dub(
    request: web.Request, dub: DubRecord, languages: list[str] | None, segment_ids: list[str]
) -> JobRecord:
    """A new dubbing job for ``dub`` (some of its languages, or all)."""
    principal = principal_of(request)
    targets = DubOptions.model_validate(dub.options).target_languages
    chosen = [check_language(code) for code in languages] if languages else None
    for code in chosen or []:
        if code not in targets:
            raise ValidationFailed(
                f"the dub has no target language {code!r}; it has {', '.join(targets)}",
                details={"languages": targets},
            )
    dubs = dubs_of(request)

    async def start(conn: db.Connection, job: JobRecord) -> None:
        await dubs.start(conn, dub.workspace_id, dub.id, job.id)

    job_input: dict[str, Any] = {"dub_id": str(dub.id)}
    if dub.source_file_id is not None:
        job_input["file_id"] = str(dub.source_file_id)
    if chosen:
        job_input["languages"] = chosen
    if segment_ids:
        job_input["segment_ids"] = segment_ids
    submission = await request.config_dict[JOBS].submit(
        dub.workspace_id,
        DUBBING_JOB,
        job_input,
        user_id=principal.user_id,
        key_id=principal.key_id,
        files=request.config_dict[FILES].for_submission(dub.workspace_id),
        with_job=start,
    )
    return submission.job


class SegmentEdit(BaseModel):
    """A change to one segment: its source text, translations or voices by language."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, max_length=5000)
    translations: dict[str, str] | None = None
    voices: dict[str, str] | None = None
    start_time: float | None = Field(default=None, ge=0)
    end_time: float | None = Field(default=None, gt=0)


def plan_of(dub: DubRecord) -> DubPlan:
    """The dub's plan; Conflict (409) while it is being analysed."""
    if dub.plan is None:
        raise Conflict(
            "the dub is still being analysed: its segments are not known yet",
            details={"status": dub.status},
        )
    return DubPlan.model_validate(dub.plan)


def _segment(plan: DubPlan, segment_id: str) -> DubSegment:
    for segment in plan.segments:
        if segment.id == segment_id:
            return segment
    raise NotFound(f"the dub has no segment {segment_id!r}")


async def edit_segment(
    request: web.Request, dub_id: str, segment_id: str, edit: SegmentEdit
) -> tuple[DubRecord, DubSegment]:
    """Apply ``edit`` to the segment; the next render speaks it (and only it) anew."""
    registry = request.config_dict[REGISTRY]
    for voice in (edit.voices or {}).values():
        registry.voice(voice)  # UnknownVoice (404) for a voice this server does not have

    def change(dub: DubRecord) -> DubChange:
        plan = plan_of(dub)
        targets = set(DubOptions.model_validate(dub.options).target_languages)
        segment = _segment(plan, segment_id)
        for language in [*(edit.translations or {}), *(edit.voices or {})]:
            if language not in targets:
                raise ValidationFailed(
                    f"the dub has no target language {language!r}",
                    details={"languages": sorted(targets)},
                )
        if edit.text is not None:
            segment.text = edit.text
        segment.translations.update(edit.translations or {})
        segment.voices.update(edit.voices or {})
        start = segment.start if edit.start_time is None else edit.start_time
        end = segment.end if edit.end_time is None else edit.end_time
        if end <= start:
            raise _field_error("end_time", "must be after the segment's start")
        segment.start, segment.end = start, end
        return DubChange(plan=plan.model_dump(mode="json"))

    dub = await dubs_of(request).change(principal_of(request).workspace_id, dub_id, change)
    return dub, _segment(plan_of(dub), segment_id)


def _cues(text: str, kind: str) -> list[Cue]:
    if kind == "vtt" or text.lstrip("\ufeff").lstrip().startswith("WEBVTT"):
        return parse_vtt(text)
    return parse_srt(text)


async def import_subtitles(
    request: web.Request, dub_id: str, language: str, data: bytes, kind: str
) -> DubRecord:
    """SRT or WebVTT as ``language``'s translation: each cue goes to the segment it overlaps
    most. Before the dub is analysed they are kept for the analysis (the next render)."""
    language = check_language(language)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationFailed("the subtitles are not UTF-8 text") from None
    cues = _cues(text, kind)
    if not cues:
        raise ValidationFailed("the subtitles hold no cue")

    def change(dub: DubRecord) -> DubChange:
        targets = DubOptions.model_validate(dub.options).target_languages
        if language not in targets:
            raise ValidationFailed(
                f"the dub has no target language {language!r}", details={"languages": targets}
            )
        if dub.plan is None:
            # Not analysed (yet, or it failed for want of a translation): the next analysis
            # takes them as this language's translation (render the dub again).
            kept = dict(dub.supplied.get("subtitles") or {})
            kept[language] = [[cue.start, cue.end, cue.text] for cue in cues]
            return DubChange(supplied={**dub.supplied, "subtitles": kept})
        plan = DubPlan.model_validate(dub.plan)
        texts = map_cues(plan.segments, cues)
        if not texts:
            raise ValidationFailed("no cue overlaps any segment of the dub's source")
        for segment in plan.segments:
            if segment.id in texts:
                segment.translations[language] = texts[segment.id]
        return DubChange(plan=plan.model_dump(mode="json"))

    return await dubs_of(request).change(principal_of(request).workspace_id, dub_id, change)


# --- deleting and reading files ---------------------------------------------------------------


async def delete_dub(request: web.Request, dub_id: str) -> DubRecord:
    """The dub, then the files it owns (its uploads and outputs)."""
    files = request.config_dict[FILES]
    dub, owned = await dubs_of(request).delete(principal_of(request).workspace_id, dub_id)
    for file_id in owned:
        with contextlib.suppress(NotFound):
            await files.delete(dub.workspace_id, file_id)
    return dub


def output_of(dub: DubRecord, language: str) -> dict[str, Any]:
    output = dub.outputs.get(language)
    if not isinstance(output, dict):
        status = "failed" if dub.status == "failed" else "not dubbed yet"
        raise NotFound(
            f"the dub has no {language!r} output ({status})",
            details={"languages": sorted(dub.outputs), "status": dub.status},
        )
    return output


async def stream_file(
    request: web.Request, dub: DubRecord, file_id: str, filename: str
) -> web.StreamResponse:
    """An output's bytes, as they come from storage."""
    record, chunks = await request.config_dict[FILES].open(dub.workspace_id, file_id)
    headers = {
        "Content-Type": record.content_type,
        "Content-Disposition": content_disposition(filename),
        "Cache-Control": "private, no-store",
    }
    if record.bytes is not None:
        headers["Content-Length"] = str(record.bytes)
    response = web.StreamResponse(headers=headers)
    async with contextlib.aclosing(chunks):
        first = await anext(chunks, b"")
        await response.prepare(request)
        try:
            await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
        except ConnectionError:
            return response
    await response.write_eof()
    return response
