"""ElevenLabs' TTS sockets: ``stream-input`` (one stream) and ``multi-stream-input`` (contexts).

Pure: client messages parsed into events, server messages built from audio and alignment; the
transport (``transports/elevenlabs_streams.py``) only moves bytes.

``stream-input``: ``{"text": " ", voice_settings?, generation_config?, "xi-api-key"?}`` first,
then ``{"text": "Hello ", "flush"?, "try_trigger_generation"?}`` any number of times, then
``{"text": ""}`` to end. The server answers ``{"audio", "isFinal": null, "alignment",
"normalizedAlignment"}`` per clause (times in ms relative to that message's audio, or with
``sync_alignment=true`` to the start of the stream), then ``{"isFinal": true}`` and a normal
close. A flushed or closed generation's alignment ends on a space, as ElevenLabs' does.

``multi-stream-input``: every message names its context (``context_id``; without one it goes
to the default context). Text for a context that is not open opens it; ``flush`` speaks what
the context has buffered; ``{"context_id", "close_context": true}`` ends the context (what it
was sent is still spoken, then ``{"isFinal": true, "contextId"}``); ``{"text": ""}`` only
keeps a context (or, without ``context_id``, the socket) alive; ``{"close_socket": true}``
ends every context and the socket closes normally once their audio is out. Audio messages
carry ``contextId``.

Keys: besides the ``xi-api-key`` header, ElevenLabs takes the ``authorization`` query parameter
and a key in the first message (``xi-api-key``, ``xi_api_key`` or ``authorization``), since
browsers cannot set headers on a socket.

Errors are ``{"error": code, "message"}`` (with ``contextId`` when one context is at fault),
followed by a close code that says why.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import (
    AuthError,
    BadRequest,
    ProtocolError,
    TextTooLong,
    ValidationFailed,
    VoiceStreamError,
)
from .elevenlabs import MODELS, CharTiming, VoiceSettings
from .json_fields import Fault, FieldReader
from .json_messages import load_object, validate_model

__all__ = [
    "DEFAULT_CONTEXT_ID",
    "MAX_CONTEXTS",
    "CloseContext",
    "CloseSocket",
    "ContextText",
    "InputTimeout",
    "InvalidApiKey",
    "KeepAlive",
    "MissingApiKey",
    "MultiMessage",
    "StreamClose",
    "StreamInit",
    "StreamMessage",
    "StreamText",
    "TooManyContexts",
    "audio_output",
    "bearer_token",
    "final_output",
    "parse_multi_input",
    "parse_stream_input",
    "parse_stream_query",
    "parse_sync_alignment",
    "stream_error",
]

DEFAULT_CONTEXT_ID: Final = "default"
# ElevenLabs' own limit: the socket is meant for one conversation's turns, not a batch queue.
MAX_CONTEXTS: Final = 5
_MAX_CONTEXT_ID_CHARS: Final = 256
_DEFAULT_INACTIVITY_S: Final = 20
_MAX_INACTIVITY_S: Final = 180


class InputTimeout(BadRequest):
    """No message arrived within the socket's ``inactivity_timeout``."""

    code = "input_timeout_exceeded"
    ws_close_code = 1008


class MissingApiKey(AuthError):
    """No key in the header, the query or the first message."""

    code = "missing_api_key"
    ws_close_code = 1008  # ElevenLabs closes with policy violation, not an application code


class InvalidApiKey(AuthError):
    code = "invalid_api_key"
    ws_close_code = 1008


class TooManyContexts(BadRequest):
    """More contexts open at once than one socket may hold (ElevenLabs' error name)."""

    code = "max_active_conversations"


# --- stream-input ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamInit:
    text: str  # whatever follows the protocol's single space: text to speak
    api_key: str | None = None  # a key sent in the message, for clients that cannot set headers
    speed: float | None = None  # voice_settings.speed, for the text from here on


@dataclass(frozen=True, slots=True)
class StreamText:
    text: str
    flush: bool
    speed: float | None = None


@dataclass(frozen=True, slots=True)
class StreamClose:
    pass


StreamMessage = StreamInit | StreamText | StreamClose


