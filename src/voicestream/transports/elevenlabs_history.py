"""ElevenLabs history: past generations with their audio (``/elevenlabs/v1/history``).

The text-to-speech handlers in ``elevenlabs_rest.py`` record an item once a generation's audio
was fully sent (unless ``enable_logging=false``); these routes list, fetch, download and delete
them, always within the caller's workspace (another workspace's item is a 404). Errors come in
ElevenLabs' shape, like the rest of ``/elevenlabs``.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel, Field

from ..errors import ValidationFailed
from ..identity.audit_trail import audit
from ..media.decode import decode_audio, decode_raw
from ..media.formats import Codec, parse_format
from ..media.wav import encode_wav
from ..media.zip_archive import stored_zip
from ..rest.bodies import read_model
from ..rest.resources import HISTORY, MEDIA_EXECUTOR
from ..store.history import MAX_PAGE_SIZE, HistoryItem
from .context import principal_of
from .elevenlabs_rest import PREFIX
from .elevenlabs_sockets import Handler, elevenlabs_errors

__all__ = ["add_elevenlabs_history_routes"]

MAX_DOWNLOAD_ITEMS: Final = 100
# File name extensions by codec, for downloads (Opus travels in Ogg here).
_EXTENSIONS: Final = {
    Codec.PCM: "pcm",
    Codec.ULAW: "ulaw",
    Codec.ALAW: "alaw",
    Codec.MP3: "mp3",
    Codec.OPUS: "ogg",
    Codec.AAC: "aac",
    Codec.FLAC: "flac",
    Codec.WAV: "wav",
}


def add_elevenlabs_history_routes(app: web.Application) -> None:
    """Mount ``/elevenlabs/v1/history`` and its item, audio and delete routes."""
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/v1/history", list_history),
        ("POST", "/v1/history/download", download_history),
        ("GET", "/v1/history/{history_item_id}", get_history_item),
        ("GET", "/v1/history/{history_item_id}/audio", get_history_audio),
        ("DELETE", "/v1/history/{history_item_id}", delete_history_item),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, PREFIX + path, elevenlabs_errors(handler))


def _item_json(item: HistoryItem) -> dict[str, Any]:
    """An item as ElevenLabs' ``SpeechHistoryItemResponse``."""
    return {
        "history_item_id": item.id,
        "request_id": item.request_id,
        "voice_id": item.voice_id,
        "model_id": item.model_id,
        "voice_name": item.voice_name,
        "voice_category": item.voice_category,
        "text": item.text,
        "date_unix": int(item.created_at.timestamp()),
        "character_count_change_from": item.character_count_change_from,
        "character_count_change_to": item.character_count_change_to,
        "content_type": item.content_type,
        "state": "created",
        "settings": item.settings,
        "feedback": None,
        "share_link_id": None,
        "source": item.source,
        "alignments": None,
        "dialogue": None,
        "output_format": item.output_format,
    }


def _field_error(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{name}: {message}", details={"fields": [{"field": name, "message": message}]}
    )


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise _field_error(name, f"must be an integer, got {raw!r}") from None


def _time_param(request: web.Request, name: str) -> datetime | None:
    seconds = _int_param(request, name)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise _field_error(name, f"{seconds} is not a valid unix time") from None


def _text_param(request: web.Request, name: str) -> str | None:
    return request.query.get(name) or None


