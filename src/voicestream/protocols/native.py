"""voicestream's own streaming protocol (``/v1/tts/stream`` and ``/v1/stt/stream``).

Client → server, JSON text messages::

    {"type": "text", "text": "Hello, "}   # TTS only; any number of times
    {"type": "flush"}                     # TTS only: synthesize what is buffered now
    {"type": "end"}                       # no more input

Server → client: binary audio (TTS) and JSON events::

    {"type": "alignment", "chunk": 0, "text", "offset", "audio_start", "chars", "char_start_ms",
     "char_duration_ms"}                                         # TTS; times from stream start
    {"type": "partial", "text"}                                  # STT
    {"type": "final", "text", "words": [{"text","start","end"}], "start", "end"}   # STT
    {"type": "done", ...}                                        # then a normal close (1000)
    {"type": "error", "code", "message"}                         # then a close code saying why
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import EmptyText, ProtocolError, TextTooLong, VoiceStreamError
from .json_fields import Fault, FieldReader
from .json_messages import load_object

__all__ = [
    "End",
    "Flush",
    "Text",
    "alignment_event",
    "check_total_text",
    "done_event",
    "error_event",
    "final_event",
    "parse_stt_message",
    "parse_tts_message",
    "partial_event",
    "require_text",
]


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Flush:
    pass


@dataclass(frozen=True, slots=True)
class End:
    pass


def _complaint(fault: Fault) -> VoiceStreamError:
    if fault.problem == "long":
        return TextTooLong(
            f"text message has {len(str(fault.value))} characters; the limit is {fault.high}"
        )
    return ProtocolError(f'"{fault.path}" must be {fault.expected}')


_fields = FieldReader(_complaint)


def parse_tts_message(raw: str, *, max_text_chars: int) -> Text | Flush | End:
    """Parse one client message of the TTS stream.

    Raises:
        InvalidJSON, ProtocolError, TextTooLong: with a message fit to show the client.
    """
    msg = load_object(raw)
    match msg.get("type"):
        case "text":
            return Text(_fields.text(msg, "text", limit=max_text_chars))
        case "flush":
            return Flush()
        case "end":
            return End()
        case other:
            raise ProtocolError(f"unknown message type {other!r}; expected text, flush or end")


def parse_stt_message(raw: str) -> End:
    msg = load_object(raw)
    if msg.get("type") != "end":
        raise ProtocolError(f"unknown message type {msg.get('type')!r}; expected end")
    return End()


def check_total_text(total_chars: int, limit: int) -> None:
    if total_chars > limit:
        raise TextTooLong(f"the stream's text reached {total_chars} characters; limit {limit}")


def require_text(total_chars: int) -> None:
    if total_chars == 0:
        raise EmptyText("no text was sent before end")


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def alignment_event(
    *,
    chunk: int,
    text: str,
    offset: int,
    audio_start: float,
    chars: Sequence[str],
    char_start_ms: Sequence[int],
    char_duration_ms: Sequence[int],
) -> str:
    return _dump(
        {
            "type": "alignment",
            "chunk": chunk,
            "text": text,
            "offset": offset,
            "audio_start": round(audio_start, 4),
            "chars": list(chars),
            "char_start_ms": list(char_start_ms),
            "char_duration_ms": list(char_duration_ms),
        }
    )


def partial_event(text: str) -> str:
    return _dump({"type": "partial", "text": text})


def final_event(
    text: str, words: Sequence[tuple[str, float, float]], start: float, end: float
) -> str:
    return _dump(
        {
            "type": "final",
            "text": text,
            "words": [{"text": w, "start": round(s, 3), "end": round(e, 3)} for w, s, e in words],
            "start": round(start, 3),
            "end": round(end, 3),
        }
    )


def done_event(**stats: Any) -> str:
    return _dump({"type": "done", **stats})


def error_event(err: VoiceStreamError) -> str:
    return _dump({"type": "error", "code": err.code, "message": err.message})
