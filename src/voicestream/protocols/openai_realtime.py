"""The OpenAI Realtime API over WebSocket, sans-I/O: the client events.

Two dialects (GA and beta) share one flow and differ in names; ``openai_realtime_session``
reads ``session.update`` in both and holds the session it sets, as well as the field-checking kit
used here. Server events with dialect names (GA ``response.output_audio.delta`` and
``conversation.item.added``/``.done``, beta ``response.audio.delta`` and
``conversation.item.created``) are built in ``openai_realtime_events``.

Here: ``parse_client_event`` turns one text frame into a typed event. A bad frame raises a
``VoiceStreamError`` whose ``details`` carry what OpenAI's error event needs (``openai_code``,
``param`` and the client's ``event_id``); the server side (``openai_realtime_events``) turns it
into that event. The session names are re-exported, so ``openai_realtime`` is the one import for
a transport.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..errors import BadRequest, TextTooLong, VoiceStreamError
from .json_messages import load_object
from .openai_realtime_session import (
    MAX_INSTRUCTIONS,
    RAW_FORMATS,
    UNSET,
    AudioName,
    Dialect,
    Modality,
    SessionConfig,
    SessionKind,
    SessionPatch,
    TurnDetection,
    bad_request,
    fields,
    missing,
    modalities,
    session_patch,
    transcription_session_patch,
    unsupported,
    wrong_type,
)

__all__ = [
    "RAW_FORMATS",
    "UNSET",
    "AudioAppend",
    "AudioClear",
    "AudioCommit",
    "AudioName",
    "ClientEvent",
    "Dialect",
    "ItemCreate",
    "ItemTruncate",
    "Modality",
    "ResponseCancel",
    "ResponseCreate",
    "SessionConfig",
    "SessionKind",
    "SessionPatch",
    "SessionUpdate",
    "TurnDetection",
    "bad_request",
    "new_id",
    "parse_client_event",
]

_MAX_TEXT: Final = 4096  # one message item's text
_MAX_ID: Final = 64  # OpenAI's limit on client-chosen ids

_UNSUPPORTED_EVENTS: Final = frozenset(
    {
        "conversation.item.retrieve",
        "conversation.item.delete",
        "output_audio_buffer.clear",
    }
)
_KNOWN_EVENTS: Final = (
    "session.update, transcription_session.update, input_audio_buffer.append, "
    "input_audio_buffer.commit, "
    "input_audio_buffer.clear, conversation.item.create, conversation.item.truncate, "
    "response.create, response.cancel"
)


def new_id(prefix: str) -> str:
    """A fresh OpenAI-style id such as ``event_3f2a…``."""
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


# ---- client events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    event_id: str | None
    patch: SessionPatch
    # The beta ``transcription_session.update``, answered ``transcription_session.updated``.
    transcription_event: bool = False


@dataclass(frozen=True, slots=True)
class AudioAppend:
    event_id: str | None
    audio: bytes


@dataclass(frozen=True, slots=True)
class AudioCommit:
    event_id: str | None


@dataclass(frozen=True, slots=True)
class AudioClear:
    event_id: str | None


@dataclass(frozen=True, slots=True)
class ItemCreate:
    """A message item with text: a user turn to answer, or context (assistant, system)."""

    event_id: str | None
    item_id: str | None
    previous_item_id: str | None
    role: Literal["user", "assistant", "system"]
    text: str


@dataclass(frozen=True, slots=True)
class ItemTruncate:
    event_id: str | None
    item_id: str
    content_index: int
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ResponseCreate:
    event_id: str | None
    instructions: str | None = None
    output_modalities: tuple[Modality, ...] | None = None


@dataclass(frozen=True, slots=True)
class ResponseCancel:
    event_id: str | None
    response_id: str | None = None


ClientEvent = (
    SessionUpdate
    | AudioAppend
    | AudioCommit
    | AudioClear
    | ItemCreate
    | ItemTruncate
    | ResponseCreate
    | ResponseCancel
)


def parse_client_event(raw: str | bytes) -> ClientEvent:
    """One client event from a text frame.

    Raises:
        InvalidJSON, ProtocolError, BadRequest, InvalidAudio, TextTooLong: ``details`` holds
            ``event_id`` (when the frame had a readable one), ``openai_code`` and ``param``.
    """
    msg = load_object(raw)
    event_id = msg.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or len(event_id) > 512):
        raise wrong_type("event_id", "a string of at most 512 characters")
    try:
        return _parse(msg, event_id)
    except VoiceStreamError as err:
        if event_id is not None:
            err.details.setdefault("event_id", event_id)
        raise


def _parse(msg: dict[str, Any], event_id: str | None) -> ClientEvent:
    kind = msg.get("type")
    match kind:
        case "session.update":
            return SessionUpdate(event_id, session_patch(fields.obj(msg, "session")))
        case "transcription_session.update":
            patch = transcription_session_patch(fields.obj(msg, "session"))
            return SessionUpdate(event_id, patch, transcription_event=True)
        case "input_audio_buffer.append":
            return AudioAppend(event_id, fields.base64(msg, "audio", empty=False))
        case "input_audio_buffer.commit":
            return AudioCommit(event_id)
        case "input_audio_buffer.clear":
            return AudioClear(event_id)
        case "conversation.item.create":
            return _item_create(msg, event_id)
        case "conversation.item.truncate":
            return _truncate(msg, event_id)
        case "response.create":
            return _response_create(msg, event_id)
        case "response.cancel":
            return ResponseCancel(event_id, _id(msg, "response_id"))
        case _:
            raise _unknown(kind)


def _unknown(kind: object) -> BadRequest:
    if kind is None:
        return missing("type")
    if not isinstance(kind, str):
        return wrong_type("type", "a string")
    if kind in _UNSUPPORTED_EVENTS:
        return bad_request(
            f"{kind} is not supported by this server; it supports {_KNOWN_EVENTS}",
            param="type",
            code="unsupported_event",
        )
    return bad_request(
        f"unknown event type {kind[:100]!r}; supported events: {_KNOWN_EVENTS}",
        param="type",
        code="unknown_event",
    )


def _truncate(msg: dict[str, Any], event_id: str | None) -> ItemTruncate:
    item_id = _id(msg, "item_id")
    if item_id is None:
        raise missing("item_id")
    content_index = fields.integer(msg, "content_index", 0, 1000, default=0)
    audio_end_ms = fields.integer(msg, "audio_end_ms", 0, 86_400_000)
    return ItemTruncate(event_id, item_id, content_index, audio_end_ms)


def _id(msg: dict[str, Any], key: str, where: str = "") -> str | None:
    return fields.opt_text(msg, key, where=where, limit=_MAX_ID) or None


# ---- conversation.item.create, response.create ----------------------------------------------


def _item_create(msg: dict[str, Any], event_id: str | None) -> ItemCreate:
    item = fields.obj(msg, "item")
    kind = item.get("type", "message")
    if kind != "message":
        raise unsupported(
            f"only message items are supported here, not {str(kind)[:60]!r}", "item.type"
        )
    role = item.get("role")
    if role not in ("user", "assistant", "system"):
        raise bad_request("'item.role' must be user, assistant or system", param="item.role")
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise bad_request("'item.content' must be a non-empty list", param="item.content")
    texts: list[str] = []
    for i, part in enumerate(content):
        where = f"item.content[{i}]"
        if not isinstance(part, dict):
            raise wrong_type(where, "an object")
        if part.get("type") not in ("input_text", "text", "output_text"):
            raise unsupported(
                f"'{where}.type' must be a text part (input_text): audio and image content is "
                "not supported here",
                f"{where}.type",
            )
        text = fields.text(part, "text", where=where, limit=_MAX_TEXT)
        if text.strip():
            texts.append(text.strip())
    text = " ".join(texts)
    if not text:
        raise bad_request("'item.content' holds no text", param="item.content")
    if len(text) > _MAX_TEXT:
        raise TextTooLong(
            f"item text has {len(text)} characters; the limit is {_MAX_TEXT}",
            details={"param": "item.content", "openai_code": "string_above_max_length"},
        )
    previous = _id(msg, "previous_item_id")
    return ItemCreate(event_id, _id(item, "id", "item"), previous, role, text)


def _response_create(msg: dict[str, Any], event_id: str | None) -> ResponseCreate:
    response = fields.opt_obj(msg, "response")
    if response is None:
        return ResponseCreate(event_id)
    if response.get("conversation") not in (None, "auto"):
        raise unsupported(
            "responses outside the default conversation are not supported here",
            "response.conversation",
        )
    if response.get("input"):
        raise unsupported(
            "custom response input is not supported here; add items with conversation.item.create",
            "response.input",
        )
    if response.get("tools"):
        raise unsupported(
            "tools (function calling) are not supported by this server", "response.tools"
        )
    chosen = None
    for key in ("output_modalities", "modalities"):
        if response.get(key) is not None:
            chosen = modalities(response[key], f"response.{key}")
    instructions = fields.opt_text(
        response, "instructions", where="response", limit=MAX_INSTRUCTIONS
    )
    return ResponseCreate(event_id, instructions, chosen)