def parse_stream_query(query: Mapping[str, str]) -> int:
    """Check the socket's query; returns ``inactivity_timeout`` in seconds.

    Raises:
        ValidationFailed: an unknown model or a bad inactivity_timeout (422, before upgrading).
    """
    model = query.get("model_id")
    # SDK 2.59 leaked its OMIT sentinel into the URL as "Ellipsis": that means the default.
    if model not in (None, "", "Ellipsis") and model not in MODELS:
        raise ValidationFailed(
            f"unknown model_id {model!r}; GET /v1/models lists the models",
            details={"fields": [{"field": "model_id", "message": "unknown model"}]},
        )
    raw = query.get("inactivity_timeout")
    if raw is None:
        return _DEFAULT_INACTIVITY_S
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_INACTIVITY_S:
        raise ValidationFailed(
            f"inactivity_timeout must be 1..{_MAX_INACTIVITY_S} seconds; got {raw!r}",
            details={"fields": [{"field": "inactivity_timeout", "message": "out of range"}]},
        )
    return int(raw)


def parse_sync_alignment(query: Mapping[str, str]) -> bool:
    """The ``sync_alignment`` query flag: alignment times from the start of the stream (or the
    context) instead of from the start of each message's audio.

    ElevenLabs documents its AudioOutput times as relative to the message's chunk, which is
    what Pipecat (which never sets the flag) adds up itself; LiveKit sets the flag and reads
    the times as offsets from the start of its context, placing each word against the audio
    it has already played. Each client gets the reading it relies on.

    Raises:
        ValidationFailed: a value other than true or false (422, before upgrading).
    """
    raw = query.get("sync_alignment", "false").strip().lower()
    if raw not in ("true", "false", "1", "0"):
        raise ValidationFailed(
            f"sync_alignment must be true or false; got {raw!r}",
            details={"fields": [{"field": "sync_alignment", "message": "not a boolean"}]},
        )
    return raw in ("true", "1")


def bearer_token(value: str) -> str | None:
    """The key in an ``authorization`` value, with or without the ``Bearer`` scheme."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    return value.strip() or None


def _complaint(fault: Fault) -> VoiceStreamError:
    # ElevenLabs' split: the text itself is the protocol (and its size a limit of its own);
    # every other field is a validation error.
    match fault.key, fault.problem:
        case "text", "long":
            return TextTooLong(
                f"text message has {len(str(fault.value))} characters; limit {fault.high}"
            )
        case "text", _:
            return ProtocolError('"text" must be a string')
        case "context_id", _:
            return ValidationFailed(
                f"context_id must be a non-empty string of at most {fault.high} characters"
            )
        case key, _ if fault.expected == "true or false":
            return ValidationFailed(f'"{key}" must be true or false; got {fault.value!r}')
        case key, _:
            return ValidationFailed(f'"{key}" must be {fault.expected}')


_fields = FieldReader(_complaint)


def _message_key(msg: dict[str, Any]) -> str | None:
    # The spec names it xi-api-key on stream-input, xi_api_key on multi-stream-input and in its
    # own examples: accept both everywhere.
    for name in ("xi-api-key", "xi_api_key", "authorization"):
        value = _fields.opt_text(msg, name)
        key = None if value is None else bearer_token(value)
        if key is not None:
            return key
    return None


def _check_flags(msg: dict[str, Any], *names: str) -> None:
    for name in names:
        _fields.opt_flag(msg, name)


def _check_generation_config(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise ValidationFailed("generation_config must be an object")
    schedule = value.get("chunk_length_schedule")
    if schedule is None:
        return
    if not isinstance(schedule, list) or not all(
        isinstance(n, int | float) and not isinstance(n, bool) and 50 <= n <= 500 for n in schedule
    ):
        raise ValidationFailed("chunk_length_schedule must be a list of numbers from 50 to 500")


def _check_settings(msg: dict[str, Any]) -> float | None:
    """Check the message's settings, all of which must be well-formed; returns the only one
    used, ``voice_settings.speed`` (None: not given)."""
    settings = None
    if msg.get("voice_settings") is not None:
        settings = validate_model(VoiceSettings, msg["voice_settings"], "voice_settings")
    # The spec calls it generation_config on the first message, generator_config after.
    _check_generation_config(msg.get("generation_config"))
    _check_generation_config(msg.get("generator_config"))
    return settings.speed if settings is not None else None


def parse_stream_input(raw: str, *, first: bool, max_text_chars: int) -> StreamMessage:
    """One client message of ``stream-input``; ``first`` for the InitializeConnection.

    Raises:
        InvalidJSON: not JSON. ProtocolError: not an object, or ``text`` is not a string.
        ValidationFailed: bad voice settings, chunk schedule, flag or key type.
        TextTooLong: over the limit.
    """
    msg = load_object(raw)
    _check_flags(msg, "flush", "try_trigger_generation")
    flush = msg.get("flush") is True
    if msg.get("text") is None and flush and not first:
        return StreamText("", flush=True)
    text = _fields.text(msg, "text", limit=max_text_chars)
    speed = _check_settings(msg)
    if first:
        if text == "":
            raise ProtocolError('the first message must initialize the stream: {"text": " "}')
        return StreamInit(text[1:] if text.startswith(" ") else text, _message_key(msg), speed)
    if text == "":
        return StreamClose()
    return StreamText(text, flush=flush, speed=speed)


# --- multi-stream-input ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContextText:
    """Text for a context (opening it if needed); ``flush`` speaks what it has buffered."""

    context_id: str
    text: str
    flush: bool
    api_key: str | None = None
    speed: float | None = None  # voice_settings.speed, for the context's text from here on


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Resets a context's inactivity clock (``None``: only the socket's)."""

    context_id: str | None


