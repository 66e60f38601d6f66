"""The OpenAI Realtime API over WebSocket, sans-I/O: client events and the session they set.

Two dialects share one flow and differ in names: the GA client (``client.realtime``) and the
beta client (``client.beta.realtime``, which sends ``OpenAI-Beta: realtime=v1``)::

    GA                                         beta
    session.audio.input.format {type, rate}    session.input_audio_format pcm16|g711_ulaw|…
    session.audio.output.{format, voice}       session.output_audio_format, session.voice
    session.audio.input.turn_detection         session.turn_detection
    session.output_modalities                  session.modalities
    response.output_audio.delta|done           response.audio.delta|done
    response.output_audio_transcript.*         response.audio_transcript.*
    response.output_text.delta|done            response.text.delta|done
    conversation.item.added, then .done        conversation.item.created

A session is a conversation (``"type": "realtime"``) or transcription only (``"type":
"transcription"``, what ``?intent=transcription`` opens: the input is transcribed and nothing
answers). The beta dialect configures the latter with ``transcription_session.update``, whose
session is flat (``input_audio_format``, ``input_audio_transcription``, ``turn_detection``).

Here: ``parse_client_event`` turns one text frame into a typed event, and ``SessionConfig`` is
the session those events configure. A bad frame raises a ``VoiceStreamError`` whose
``details`` carry what OpenAI's error event needs (``openai_code``, ``param`` and the client's
``event_id``); the server side (``openai_realtime_events``) turns it into that event. Audio
formats are named ``pcm16`` (24 kHz s16le), ``pcmu`` and ``pcma`` (G.711, 8 kHz).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from ..errors import BadRequest, InvalidAudio, TextTooLong, VoiceStreamError
from .json_fields import Fault, FieldReader
from .json_messages import load_object

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

Dialect = Literal["ga", "beta"]
AudioName = Literal["pcm16", "pcmu", "pcma"]
Modality = Literal["audio", "text"]
SessionKind = Literal["realtime", "transcription"]

# Our raw formats (media.formats) for each Realtime audio format.
RAW_FORMATS: Final[dict[str, str]] = {
    "pcm16": "pcm_24000",
    "pcmu": "ulaw_8000",
    "pcma": "alaw_8000",
}
_GA_FORMATS: Final[dict[str, AudioName]] = {
    "audio/pcm": "pcm16",
    "audio/pcmu": "pcmu",
    "audio/pcma": "pcma",
}
_BETA_FORMATS: Final[dict[str, AudioName]] = {
    "pcm16": "pcm16",
    "g711_ulaw": "pcmu",
    "g711_alaw": "pcma",
}
_MAX_TEXT: Final = 4096  # one message item's text
_MAX_INSTRUCTIONS: Final = 32_000
_MAX_ID: Final = 64  # OpenAI's limit on client-chosen ids
# Session fields accepted and echoed or ignored (they steer nothing this server runs); any other
# field is an unknown parameter, as OpenAI treats it.
_GA_FIELDS: Final = frozenset({"type", "instructions", "output_modalities", "audio", "tools"})
_GA_IGNORED: Final = frozenset(
    {"model", "tool_choice", "max_output_tokens", "tracing", "truncation", "prompt", "include"}
    | {"reasoning", "parallel_tool_calls"}
)
_BETA_FIELDS: Final = frozenset(
    {"instructions", "tools", "input_audio_format", "output_audio_format", "modalities", "voice"}
    | {"turn_detection", "input_audio_transcription"}
)
_BETA_IGNORED: Final = frozenset(
    {"model", "tool_choice", "temperature", "max_response_output_tokens", "speed", "tracing"}
    | {"input_audio_noise_reduction", "client_secret"}
)
_GA_MARKERS: Final = frozenset({"type", "audio", "output_modalities"})
_BETA_MARKERS: Final = _BETA_FIELDS - {"instructions", "tools"}
# A transcription session has input audio only: no voice, no instructions, no responses.
_GA_TRANSCRIPTION_FIELDS: Final = frozenset({"type", "audio", "include", "model"})
_BETA_TRANSCRIPTION_FIELDS: Final = frozenset(
    {"input_audio_format", "input_audio_transcription", "turn_detection", "include"}
    | {"input_audio_noise_reduction", "modalities", "client_secret"}
)
_TURN_FIELDS: Final = frozenset(
    {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "create_response"}
    | {"interrupt_response", "eagerness", "idle_timeout_ms"}
)
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


class Unset(enum.Enum):
    """A session field the update did not mention (``None`` is a value: turn detection off)."""

    UNSET = 0


UNSET: Final = Unset.UNSET


def new_id(prefix: str) -> str:
    """A fresh OpenAI-style id such as ``event_3f2a…``."""
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def bad_request(
    message: str, *, param: str | None = None, code: str = "invalid_value"
) -> BadRequest:
    """A client mistake as OpenAI reports it: ``code`` and ``param`` go into the error event."""
    details: dict[str, Any] = {"openai_code": code}
    if param is not None:
        details["param"] = param
    return BadRequest(message, details=details)


def _missing(where: str) -> BadRequest:
    return bad_request(
        f"missing required parameter '{where}'", param=where, code="missing_required_parameter"
    )


def _wrong_type(where: str, what: str) -> BadRequest:
    return bad_request(f"'{where}' must be {what}", param=where, code="invalid_type")


def _unsupported(message: str, where: str) -> BadRequest:
    return bad_request(message, param=where, code="unsupported_parameter")


# ---- client events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """Server-side turn detection. ``semantic_vad`` runs as VAD tuned by ``eagerness``."""

    kind: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool = True
    interrupt_response: bool = True
    eagerness: str | None = None
    idle_timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SessionPatch:
    """What one ``session.update`` sets; ``None``/``UNSET`` fields stay as they were."""

    dialect: Dialect | None = None  # None: the update's shape does not say
    kind: SessionKind | None = None  # None: the update does not say
    instructions: str | None = None
    input_format: AudioName | None = None
    output_format: AudioName | None = None
    voice: str | dict[str, Any] | None = None  # as sent; the transport resolves it
    turn_detection: TurnDetection | Unset | None = UNSET
    output_modalities: tuple[Modality, ...] | None = None
    transcription: dict[str, Any] | Unset | None = UNSET
    model: str | None = None


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
        raise _wrong_type("event_id", "a string of at most 512 characters")
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
            return SessionUpdate(event_id, _session_patch(_fields.obj(msg, "session")))
        case "transcription_session.update":
            patch = _beta_transcription_patch(_fields.obj(msg, "session"))
            return SessionUpdate(event_id, patch, transcription_event=True)
        case "input_audio_buffer.append":
            return AudioAppend(event_id, _fields.base64(msg, "audio", empty=False))
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
        return _missing("type")
    if not isinstance(kind, str):
        return _wrong_type("type", "a string")
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
        raise _missing("item_id")
    content_index = _fields.integer(msg, "content_index", 0, 1000, default=0)
    audio_end_ms = _fields.integer(msg, "audio_end_ms", 0, 86_400_000)
    return ItemTruncate(event_id, item_id, content_index, audio_end_ms)


# ---- field readers -------------------------------------------------------------------------


def _complaint(fault: Fault) -> VoiceStreamError:
    where = fault.path
    match fault.problem, fault.expected:
        case "missing", _:
            return _missing(where)
        case "unknown", _:
            return bad_request(
                f"unknown parameter '{where}'", param=where, code="unknown_parameter"
            )
        case "long", _:
            return bad_request(f"'{where}' is longer than {fault.high} characters", param=where)
        case _, "a number":  # a wrong type reads as a value out of range, as OpenAI words it
            return bad_request(
                f"'{where}' must be a number from {fault.low:g} to {fault.high:g}", param=where
            )
        case "range", _:
            return bad_request(f"'{where}' must be from {fault.low} to {fault.high}", param=where)
        case (("invalid" | "empty"), "a base64 string"):
            problem = "not valid base64" if fault.problem == "invalid" else "empty"
            details = {"param": where, "openai_code": "invalid_audio"}
            return InvalidAudio(f"'{where}' is {problem}", details=details)
        case _:
            return _wrong_type(where, fault.expected)


_fields = FieldReader(_complaint)


def _id(msg: dict[str, Any], key: str, where: str = "") -> str | None:
    return _fields.opt_text(msg, key, where=where, limit=_MAX_ID) or None


def _modalities(value: Any, where: str) -> tuple[Modality, ...]:
    """``["audio"]`` or ``["text"]``; beta's ``["text", "audio"]`` means audio with transcript."""
    if not isinstance(value, list) or not value or not all(v in ("audio", "text") for v in value):
        raise bad_request(f'\'{where}\' must be ["audio"] or ["text"]', param=where)
    return ("audio",) if "audio" in value else ("text",)


