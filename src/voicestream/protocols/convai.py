"""voicestream's conversation protocol (``/v1/convai/stream`` and the WebRTC data channel).

Client → server: binary audio in the input format, and JSON control messages::

    {"type": "config", "input_format": "pcm_16000", "output_format": "pcm_16000",
     "end_user_id": "…", "vad_threshold": 0.5, "vad_min_silence_ms": 400,
     "vad_min_speech_ms": 100, "silence_timeout_s": 15}
                                     # all optional; only as the first message
    {"type": "text", "text": "…"}    # a typed user turn (the widget's text fallback)
    {"type": "dtmf", "digits": "12#"}
    {"type": "pong", "event_id": 3}  # answer to a ping (optional)
    {"type": "end"}                  # hang up

``end_user_id`` (in ``config``, or on opening) names the end user whose long-term memory the
agent reads and writes. It is believed only on a connection opened with an API key; a ticket's
end user cannot be changed, and anyone else's conversation stays anonymous (no memory): the
claim is ignored, not refused, so a public widget keeps working.

Server → client: binary agent audio and JSON events — ``session`` (first, with
``long_term_memory``: whether the conversation has a believed end user), ``user_transcript``
``{text, final}``, ``agent_response`` ``{text}``, ``interruption``, ``agent_response_correction``
``{original, corrected}`` (what was heard of an answer a barge-in cut short), ``turn``
``{speaker, state}``, ``ping`` ``{event_id}``, ``session_end`` ``{reason}`` (then a normal
close), ``error`` ``{code, message}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError, TextTooLong, VoiceStreamError
from .json_fields import Fault, FieldReader
from .json_messages import load_object

__all__ = ["Config", "Dtmf", "End", "Pong", "UserText", "dump", "parse_client_message"]

_DTMF = re.compile(r"^[0-9*#A-Da-d]{1,32}$")
_MAX_TEXT = 2000


@dataclass(frozen=True, slots=True)
class Config:
    input_format: str | None = None
    output_format: str | None = None
    end_user_id: str | None = None
    vad_threshold: float | None = None
    vad_min_silence_ms: int | None = None
    vad_min_speech_ms: int | None = None
    silence_timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class UserText:
    text: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digits: str


@dataclass(frozen=True, slots=True)
class Pong:
    event_id: int | None


@dataclass(frozen=True, slots=True)
class End:
    pass


ClientMessage = Config | UserText | Dtmf | Pong | End


def _complaint(fault: Fault) -> VoiceStreamError:
    field = f'"{fault.path}"'
    if fault.expected in ("a number", "an integer"):
        return ProtocolError(
            f"{field} must be {fault.expected} from {fault.low:g} to {fault.high:g}"
        )
    if fault.expected == "a string":
        return ProtocolError(
            f"{field} must be a non-empty string of at most {fault.high} characters"
        )
    return ProtocolError(f"{field} must be {fault.expected}")


_fields = FieldReader(_complaint, text_limit=200, empty_text=False)


def parse_client_message(raw: str) -> ClientMessage:
    """Parse one JSON control message.

    Raises:
        InvalidJSON, ProtocolError, TextTooLong: with a message fit to show the client.
    """
    msg = load_object(raw)
    match msg.get("type"):
        case "config":
            return Config(
                _fields.opt_text(msg, "input_format"),
                _fields.opt_text(msg, "output_format"),
                _fields.opt_text(msg, "end_user_id"),
                _fields.opt_number(msg, "vad_threshold", 0.05, 0.95),
                _fields.opt_integer(msg, "vad_min_silence_ms", 32, 10_000),
                _fields.opt_integer(msg, "vad_min_speech_ms", 32, 2000),
                _fields.opt_number(msg, "silence_timeout_s", 0, 3600),
            )
        case "text":
            text = msg.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ProtocolError('"text" must be a non-empty string')
            if len(text) > _MAX_TEXT:
                raise TextTooLong(f"text has {len(text)} characters; the limit is {_MAX_TEXT}")
            return UserText(text)
        case "dtmf":
            digits = msg.get("digits")
            if not isinstance(digits, str) or not _DTMF.match(digits):
                raise ProtocolError('"digits" must be 1-32 of 0-9, *, #, A-D')
            return Dtmf(digits)
        case "pong":
            event_id = msg.get("event_id")
            return Pong(event_id if isinstance(event_id, int) else None)
        case "end":
            return End()
        case other:
            raise ProtocolError(
                f"unknown message type {other!r}; expected config, text, dtmf, pong or end"
            )


def dump(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
