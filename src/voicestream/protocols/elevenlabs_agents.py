"""ElevenLabs Agents (Conversational AI) WebSocket, sans-I/O.

``/elevenlabs/v1/convai/conversation?agent_id=…``, as the official Python SDK
(``elevenlabs.conversational_ai.conversation``) and the JS client (``@elevenlabs/client``)
speak it. Every frame is JSON text.

Client → server::

    {"type": "conversation_initiation_client_data",          # first, before anything else
     "conversation_config_override": {"agent": {"prompt": {"prompt": "…"}, "first_message": "…",
                                                "language": "en"},
                                      "tts": {"voice_id": "…"},
                                      "conversation": {"text_only": true},   # JS client
                                      "text_only": true},                    # Python SDK
     "dynamic_variables": {"name": "value"}, "user_id": "…",
     "custom_llm_extra_body": {…}, "source_info": {…}}
    {"user_audio_chunk": "<base64 PCM s16le 16 kHz mono>"}    # no "type" field
    {"type": "user_message", "text": "…"}                    # a typed user turn
    {"type": "contextual_update", "text": "…"}               # context, no reply
    {"type": "pong", "event_id": 3}
    {"type": "user_activity"}, {"type": "client_tool_result", …}, {"type": "feedback", …}

Server → client (every message has ``type``; the JS client drops messages without one):
``conversation_initiation_metadata`` (first), ``audio``, ``agent_response``,
``agent_response_correction``, ``user_transcript``, ``interruption``, ``ping``, ``vad_score``
and ``error`` ``{error_event: {code, message, error_type, reason, details}}``, where ``code`` is
the close code that follows.

Event ids: audio chunks, agent responses and user transcripts draw increasing ids from one
counter; an ``interruption`` carries the id of the last stale audio chunk, and clients drop
every audio event at or below it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import InvalidAudio, PayloadTooLarge, ProtocolError, TextTooLong, VoiceStreamError
from .json_fields import Fault, FieldReader
from .json_messages import load_object

__all__ = [
    "AUDIO_FORMAT",
    "ContextualUpdate",
    "Ignored",
    "Initiation",
    "Overrides",
    "Pong",
    "UserActivity",
    "UserAudio",
    "UserMessage",
    "agent_response",
    "agent_response_correction",
    "audio",
    "conversation_initiation_metadata",
    "error",
    "error_for",
    "error_type_for",
    "fill_variables",
    "interruption",
    "parse_client_message",
    "ping",
    "user_transcript",
    "vad_score",
]

AUDIO_FORMAT: Final = "pcm_16000"  # both directions; the only format we announce
MAX_TEXT: Final = 2000  # a typed turn or a context note, as on our own socket
MAX_PROMPT: Final = 20_000  # as an agent's stored instructions
MAX_FIRST_MESSAGE: Final = 2000
MAX_AUDIO_CHUNK: Final = 256 * 1024  # decoded bytes: 8 s of 16 kHz audio; the SDK sends 250 ms
_MAX_VARIABLES: Final = 100
_MAX_VARIABLE_VALUE: Final = 1000
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
_SCORES = frozenset({"like", "dislike"})


# ---- client messages ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overrides:
    """``conversation_config_override``: what the client asks to change for this conversation."""

    prompt: str | None = None
    first_message: str | None = None
    language: str | None = None
    voice_id: str | None = None
    text_only: bool = False

    @property
    def changes_agent(self) -> bool:
        """Whether the agent itself changes (``text_only`` only concerns the client's output)."""
        return any(
            v is not None for v in (self.prompt, self.first_message, self.language, self.voice_id)
        )


@dataclass(frozen=True, slots=True)
class Initiation:
    overrides: Overrides = field(default_factory=Overrides)
    dynamic_variables: Mapping[str, str] = field(default_factory=dict)
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class UserAudio:
    pcm: bytes  # s16le, 16 kHz, mono


@dataclass(frozen=True, slots=True)
class UserMessage:
    text: str


@dataclass(frozen=True, slots=True)
class ContextualUpdate:
    text: str


@dataclass(frozen=True, slots=True)
class Pong:
    event_id: int


@dataclass(frozen=True, slots=True)
class UserActivity:
    pass


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid message for a feature this server does not have; ``kind`` says which."""

    kind: str


ClientMessage = (
    Initiation | UserAudio | UserMessage | ContextualUpdate | Pong | UserActivity | Ignored
)

# Valid messages for features we lack: no client tools are ever offered, so there is no call a
# result could answer; MCP servers and mid-call config updates
# are not supported. Refusing them would end a conversation the user is happily having.
_IGNORED = frozenset(
    {"client_tool_result", "mcp_tool_approval_result", "conversation_config_update"}
)


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Parse one client frame.

    Raises:
        InvalidJSON, ProtocolError, InvalidAudio, TextTooLong, PayloadTooLarge: with a message
            fit to show the client.
    """
    msg = load_object(raw)
    kind = msg.get("type")
    if kind is None:
        if "user_audio_chunk" in msg:
            return _user_audio(msg["user_audio_chunk"])
        raise ProtocolError('message has no "type" (only user_audio_chunk messages go without)')
    if not isinstance(kind, str):
        raise ProtocolError('"type" must be a string')
    parser = _PARSERS.get(kind)
    if parser is not None:
        return parser(msg)
    if kind in _IGNORED:
        return Ignored(kind)
    raise ProtocolError(
        f"unknown message type {kind[:50]!r}; expected conversation_initiation_client_data, "
        "user_message, contextual_update, pong, user_activity, feedback, client_tool_result "
        "or a user_audio_chunk"
    )


def _feedback(msg: dict[str, Any]) -> Ignored:
    # Checked, then dropped: ratings have nowhere to be stored yet.
    score = msg.get("score")
    if score is not None and (not isinstance(score, str) or score not in _SCORES):
        raise ProtocolError('"score" must be "like" or "dislike"')
    return Ignored("feedback")


def _user_audio(chunk: Any) -> UserAudio:
    if not isinstance(chunk, str):
        raise ProtocolError('"user_audio_chunk" must be a base64 string')
    too_big = f"an audio chunk may hold at most {MAX_AUDIO_CHUNK} bytes"
    if len(chunk) > 4 * -(-MAX_AUDIO_CHUNK // 3):  # checked before decoding anything
        raise PayloadTooLarge(too_big)
    try:
        pcm = base64.b64decode(chunk, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidAudio('"user_audio_chunk" is not valid base64') from None
    if len(pcm) > MAX_AUDIO_CHUNK:
        raise PayloadTooLarge(too_big)
    if len(pcm) % 2:
        raise InvalidAudio("user audio must be 16-bit PCM: a chunk holds whole samples")
    return UserAudio(pcm)


def _text(msg: dict[str, Any], key: str) -> str:
    text = msg.get(key)
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError(f'"{key}" must be a non-empty string')
    if len(text) > MAX_TEXT:
        raise TextTooLong(f'"{key}" has {len(text)} characters; the limit is {MAX_TEXT}')
    return text


def _event_id(msg: dict[str, Any]) -> int:
    value = msg.get("event_id")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError('"event_id" must be the non-negative integer of the ping answered')
    return value


def _multimodal(msg: dict[str, Any]) -> UserMessage:
    if msg.get("file") is not None or msg.get("files"):
        raise ProtocolError("file inputs are not supported; send the text alone")
    text = msg.get("text")
    if not isinstance(text, dict):
        raise ProtocolError('"text" must be an object {"type": "user_message", "text": …}')
    return UserMessage(_text(text, "text"))


def _complaint(fault: Fault) -> VoiceStreamError:
    if fault.problem == "long":
        return TextTooLong(
            f'"{fault.path}" has {len(str(fault.value))} characters; the limit is {fault.high}'
        )
    if fault.expected == "true or false":
        return ProtocolError(f'"{fault.key}" must be true or false')
    return ProtocolError(f'"{fault.path}" must be {fault.expected}')


_fields = FieldReader(_complaint)
_OVERRIDE = "conversation_config_override"


def _object(parent: Mapping[str, Any], key: str, where: str = "") -> dict[str, Any]:
    """An optional section: absent or null reads as empty."""
    return _fields.opt_obj(parent, key, where=where) or {}


def _initiation(msg: dict[str, Any]) -> Initiation:
    override = _object(msg, _OVERRIDE)
    agent = _object(override, "agent", _OVERRIDE)
    tts = _object(override, "tts", _OVERRIDE)
    conversation = _object(override, "conversation", _OVERRIDE)
    prompt_obj = _object(agent, "prompt", f"{_OVERRIDE}.agent")
    language = _fields.opt_text(agent, "language", where=f"{_OVERRIDE}.agent", limit=20)
    if language is not None and not _LANGUAGE.match(language):
        raise ProtocolError(f"language {language!r} is not a language code such as en or pt-br")
    voice_id = _fields.opt_text(tts, "voice_id", where=f"{_OVERRIDE}.tts", limit=200)
    if voice_id is not None and not voice_id:
        raise ProtocolError('"conversation_config_override.tts.voice_id" must not be empty')
    overrides = Overrides(
        prompt=_fields.opt_text(
            prompt_obj, "prompt", where=f"{_OVERRIDE}.agent.prompt", limit=MAX_PROMPT
        ),
        first_message=_fields.opt_text(
            agent, "first_message", where=f"{_OVERRIDE}.agent", limit=MAX_FIRST_MESSAGE
        ),
        language=language.lower() if language else None,
        voice_id=voice_id,
        # The Python SDK puts text_only at the top of the override, the JS client under
        # "conversation".
        text_only=bool(
            _fields.opt_flag(override, "text_only", where=_OVERRIDE)
            or _fields.opt_flag(conversation, "text_only", where=f"{_OVERRIDE}.conversation")
        ),
    )
    # Ours to accept, not to use: a custom LLM's extra body has no LLM here to go to.
    _object(msg, "custom_llm_extra_body")
    user_id = msg.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or not 0 < len(user_id) <= 200):
        raise ProtocolError('"user_id" must be a string of 1-200 characters')
    return Initiation(overrides, _variables(msg), user_id)


def _variables(msg: dict[str, Any]) -> dict[str, str]:
    raw = _object(msg, "dynamic_variables")
    if len(raw) > _MAX_VARIABLES:
        raise ProtocolError(f"at most {_MAX_VARIABLES} dynamic variables")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if not _VARIABLE_NAME.match(name):
            raise ProtocolError(f"dynamic variable name {name[:70]!r} is not an identifier")
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            raise ProtocolError(f'dynamic variable "{name}" must be a string, number or boolean')
        if len(text) > _MAX_VARIABLE_VALUE:
            raise TextTooLong(
                f'dynamic variable "{name}" has {len(text)} characters; '
                f"the limit is {_MAX_VARIABLE_VALUE}"
            )
        out[name] = text
    return out


_PARSERS: Final[dict[str, Callable[[dict[str, Any]], ClientMessage]]] = {
    "conversation_initiation_client_data": _initiation,
    # Tolerated: some hand-written clients give the audio chunk a type.
    "user_audio_chunk": lambda msg: _user_audio(msg.get("user_audio_chunk")),
    "user_message": lambda msg: UserMessage(_text(msg, "text")),
    "contextual_update": lambda msg: ContextualUpdate(_text(msg, "text")),
    "pong": lambda msg: Pong(_event_id(msg)),
    "user_activity": lambda msg: UserActivity(),
    "multimodal_message": _multimodal,
    "feedback": _feedback,
}


def fill_variables(text: str, variables: Mapping[str, str]) -> str:
    """``{{name}}`` placeholders replaced by their values; unknown ones are left as written."""
    if not variables:
        return text
    return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


# ---- server messages ----------------------------------------------------------------------


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def conversation_initiation_metadata(conversation_id: str) -> str:
    return _dump(
        {
            "type": "conversation_initiation_metadata",
            "conversation_initiation_metadata_event": {
                "conversation_id": conversation_id,
                "agent_output_audio_format": AUDIO_FORMAT,
                "user_input_audio_format": AUDIO_FORMAT,
            },
        }
    )


def audio(pcm: bytes, event_id: int) -> str:
    return _dump(
        {
            "type": "audio",
            "audio_event": {
                "audio_base_64": base64.b64encode(pcm).decode("ascii"),
                "event_id": event_id,
            },
        }
    )


def agent_response(text: str, event_id: int) -> str:
    return _dump(
        {
            "type": "agent_response",
            "agent_response_event": {"agent_response": text, "event_id": event_id},
        }
    )


def agent_response_correction(original: str, corrected: str, event_id: int) -> str:
    """What the user actually heard of an answer cut short by a barge-in."""
    return _dump(
        {
            "type": "agent_response_correction",
            "agent_response_correction_event": {
                "original_agent_response": original,
                "corrected_agent_response": corrected,
                "event_id": event_id,
            },
        }
    )


def user_transcript(text: str, event_id: int) -> str:
    return _dump(
        {
            "type": "user_transcript",
            "user_transcription_event": {"user_transcript": text, "event_id": event_id},
        }
    )


def interruption(event_id: int) -> str:
    """The client drops every ``audio`` event whose id is at or below ``event_id``."""
    return _dump({"type": "interruption", "interruption_event": {"event_id": event_id}})


def ping(event_id: int, ping_ms: int | None) -> str:
    """``ping_ms``: the round trip of the previous ping, None until one was answered.

    The key is always there: the Python SDK reads ``event["ping_ms"]`` without a default.
    """
    return _dump({"type": "ping", "ping_event": {"event_id": event_id, "ping_ms": ping_ms}})


def vad_score(score: float) -> str:
    return _dump({"type": "vad_score", "vad_score_event": {"vad_score": round(score, 3)}})


# Our error codes as ElevenLabs' error types (its client shows the type; ours is in "reason").
_ERROR_TYPES: Final = {
    "invalid_json": "invalid_message",
    "protocol_error": "invalid_message",
    "invalid_audio": "invalid_message",
    "text_too_long": "invalid_message",
    "payload_too_large": "invalid_message",
    "bad_request": "invalid_message",
    "invalid_request": "value_error",
    "unknown_voice": "override_error",
    "unauthorized": "value_error",
    "forbidden": "value_error",
    "not_found": "value_error",
}


def error_type_for(err: VoiceStreamError) -> str:
    return _ERROR_TYPES.get(err.code, "unknown")


def error(
    message: str,
    *,
    reason: str,
    close_code: int,
    error_type: str,
    details: Mapping[str, Any] | None = None,
) -> str:
    """An error; ``close_code`` is the close that follows (1011 for a failed turn, which does not
    end the conversation). ``reason`` is our own error code."""
    event: dict[str, Any] = {
        "code": close_code,
        "message": message,
        "error_type": error_type,
        "reason": reason,
    }
    if details:
        event["details"] = dict(details)
    return _dump({"type": "error", "error_event": event})


def error_for(err: VoiceStreamError, *, close_code: int, error_type: str | None = None) -> str:
    """``err`` as an error message; the type follows from its code unless given."""
    return error(
        err.message,
        reason=err.code,
        close_code=close_code,
        error_type=error_type or error_type_for(err),
        details=err.details,
    )