# ---- session.update ------------------------------------------------------------------------


def _session_patch(s: dict[str, Any]) -> SessionPatch:
    ga, beta = bool(_GA_MARKERS & s.keys()), bool(_BETA_MARKERS & s.keys())
    if ga and beta:
        both = ", ".join(sorted((_GA_MARKERS | _BETA_MARKERS) & s.keys()))
        raise bad_request(
            f"session mixes GA and beta fields ({both}); GA puts formats, voice and "
            "turn_detection under session.audio",
            param="session",
        )
    _fields.only(
        s, (_BETA_FIELDS | _BETA_IGNORED) if beta else (_GA_FIELDS | _GA_IGNORED), where="session"
    )
    tools = s.get("tools")
    if tools is not None and (not isinstance(tools, list) or tools):
        raise _unsupported(
            "tools (function calling) are not supported by this server; send an empty list",
            "session.tools",
        )
    patch = SessionPatch(
        instructions=_fields.opt_text(s, "instructions", where="session", limit=_MAX_INSTRUCTIONS),
        model=_fields.opt_text(s, "model", where="session", limit=200),
    )
    return _beta_patch(s, patch) if beta else _ga_patch(s, patch, "ga" if ga else None)


def _ga_patch(s: dict[str, Any], patch: SessionPatch, dialect: Dialect | None) -> SessionPatch:
    kind = s.get("type")
    if kind not in (None, "realtime", "transcription"):
        raise bad_request(
            "'session.type' must be 'realtime' or 'transcription'", param="session.type"
        )
    changes: dict[str, Any] = {"dialect": dialect, "kind": kind}
    if kind == "transcription":
        _fields.only(s, _GA_TRANSCRIPTION_FIELDS, where="session")
        _fields.only(
            _fields.opt_obj(s, "audio", where="session") or {}, {"input"}, where="session.audio"
        )
    if s.get("output_modalities") is not None:
        changes["output_modalities"] = _modalities(
            s["output_modalities"], "session.output_modalities"
        )
    audio = _fields.opt_obj(s, "audio", where="session")
    if audio is not None:
        _fields.only(audio, {"input", "output"}, where="session.audio")
        inp = _fields.opt_obj(audio, "input", where="session.audio") or {}
        out = _fields.opt_obj(audio, "output", where="session.audio") or {}
        input_fields = frozenset({"format", "transcription", "noise_reduction", "turn_detection"})
        _fields.only(inp, input_fields, where="session.audio.input")
        _fields.only(out, {"format", "voice", "speed"}, where="session.audio.output")
        changes["input_format"] = _ga_format(inp, "session.audio.input")
        changes["output_format"] = _ga_format(out, "session.audio.output")
        changes["voice"] = _voice(out, "session.audio.output.voice")
        if "turn_detection" in inp:
            where = "session.audio.input.turn_detection"
            changes["turn_detection"] = _turn_detection(inp["turn_detection"], where)
        if "transcription" in inp:
            where = "session.audio.input"
            changes["transcription"] = _fields.opt_obj(inp, "transcription", where=where)
        _fields.opt_number(out, "speed", 0.25, 1.5, where="session.audio.output")
    return replace(patch, **changes)