async def list_history(request: web.Request) -> web.StreamResponse:
    """``GET /v1/history``: one page of items, newest first, without audio."""
    page_size = _int_param(request, "page_size")
    if page_size is not None and not 1 <= page_size <= MAX_PAGE_SIZE:
        raise _field_error("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
    direction = request.query.get("sort_direction") or "desc"
    if direction not in ("asc", "desc"):
        raise _field_error("sort_direction", "must be 'asc' or 'desc'")
    page = await request.app[HISTORY].list(
        principal_of(request).workspace_id,
        page_size=page_size or 100,
        start_after=_text_param(request, "start_after_history_item_id"),
        voice_id=_text_param(request, "voice_id"),
        model_id=_text_param(request, "model_id"),
        date_before=_time_param(request, "date_before_unix"),
        date_after=_time_param(request, "date_after_unix"),
        sort_direction=direction,
        search=_text_param(request, "search"),
        source=_text_param(request, "source"),
    )
    items = [_item_json(item) for item in page.items]
    return web.json_response(
        {
            "history": items,
            "last_history_item_id": items[-1]["history_item_id"] if items else None,
            "has_more": page.has_more,
            "scanned_until": items[-1]["date_unix"] if items else None,
        }
    )


async def get_history_item(request: web.Request) -> web.StreamResponse:
    """``GET /v1/history/{id}``: one item's metadata."""
    item = await request.app[HISTORY].get(
        principal_of(request).workspace_id, request.match_info["history_item_id"]
    )
    return web.json_response(_item_json(item))


def _file_name(item: HistoryItem, output_format: str) -> str:
    return f"{item.id}.{_EXTENSIONS[parse_format(output_format).codec]}"


async def get_history_audio(request: web.Request) -> web.StreamResponse:
    """``GET /v1/history/{id}/audio``: the audio exactly as it was generated."""
    item, audio = await request.app[HISTORY].get_audio(
        principal_of(request).workspace_id, request.match_info["history_item_id"]
    )
    return web.Response(
        body=audio,
        content_type=item.content_type,
        headers={"X-Audio-Format": item.output_format},
    )


async def delete_history_item(request: web.Request) -> web.StreamResponse:
    """``DELETE /v1/history/{id}``: the item and its audio."""
    history = request.app[HISTORY]
    item = await history.get(
        principal_of(request).workspace_id, request.match_info["history_item_id"]
    )
    # Before the delete: an entry that cannot be written stops it (503); an unknown id is a
    # 404 without an entry.
    await audit(
        request, "history.deleted", "history_item", item.id, details={"voice_id": item.voice_id}
    )
    await history.delete(item.workspace_id, item.id)
    return web.json_response({"status": "ok"})


class DownloadBody(BaseModel):
    """``POST /v1/history/download``: which items, and ``wav`` or the original format."""

    history_item_ids: list[str] = Field(min_length=1, max_length=MAX_DOWNLOAD_ITEMS)
    output_format: str | None = None


def _as_wav(audio: bytes, output_format: str) -> bytes:
    """Blocking. The generated audio transcoded to a WAV file at its own sample rate."""
    fmt = parse_format(output_format)
    if not audio:
        return encode_wav(b"", fmt.sample_rate)
    if fmt.is_raw:
        pcm = decode_raw(audio, fmt, fmt.sample_rate)
    else:
        pcm = decode_audio(audio, fmt.sample_rate)
    return encode_wav(pcm, fmt.sample_rate)


async def download_history(request: web.Request) -> web.StreamResponse:
    """``POST /v1/history/download``: one item's audio file, or a zip of several."""
    rt = request.app
    body = await read_model(request, DownloadBody)
    to_wav = body.output_format == "wav"
    if body.output_format not in (None, "", "default", "wav"):
        raise _field_error("output_format", "must be 'wav' or 'default'")
    found = await rt[HISTORY].get_audios(principal_of(request).workspace_id, body.history_item_ids)
    # Before any audio leaves: an export that cannot be recorded is not made (503).
    ids = [item.id for item, _ in found]
    await audit(
        request,
        "history.exported",
        "history_item",
        ids[0] if len(ids) == 1 else None,
        details={"history_item_ids": ids, "output_format": "wav" if to_wav else "default"},
    )
    files: list[tuple[str, str, bytes]] = []  # name, content type, data
    for item, audio in found:
        if to_wav:
            wav = await rt[MEDIA_EXECUTOR].run(
                functools.partial(_as_wav, audio, item.output_format)
            )
            files.append((f"{item.id}.wav", "audio/wav", wav))
        else:
            files.append((_file_name(item, item.output_format), item.content_type, audio))
    if len(files) == 1:
        name, content_type, data = files[0]
        disposition = f'attachment; filename="{name}"'
        return web.Response(
            body=data, content_type=content_type, headers={"Content-Disposition": disposition}
        )
    archive = await rt[MEDIA_EXECUTOR].run(lambda: stored_zip([(n, d) for n, _, d in files]))
    return web.Response(
        body=archive,
        content_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="history.zip"'},
    )
