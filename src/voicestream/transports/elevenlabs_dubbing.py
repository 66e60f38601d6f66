"""ElevenLabs dubbing (``/elevenlabs/v1/dubbing``), as the official SDK calls it.

The dubs are the native API's (``rest/dubbing.py``, ``rest/dub_actions.py``): the same
store, job and checks, in ElevenLabs' shapes — ``DoDubbingResponse``, ``DubbingMetadata
Response``, the list page with ``has_more``/``next_cursor``, ``{"status": "ok"}`` for a delete,
the dubbed file at ``audio/{language}``, transcripts (``transcript/{lang}?format_type=``
and ``transcripts/{lang}/format/{fmt}``) and the Dubbing Studio resource: the whole
``DubbingResource`` (speaker tracks and segments, renders), a segment's text or translation
(``PATCH resource/{id}/segment/{segment_id}/{language}``), re-dubbing segments
(``POST resource/{id}/dub``) and rendering a language (``POST resource/{id}/render/{lang}``).

Dubbing ids are UUIDs. The SDK parses every transcript answer as JSON, so SRT and WebVTT
travel as a JSON string. Errors come in ElevenLabs' shape, like the rest of ``/elevenlabs``.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..dubbing.model import DubOptions, DubPlan
from ..errors import ValidationFailed
from ..rest.bodies import read_model
from ..rest.dub_actions import (
    SegmentEdit,
    create_dub,
    delete_dub,
    dubs_of,
    edit_segment,
    output_of,
    plan_of,
    read_dub_form,
    render_dub,
    stream_file,
)
from ..rest.dubbing import subtitles_text, transcript_json
from ..store.dubs import MAX_PAGE_SIZE, DubRecord, DubStatus
from .context import principal_of
from .elevenlabs_rest import PREFIX
from .elevenlabs_sockets import Handler, elevenlabs_errors

__all__ = ["add_elevenlabs_dubbing_routes"]


def add_elevenlabs_dubbing_routes(app: web.Application) -> None:
    """Mount ``/elevenlabs/v1/dubbing`` and its resource routes."""
    routes: list[tuple[str, str, Handler]] = [
        # The resource routes first: ``/v1/dubbing/{dub_id}`` would take "resource".
        ("GET", "/v1/dubbing/resource/{dub_id}", get_resource),
        (
            "PATCH",
            "/v1/dubbing/resource/{dub_id}/segment/{segment_id}/{language}",
            patch_segment,
        ),
        ("POST", "/v1/dubbing/resource/{dub_id}/dub", dub_segments),
        ("POST", "/v1/dubbing/resource/{dub_id}/render/{language}", render_language),
        ("POST", "/v1/dubbing", create),
        ("GET", "/v1/dubbing", list_dubs),
        ("GET", "/v1/dubbing/{dub_id}", get_dub),
        ("DELETE", "/v1/dubbing/{dub_id}", delete),
        ("GET", "/v1/dubbing/{dub_id}/audio/{language}", get_audio),
        ("GET", "/v1/dubbing/{dub_id}/transcript/{language}", get_transcript),
        (
            "GET",
            "/v1/dubbing/{dub_id}/transcripts/{language}/format/{format}",
            get_transcripts,
        ),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, PREFIX + path, elevenlabs_errors(handler))


def _field_error(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{name}: {message}", details={"fields": [{"field": name, "message": message}]}
    )


async def _dub(request: web.Request) -> DubRecord:
    return await dubs_of(request).get(
        principal_of(request).workspace_id, request.match_info["dub_id"]
    )


def metadata(dub: DubRecord) -> dict[str, Any]:
    """A dub as ``DubbingMetadataResponse``."""
    options = DubOptions.model_validate(dub.options)
    plan = dub.plan or {}
    media = dub.media
    first = next(iter(dub.outputs.values()), None)
    return {
        "dubbing_id": str(dub.id),
        "name": dub.name,
        "status": dub.status,
        "source_language": plan.get("source_language") or options.source_language,
        "target_languages": options.target_languages,
        "editable": True,
        "created_at": dub.created_at.isoformat(),
        "media_metadata": {
            "content_type": first["content_type"] if first else media.get("content_type"),
            "duration": (first or {}).get("duration") or media.get("duration") or 0.0,
        },
        "error": dub.error,
    }


async def create(request: web.Request) -> web.StreamResponse:
    """``POST /v1/dubbing`` → ``{"dubbing_id", "expected_duration_sec"}``."""
    form = await read_dub_form(request)
    created = await create_dub(request, form)
    return web.json_response(
        {"dubbing_id": str(created.dub_id), "expected_duration_sec": round(created.duration, 3)}
    )


async def list_dubs(request: web.Request) -> web.StreamResponse:
    """``GET /v1/dubbing``: newest first, ``cursor`` and ``page_size`` as the SDK sends them."""
    raw = request.query.get("page_size") or "100"
    try:
        page_size = int(raw)
    except ValueError:
        raise _field_error("page_size", f"must be an integer, got {raw[:20]!r}") from None
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise _field_error("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
    status: DubStatus | None = None
    match request.query.get("dubbing_status") or None:
        case None:
            pass
        case "dubbing" | "dubbed" | "failed" as given:
            status = given
        case _:
            raise _field_error("dubbing_status", "must be dubbing, dubbed or failed")
    page = await dubs_of(request).list(
        principal_of(request).workspace_id,
        limit=page_size,
        cursor=request.query.get("cursor") or None,
        status=status,
    )
    dubs = [metadata(dub) for dub in page.dubs]
    return web.json_response(
        {"dubs": dubs, "next_cursor": page.next_cursor, "has_more": page.next_cursor is not None}
    )


async def get_dub(request: web.Request) -> web.StreamResponse:
    return web.json_response(metadata(await _dub(request)))


async def delete(request: web.Request) -> web.StreamResponse:
    await delete_dub(request, request.match_info["dub_id"])
    return web.json_response({"status": "ok"})


async def get_audio(request: web.Request) -> web.StreamResponse:
    dub = await _dub(request)
    language = request.match_info["language"]
    if language == "source" and dub.source_file_id is not None:
        return await stream_file(request, dub, str(dub.source_file_id), dub.name)
    output = output_of(dub, language)
    return await stream_file(
        request, dub, str(output["file_id"]), f"{dub.id}-{language}.{output['format']}"
    )


def _kind(value: str, name: str) -> Literal["srt", "vtt", "json"]:
    match value:
        case "srt":
            return "srt"
        case "webvtt" | "vtt":
            return "vtt"
        case "json":
            return "json"
    raise _field_error(name, f"must be srt, webvtt or json, got {value[:20]!r}")


async def get_transcript(request: web.Request) -> web.StreamResponse:
    """``GET /v1/dubbing/{id}/transcript/{lang}?format_type=srt|webvtt|json``."""
    dub = await _dub(request)
    language = request.match_info["language"]
    kind = _kind(request.query.get("format_type") or "srt", "format_type")
    if kind == "json":
        return web.json_response(transcript_json(dub, language))
    return web.json_response(subtitles_text(dub, language, kind))


async def get_transcripts(request: web.Request) -> web.StreamResponse:
    """``GET /v1/dubbing/{id}/transcripts/{lang}/format/{fmt}`` → ``DubbingTranscripts
    ResponseModel``."""
    dub = await _dub(request)
    language = request.match_info["language"]
    kind = _kind(request.match_info["format"], "format_type")
    body: dict[str, Any] = {"transcript_format": "webvtt" if kind == "vtt" else kind}
    if kind == "json":
        body["json"] = transcript_json(dub, language)
    else:
        body["webvtt" if kind == "vtt" else "srt"] = subtitles_text(dub, language, kind)
    return web.json_response(body)


# --- the Dubbing Studio resource --------------------------------------------------------------


def _media_ref(
    url: str, content_type: str | None, duration: float, is_audio: bool
) -> dict[str, Any]:
    return {
        "src": url,
        "content_type": content_type or "application/octet-stream",
        "bucket_name": "",
        "random_path_slug": "",
        "duration_secs": duration,
        "is_audio": is_audio,
        "url": url,
    }


def _frame(start: float, end: float, text: str) -> dict[str, Any]:
    return {"start_time": start, "end_time": end, "lines": [text] if text else []}


def resource(dub: DubRecord, plan: DubPlan) -> dict[str, Any]:
    """The dub as ``DubbingResource``."""
    base = f"{PREFIX}/v1/dubbing/{dub.id}"
    options = DubOptions.model_validate(dub.options)
    duration = float(dub.media.get("duration") or plan.duration)
    is_audio = not plan.has_video
    tracks_ref = _media_ref(
        f"{base}/audio/source", dub.media.get("content_type"), duration, is_audio
    )
    tracks = {
        speaker.id: {
            "id": speaker.id,
            "media_ref": tracks_ref,
            "speaker_name": speaker.id,
            "voices": speaker.voices,
            "segments": [s.id for s in plan.segments if s.speaker_id == speaker.id],
        }
        for speaker in plan.speakers
    }
    segments = {
        s.id: {
            "id": s.id,
            "start_time": s.start,
            "end_time": s.end,
            "text": s.text,
            "subtitles": [_frame(s.start, s.end, s.text)],
            "dubs": {
                language: {
                    "start_time": s.start,
                    "end_time": s.end,
                    "text": s.translations.get(language),
                    "subtitles": [_frame(s.start, s.end, s.translations.get(language, ""))],
                    "audio_stale": False,
                    "media_ref": None,
                }
                for language in options.target_languages
            },
        }
        for s in plan.segments
    }
    renders = {}
    for language in options.target_languages:
        output = dub.outputs.get(language)
        media_ref = None
        if isinstance(output, dict):
            media_ref = _media_ref(
                f"{base}/audio/{language}",
                output["content_type"],
                float(output.get("duration") or duration),
                is_audio,
            )
        status = "complete" if media_ref else ("failed" if dub.status == "failed" else "processing")
        renders[language] = {
            "id": f"{dub.job_id}-{language}",
            "version": dub.version,
            "language": language,
            "type": output["format"] if isinstance(output, dict) else None,
            "media_ref": media_ref,
            "status": status,
        }
    return {
        "id": str(dub.id),
        "version": dub.version,
        "source_language": plan.source_language,
        "target_languages": options.target_languages,
        "input": _media_ref(
            f"{base}/audio/source", dub.media.get("content_type"), duration, is_audio
        ),
        "background": None,
        "foreground": None,
        "speaker_tracks": tracks,
        "speaker_segments": segments,
        "renders": renders,
    }


async def get_resource(request: web.Request) -> web.StreamResponse:
    dub = await _dub(request)
    return web.json_response(resource(dub, plan_of(dub)))


class SegmentPatch(BaseModel):
    """``PATCH resource/{id}/segment/{segment_id}/{language}``: the segment in that language
    (the source's text when it is the source language, else its translation)."""

    model_config = ConfigDict(extra="ignore")
    start_time: float | None = Field(default=None, ge=0)
    end_time: float | None = Field(default=None, gt=0)
    text: str | None = Field(default=None, max_length=5000)


async def patch_segment(request: web.Request) -> web.StreamResponse:
    dub = await _dub(request)  # first: another workspace's dub is a 404 whatever the body
    body = await read_model(request, SegmentPatch)
    plan = plan_of(dub)
    language = request.match_info["language"]
    edit = SegmentEdit(start_time=body.start_time, end_time=body.end_time)
    if body.text is not None:
        # The source language's text is the transcript; a target's, what is spoken. A
        # same-language dub has both in one language, and an edit means both.
        if language == plan.source_language:
            edit.text = body.text
        targets = DubOptions.model_validate(dub.options).target_languages
        if language != plan.source_language or language in targets:
            edit.translations = {language: body.text}  # not a target at all: refused (422)
    updated, _ = await edit_segment(
        request, request.match_info["dub_id"], request.match_info["segment_id"], edit
    )
    return web.json_response({"version": updated.version})


class DubSegmentsBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    segments: list[str] = Field(default_factory=list, max_length=10_000)
    languages: list[str] | None = Field(default=None, max_length=32)


async def dub_segments(request: web.Request) -> web.StreamResponse:
    """``POST resource/{id}/dub``: speak the segments again (a render of the languages)."""
    dub = await _dub(request)
    body = await read_model(request, DubSegmentsBody)
    plan_of(dub)
    await render_dub(request, dub, body.languages or None, body.segments)
    return web.json_response({"version": dub.version})


class RenderBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    render_type: str | None = None
    normalize_volume: bool | None = None


async def render_language(request: web.Request) -> web.StreamResponse:
    """``POST resource/{id}/render/{language}`` → ``{"version", "render_id"}``."""
    dub = await _dub(request)
    await read_model(request, RenderBody)
    plan_of(dub)
    job = await render_dub(request, dub, [request.match_info["language"]], [])
    return web.json_response({"version": dub.version, "render_id": str(job.id)})