def _beta_patch(s: dict[str, Any], patch: SessionPatch) -> SessionPatch:
    changes: dict[str, Any] = {
        "dialect": "beta",
        "input_format": _beta_format(s, "input_audio_format"),
        "output_format": _beta_format(s, "output_audio_format"),
        "voice": _voice(s, "session.voice"),
    }
    if s.get("modalities") is not None:
        changes["output_modalities"] = _modalities(s["modalities"], "session.modalities")
    if "turn_detection" in s:
        changes["turn_detection"] = _turn_detection(s["turn_detection"], "session.turn_detection")
    if "input_audio_transcription" in s:
        transcription = _fields.opt_obj(s, "input_audio_transcription", where="session")
        changes["transcription"] = transcription
    return replace(patch, **changes)


def _beta_transcription_patch(s: dict[str, Any]) -> SessionPatch:
    _fields.only(s, _BETA_TRANSCRIPTION_FIELDS, where="session")
    changes: dict[str, Any] = {
        "dialect": "beta",
        "kind": "transcription",
        "input_format": _beta_format(s, "input_audio_format"),
    }
    if "turn_detection" in s:
        changes["turn_detection"] = _turn_detection(s["turn_detection"], "session.turn_detection")
    if "input_audio_transcription" in s:
        transcription = _fields.opt_obj(s, "input_audio_transcription", where="session")
        changes["transcription"] = transcription
    return SessionPatch(**changes)


def _ga_format(io: dict[str, Any], io_where: str) -> AudioName | None:
    fmt = _fields.opt_obj(io, "format", where=io_where)
    if fmt is None:
        return None
    where = f"{io_where}.format"
    kind = fmt.get("type")
    name = _GA_FORMATS.get(kind) if isinstance(kind, str) else None
    if name is None:
        choices = ", ".join(_GA_FORMATS)
        raise bad_request(f"'{where}.type' must be one of {choices}", param=f"{where}.type")
    _fields.only(fmt, {"type", "rate"}, where=where)
    if name == "pcm16" and fmt.get("rate", 24000) != 24000:
        raise bad_request(f"'{where}.rate' must be 24000 for audio/pcm", param=f"{where}.rate")
    return name