@dataclass(frozen=True, slots=True)
class CloseContext:
    context_id: str


@dataclass(frozen=True, slots=True)
class CloseSocket:
    pass


MultiMessage = ContextText | KeepAlive | CloseContext | CloseSocket


def parse_multi_input(raw: str, *, max_text_chars: int) -> MultiMessage:
    """One client message of ``multi-stream-input``.

    Raises:
        InvalidJSON: not JSON. ProtocolError: not an object, no text where text is needed,
            close_context without a context. ValidationFailed: a field of the wrong type or
            size. TextTooLong: over the limit.
    """
    msg = load_object(raw)
    _check_flags(msg, "flush", "close_context", "close_socket", "try_trigger_generation")
    if msg.get("close_socket") is True:
        return CloseSocket()
    context_id = _fields.opt_text(msg, "context_id", limit=_MAX_CONTEXT_ID_CHARS, empty=False)
    if msg.get("close_context") is True:
        if context_id is None:
            raise ProtocolError("close_context needs the context_id of the context to close")
        return CloseContext(context_id)
    target = context_id or DEFAULT_CONTEXT_ID
    flush = msg.get("flush") is True
    if msg.get("text") is None and flush:
        return ContextText(target, "", flush=True)
    text = _fields.text(msg, "text", limit=max_text_chars)
    speed = _check_settings(msg)
    if text == "" and not flush:
        return KeepAlive(context_id)
    # A lone space only initialises the context: there is nothing to speak yet.
    return ContextText(target, "" if text == " " else text, flush, _message_key(msg), speed)


# --- server messages ------------------------------------------------------------------------


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _with_context(body: dict[str, Any], context_id: str | None) -> str:
    if context_id is not None:
        body["contextId"] = context_id
    return _dump(body)


def audio_output(
    audio: bytes, timing: CharTiming | None, *, audio_offset: float, context_id: str | None = None
) -> str:
    """AudioOutput; alignment times in ms from ``audio_offset`` seconds into the stream (this
    message's start, or 0 under ``sync_alignment``)."""
    alignment: dict[str, Any] | None = None
    if timing is not None:
        starts = [max(0, round((s - audio_offset) * 1000)) for s in timing.starts]
        ends = [max(0, round((e - audio_offset) * 1000)) for e in timing.ends]
        alignment = {
            "chars": list(timing.characters),
            "charStartTimesMs": starts,
            "charDurationsMs": [max(0, e - s) for s, e in zip(starts, ends, strict=True)],
        }
    body = {
        "audio": base64.b64encode(audio).decode("ascii"),
        "isFinal": None,
        "normalizedAlignment": alignment,
        "alignment": alignment,
    }
    return _with_context(body, context_id)


def final_output(context_id: str | None = None) -> str:
    """FinalOutput: the stream (or the context) has no more audio."""
    return _with_context({"isFinal": True}, context_id)


def stream_error(err: VoiceStreamError, context_id: str | None = None) -> str:
    return _with_context({"error": err.code, "message": err.message}, context_id)
