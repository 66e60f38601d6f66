"""``/v1/dubbing``: dubs of the workspace — a video or recording spoken again in other languages.

- ``POST /v1/dubbing``: a multipart form (ElevenLabs' field names): ``file`` (the media,
  streamed to storage) or ``file_id`` (an upload of ``/v1/files``), ``csv_file`` (supplied
  translations), ``background_audio_file``/``foreground_audio_file``, ``source_lang`` (default
  ``auto``), ``target_lang`` (one code or ``a,b``), ``num_speakers``, ``start_time``/
  ``end_time``, ``drop_background_audio``, ``name`` → 202 ``{"id", "status", "job_id"}``.
  A refused request keeps nothing (``rest/dub_actions.py``).
- ``GET`` list (newest first, paged by ``cursor``, ``status`` filter) and one; ``DELETE``
  (with its files).
- ``GET /{dub_id}/segments``; ``PATCH /{dub_id}/segments/{segment_id}`` (text,
  translations, voices by language); ``POST /{dub_id}/render`` re-renders (a new job; only
  changed segments are synthesized again, the job's result counts them).
- ``GET /{dub_id}/audio/{language}``: the dubbed media; ``GET
  /{dub_id}/transcript/{language}?format=srt|vtt|json`` (``source`` or the source's code for
  the original language); ``POST /{dub_id}/subtitles/{language}``: an SRT or WebVTT body as
  that language's translation, mapped to the segments by time.

Dub ids are UUIDs; another workspace's dub, like a malformed id, is a 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..dubbing.languages import check_language
from ..dubbing.model import DubOptions, DubSegment, DubSpeaker
from ..dubbing.pipeline import source_subtitles
from ..errors import BadRequest, PayloadTooLarge, ValidationFailed
from ..identity.request_principal import principal_of
from ..protocols.json_messages import validate_model
from ..store.dubs import MAX_PAGE_SIZE, DubRecord, DubStatus
from .bodies import read_model
from .dub_actions import (
    MAX_TEXT_FILE_BYTES,
    SegmentEdit,
    create_dub,
    delete_dub,
    dubs_of,
    edit_segment,
    import_subtitles,
    output_of,
    plan_of,
    read_dub_form,
    render_dub,
    stream_file,
)

__all__ = [
    "DUBBING_PREFIX",
    "DubModel",
    "DubPageModel",
    "DubStartedModel",
    "dubbing_app",
    "transcript_json",
]

DUBBING_PREFIX: Final = "/v1/dubbing"


class DubMedia(BaseModel):
    content_type: str | None = None
    duration: float | None = None
    has_video: bool | None = None


class DubOutput(BaseModel):
    format: str
    content_type: str
    duration: float | None
    bytes: int | None = None
    file_id: str


class DubModel(BaseModel):
    id: str
    name: str
    status: DubStatus
    source_language: str | None  # detected once analysed, when "auto" was asked for
    target_languages: list[str]
    job_id: str | None  # the job working on it now (or last)
    error: str | None
    media: DubMedia
    outputs: dict[str, DubOutput]  # by language
    notes: list[str]  # what the analysis says about itself (e.g. one speaker assumed)
    version: int  # grows with every edit of its segments
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, dub: DubRecord) -> DubModel:
        options = DubOptions.model_validate(dub.options)
        plan = dub.plan or {}
        return cls(
            id=str(dub.id),
            name=dub.name,
            status=dub.status,
            source_language=plan.get("source_language") or options.source_language,
            target_languages=options.target_languages,
            job_id=str(dub.job_id) if dub.job_id is not None else None,
            error=dub.error,
            media=DubMedia.model_validate(dub.media),
            outputs={
                language: DubOutput.model_validate(output)
                for language, output in dub.outputs.items()
            },
            notes=list(plan.get("notes") or []),
            version=dub.version,
            created_at=dub.created_at,
            updated_at=dub.updated_at,
        )


class DubStartedModel(BaseModel):
    id: str
    status: DubStatus
    job_id: str


class DubPageModel(BaseModel):
    data: list[DubModel]
    next_cursor: str | None  # None on the last page


class DubListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(50, ge=1, le=MAX_PAGE_SIZE)
    cursor: Annotated[str, StringConstraints(max_length=200)] | None = None
    status: DubStatus | None = None


class SegmentsModel(BaseModel):
    dub_id: str
    version: int
    source_language: str
    segments: list[DubSegment]
    speakers: list[DubSpeaker]


class RenderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    languages: list[str] | None = Field(default=None, min_length=1, max_length=32)
    segment_ids: list[str] = Field(default_factory=list, max_length=10_000)


def _json(body: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=body.model_dump_json(), status=status)


def _dub_id(request: web.Request) -> str:
    return request.match_info["dub_id"]


async def _dub(request: web.Request) -> DubRecord:
    return await dubs_of(request).get(principal_of(request).workspace_id, _dub_id(request))


async def create(request: web.Request) -> web.Response:
    form = await read_dub_form(request)
    created = await create_dub(request, form)
    started = DubStartedModel(id=str(created.dub_id), status="dubbing", job_id=str(created.job.id))
    response = _json(started, 202)
    response.headers["Location"] = f"{DUBBING_PREFIX}/{created.dub_id}"
    return response


async def list_dubs(request: web.Request) -> web.Response:
    given = {name: value for name, value in request.query.items() if value != ""}
    query = validate_model(DubListQuery, given, "query string")
    page = await dubs_of(request).list(
        principal_of(request).workspace_id,
        limit=query.limit,
        cursor=query.cursor,
        status=query.status,
    )
    models = [DubModel.of(dub) for dub in page.dubs]
    return _json(DubPageModel(data=models, next_cursor=page.next_cursor))


async def get_dub(request: web.Request) -> web.Response:
    return _json(DubModel.of(await _dub(request)))


async def delete(request: web.Request) -> web.Response:
    await delete_dub(request, _dub_id(request))
    return web.Response(status=204)


async def get_segments(request: web.Request) -> web.Response:
    dub = await _dub(request)
    plan = plan_of(dub)
    return _json(
        SegmentsModel(
            dub_id=str(dub.id),
            version=dub.version,
            source_language=plan.source_language,
            segments=plan.segments,
            speakers=plan.speakers,
        )
    )


async def patch_segment(request: web.Request) -> web.Response:
    edit = await read_model(request, SegmentEdit)
    _, segment = await edit_segment(
        request, _dub_id(request), request.match_info["segment_id"], edit
    )
    return _json(segment)


async def render(request: web.Request) -> web.Response:
    dub = await _dub(request)  # first: another workspace's dub is a 404 whatever the body
    body = await read_model(request, RenderBody) if request.can_read_body else RenderBody()
    job = await render_dub(request, dub, body.languages, body.segment_ids)
    return _json(DubStartedModel(id=str(dub.id), status="dubbing", job_id=str(job.id)), 202)


async def get_audio(request: web.Request) -> web.StreamResponse:
    dub = await _dub(request)
    language = request.match_info["language"]
    if language == "source" and dub.source_file_id is not None:
        return await stream_file(request, dub, str(dub.source_file_id), dub.name)
    output = output_of(dub, language)
    name = f"{dub.name.rsplit('.', 1)[0]}-{language}.{output['format']}"
    return await stream_file(request, dub, str(output["file_id"]), name)


def transcript_json(dub: DubRecord, language: str) -> dict[str, Any]:
    """The segments' text in ``language`` with the source's times: the source's text for
    ``source`` (or the source's code when it is not also a target)."""
    plan = plan_of(dub)
    targets = DubOptions.model_validate(dub.options).target_languages
    source = language == "source" or (language == plan.source_language and language not in targets)
    return {
        "language": plan.source_language if source else language,
        "segments": [
            {
                "id": segment.id,
                "start": segment.start,
                "end": segment.end,
                "speaker_id": segment.speaker_id,
                "text": segment.text if source else segment.translations.get(language, ""),
            }
            for segment in plan.segments
        ],
    }


def subtitles_text(dub: DubRecord, language: str, kind: Literal["srt", "vtt"]) -> str:
    """SRT or WebVTT of ``language``: the dubbed timings for a target language, the source's
    for ``source`` (or its code when it is not a target)."""
    plan = plan_of(dub)
    if language == "source" or (language == plan.source_language and language not in dub.outputs):
        srt, vtt = source_subtitles(plan)
        return srt if kind == "srt" else vtt
    output = output_of(dub, language)
    return str(output[kind])


async def get_transcript(request: web.Request) -> web.Response:
    dub = await _dub(request)
    language = request.match_info["language"]
    kind = request.query.get("format", "srt")
    if kind == "json":
        return web.json_response(transcript_json(dub, language))
    if kind not in ("srt", "vtt"):
        raise ValidationFailed(
            f"format must be srt, vtt or json; got {kind[:20]!r}",
            details={"fields": [{"field": "format", "message": "srt, vtt or json"}]},
        )
    text = subtitles_text(dub, language, "srt" if kind == "srt" else "vtt")
    content_type = "application/x-subrip" if kind == "srt" else "text/vtt"
    return web.Response(text=text, content_type=content_type, charset="utf-8")


async def post_subtitles(request: web.Request) -> web.Response:
    await _dub(request)  # first: another workspace's dub is a 404 whatever the body
    language = check_language(request.match_info["language"])
    if (length := request.content_length) is not None and length > MAX_TEXT_FILE_BYTES:
        raise PayloadTooLarge(f"subtitles are limited to {MAX_TEXT_FILE_BYTES} bytes")
    data = await request.content.read(MAX_TEXT_FILE_BYTES + 1)
    if len(data) > MAX_TEXT_FILE_BYTES:
        raise PayloadTooLarge(f"subtitles are limited to {MAX_TEXT_FILE_BYTES} bytes")
    if not data.strip():
        raise BadRequest("send the SRT or WebVTT document as the body")
    kind = "vtt" if "vtt" in request.content_type else "srt"
    dub = await import_subtitles(request, _dub_id(request), language, data, kind)
    return _json(DubModel.of(dub))


def dubbing_app() -> web.Application:
    """The sub-app to mount at ``DUBBING_PREFIX``."""
    app = web.Application()
    app.add_routes(
        [
            web.post("", create),
            web.get("", list_dubs, allow_head=False),
            web.get("/{dub_id}", get_dub, allow_head=False),
            web.delete("/{dub_id}", delete),
            web.get("/{dub_id}/segments", get_segments, allow_head=False),
            web.patch("/{dub_id}/segments/{segment_id}", patch_segment),
            web.post("/{dub_id}/render", render),
            web.get("/{dub_id}/audio/{language}", get_audio, allow_head=False),
            web.get("/{dub_id}/transcript/{language}", get_transcript, allow_head=False),
            web.post("/{dub_id}/subtitles/{language}", post_subtitles),
        ]
    )
    return app