def _beta_format(s: dict[str, Any], key: str) -> AudioName | None:
    value = s.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value not in _BETA_FORMATS:
        choices = ", ".join(_BETA_FORMATS)
        raise bad_request(f"'session.{key}' must be one of {choices}", param=f"session.{key}")
    return _BETA_FORMATS[value]


def _voice(obj: dict[str, Any], where: str) -> str | dict[str, Any] | None:
    value = obj.get("voice")
    if value is None:
        return None
    if isinstance(value, str) and 0 < len(value) <= 200:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        return {"id": value["id"]}
    raise _wrong_type(where, "a voice name or an object with an 'id'")


def _turn_detection(value: Any, where: str) -> TurnDetection | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _wrong_type(where, "an object or null")
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise bad_request(
            f"'{where}.type' must be 'server_vad' or 'semantic_vad'", param=f"{where}.type"
        )
    _fields.only(value, _TURN_FIELDS, where=where)
    eagerness = value.get("eagerness")
    if eagerness is not None and eagerness not in ("low", "medium", "high", "auto"):
        raise bad_request(
            f"'{where}.eagerness' must be low, medium, high or auto", param=f"{where}.eagerness"
        )
    return TurnDetection(
        kind=kind,
        threshold=_fields.opt_number(value, "threshold", 0, 1, where=where),
        prefix_padding_ms=_fields.opt_integer(value, "prefix_padding_ms", 0, 10_000, where=where),
        silence_duration_ms=_fields.opt_integer(
            value, "silence_duration_ms", 0, 10_000, where=where
        ),
        create_response=_fields.flag(value, "create_response", where=where, default=True),
        interrupt_response=_fields.flag(value, "interrupt_response", where=where, default=True),
        eagerness=eagerness,
        idle_timeout_ms=_fields.opt_integer(value, "idle_timeout_ms", 0, 3_600_000, where=where),
    )


# ---- conversation.item.create, response.create ----------------------------------------------


def _item_create(msg: dict[str, Any], event_id: str | None) -> ItemCreate:
    item = _fields.obj(msg, "item")
    kind = item.get("type", "message")
    if kind != "message":
        raise _unsupported(
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
            raise _wrong_type(where, "an object")
        if part.get("type") not in ("input_text", "text", "output_text"):
            raise _unsupported(
                f"'{where}.type' must be a text part (input_text): audio and image content is "
                "not supported here",
                f"{where}.type",
            )
        text = _fields.text(part, "text", where=where, limit=_MAX_TEXT)
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
    response = _fields.opt_obj(msg, "response")
    if response is None:
        return ResponseCreate(event_id)
    if response.get("conversation") not in (None, "auto"):
        raise _unsupported(
            "responses outside the default conversation are not supported here",
            "response.conversation",
        )
    if response.get("input"):
        raise _unsupported(
            "custom response input is not supported here; add items with conversation.item.create",
            "response.input",
        )
    if response.get("tools"):
        raise _unsupported(
            "tools (function calling) are not supported by this server", "response.tools"
        )
    modalities = None
    for key in ("output_modalities", "modalities"):
        if response.get(key) is not None:
            modalities = _modalities(response[key], f"response.{key}")
    instructions = _fields.opt_text(
        response, "instructions", where="response", limit=_MAX_INSTRUCTIONS
    )
    return ResponseCreate(event_id, instructions, modalities)


# ---- session state -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """A connection's session as the client configured it (defaults as OpenAI's)."""

    dialect: Dialect = "ga"
    kind: SessionKind = "realtime"
    model: str = "gpt-realtime"
    instructions: str = ""
    input_format: AudioName = "pcm16"
    output_format: AudioName = "pcm16"
    voice: str = "alloy"  # as the client named it: an OpenAI name, or one of our voice ids
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    output_modalities: tuple[Modality, ...] = ("audio",)
    transcription: dict[str, Any] | None = None

    def updated(self, patch: SessionPatch, voice: str | None = None) -> SessionConfig:
        """This session with ``patch`` applied; ``voice`` is the patch's voice as a name."""
        changes: dict[str, Any] = {}
        for name in ("dialect", "kind", "model", "instructions", "input_format", "output_format"):
            if (value := getattr(patch, name)) is not None:
                changes[name] = value
        if voice is not None:
            changes["voice"] = voice
        if patch.output_modalities is not None:
            changes["output_modalities"] = patch.output_modalities
        if patch.turn_detection is not UNSET:
            changes["turn_detection"] = patch.turn_detection
        if patch.transcription is not UNSET:
            changes["transcription"] = patch.transcription
        return replace(self, **changes)
