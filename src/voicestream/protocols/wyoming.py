"""Wyoming (Home Assistant's voice protocol), sans-I/O.

Every event on the wire is one UTF-8 JSON header line, then optional extra JSON, then an
optional binary payload::

    {"type": "audio-chunk", "version": "1.10.2", "data_length": 41, "payload_length": 2048}\\n
    {"rate": 16000, "width": 2, "channels": 1}<2048 bytes of PCM>

``data`` may also sit in the header itself; the extra JSON is merged over it (what the reference
library does). ``FrameParser`` turns a byte stream into ``Event`` objects one at a time, with a
bound on every part, so a peer cannot make us buffer without limit; ``encode`` writes an event
the way the reference library does (data after the header, never inside it).

``parse_request`` gives the events a server receives a typed shape (``Synthesize``,
``AudioChunk``…); types it does not know come back as ``Unsupported`` so the transport can
answer with an ``error`` event and carry on. The server-side events (``info``, ``audio-*``,
``transcript*``, ``synthesize-stopped``, ``pong``, ``error``) are built by the small functions at
the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import BadRequest, PayloadTooLarge, ProtocolError, ValidationFailed, VoiceStreamError
from .json_fields import Fault, FieldReader
from .json_messages import load_object

__all__ = [
    "MAX_DATA_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_PAYLOAD_BYTES",
    "PROTOCOL_VERSION",
    "AsrModel",
    "AsrProgram",
    "Attribution",
    "AudioChunk",
    "AudioStart",
    "AudioStop",
    "Describe",
    "Event",
    "FrameParser",
    "IdleTimeout",
    "Ping",
    "Request",
    "SelectProgram",
    "Synthesize",
    "SynthesizeChunk",
    "SynthesizeStart",
    "SynthesizeStop",
    "Transcribe",
    "TtsProgram",
    "TtsVoice",
    "Unsupported",
    "VoiceRequest",
    "audio_chunk",
    "audio_start",
    "audio_stop",
    "decode",
    "encode",
    "error",
    "info",
    "parse_request",
    "pong",
    "synthesize_stopped",
    "transcript",
    "transcript_chunk",
    "transcript_start",
    "transcript_stop",
]

# The release of rhasspy/wyoming whose events (streaming TTS and ASR included) we speak.
PROTOCOL_VERSION: Final = "1.10.2"
# A header is a type, two lengths and perhaps a little inline data: 64 KiB is generous.
MAX_HEADER_BYTES: Final = 64 * 1024
MAX_DATA_BYTES: Final = 1024 * 1024
# Clients send audio in chunks of about 1024 samples (2 KiB); 1 MiB is half a minute of 16 kHz.
MAX_PAYLOAD_BYTES: Final = 1024 * 1024
_MAX_TYPE_CHARS: Final = 100
_MAX_NAME_CHARS: Final = 200
_MAX_RATE: Final = 192_000
_MAX_WIDTH: Final = 4
_MAX_CHANNELS: Final = 32


@dataclass(frozen=True, slots=True)
class Event:
    """One Wyoming event: its type, its JSON data and its binary payload (possibly empty)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""


class IdleTimeout(BadRequest):
    """No whole event arrived within the connection's idle timeout."""

    code = "request_timeout"  # the code HTTP's 408 carries, for the same fault
    http_status = 408


# ---- framing -------------------------------------------------------------------------------


class FrameParser:
    """Incremental parser: ``receive_data`` bytes as they arrive, pull events with ``next_event``.

    Broken framing raises (InvalidJSON, ProtocolError or PayloadTooLarge) and leaves the parser
    failed: a byte stream cannot be resynchronised once a length is wrong, so every later call
    raises the same error.
    """

    __slots__ = (
        "_buf",
        "_data_len",
        "_eof",
        "_failed",
        "_header",
        "_max_data",
        "_max_header",
        "_max_payload",
        "_payload_len",
        "_scanned",
    )

    def __init__(
        self,
        *,
        max_header: int = MAX_HEADER_BYTES,
        max_data: int = MAX_DATA_BYTES,
        max_payload: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        self._max_header = max_header
        self._max_data = max_data
        self._max_payload = max_payload
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already searched for the header's newline
        self._header: dict[str, Any] | None = None  # parsed header awaiting its data/payload
        self._data_len = 0
        self._payload_len = 0
        self._eof = False
        self._failed: Exception | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a returned event."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer. Raises the stored error if the parser has failed."""
        self._check()
        if self._eof:
            raise RuntimeError("receive_data after receive_eof")
        self._buf += data

    def receive_eof(self) -> None:
        """The peer has finished sending; ``next_event`` then raises on a truncated event."""
        self._eof = True

    def next_event(self) -> Event | None:
        """The next complete event, or None until more bytes arrive (or at a clean EOF).

        Raises:
            InvalidJSON: a header or data section that is not a JSON object.
            ProtocolError: a missing or bad ``type``, a bad length, or the stream ends
                inside an event.
            PayloadTooLarge: a header line, data section or payload over its limit.
        """
        self._check()
        try:
            return self._next()
        except Exception as exc:
            self._failed = exc
            raise

    def feed(self, data: bytes) -> list[Event]:
        """``receive_data`` then every complete event (for callers that need no partial result)."""
        self.receive_data(data)
        events = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events

    def _check(self) -> None:
        if self._failed is not None:
            raise self._failed

    def _next(self) -> Event | None:
        if self._header is None and not self._read_header():
            return None
        assert self._header is not None
        need = self._data_len + self._payload_len
        if len(self._buf) < need:
            if self._eof:
                raise ProtocolError(
                    f"stream ended inside a {self._header['type']!r} event: "
                    f"{len(self._buf)} of {need} bytes of data and payload arrived"
                )
            return None
        data = self._header["data"]
        if self._data_len:
            extra = load_object(bytes(self._buf[: self._data_len]))
            data = {**data, **extra}
        payload = bytes(self._buf[self._data_len : need])
        del self._buf[:need]
        event = Event(self._header["type"], data, payload)
        self._header = None
        return event

    def _read_header(self) -> bool:
        end = self._buf.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(self._buf)
            if len(self._buf) > self._max_header:
                raise PayloadTooLarge(
                    f"event header passed {self._max_header} bytes without a newline"
                )
            if self._eof and self._buf:
                raise ProtocolError("stream ended inside an event header")
            return False
        if end > self._max_header:
            raise PayloadTooLarge(f"event header of {end} bytes exceeds {self._max_header}")
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        self._scanned = 0
        header = load_object(line)
        self._data_len = _length(header, "data_length", self._max_data)
        self._payload_len = _length(header, "payload_length", self._max_payload)
        self._header = {"type": _event_type(header), "data": _inline_data(header)}
        return True


def _event_type(header: dict[str, Any]) -> str:
    value = header.get("type")
    if not isinstance(value, str) or not value or len(value) > _MAX_TYPE_CHARS:
        raise ProtocolError(
            f'event header needs "type", a string of 1-{_MAX_TYPE_CHARS} characters'
        )
    return value


def _inline_data(header: dict[str, Any]) -> dict[str, Any]:
    value = header.get("data")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError('"data" in an event header must be an object')
    return value


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f'"{key}" must be a non-negative integer, got {value!r}')
    if value > limit:
        raise PayloadTooLarge(f'"{key}" of {value} bytes exceeds the limit of {limit}')
    return value


def encode(event: Event) -> bytes:
    """The event on the wire, laid out as the reference library writes it."""
    header: dict[str, Any] = {"type": event.type, "version": PROTOCOL_VERSION}
    data = b""
    if event.data:
        data = json.dumps(event.data, ensure_ascii=False).encode()
        header["data_length"] = len(data)
    if event.payload:
        header["payload_length"] = len(event.payload)
    line = json.dumps(header, ensure_ascii=False).encode() + b"\n"
    return line + data + event.payload


def decode(raw: bytes) -> list[Event]:
    """Every event in ``raw``, which must end on an event boundary."""
    parser = FrameParser()
    parser.receive_data(raw)
    parser.receive_eof()
    events = []
    while (event := parser.next_event()) is not None:
        events.append(event)
    return events


# ---- what a server receives ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VoiceRequest:
    """``voice`` of a synthesize request: a name from ``info``, or just a language."""

    name: str | None = None
    language: str | None = None
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class Describe:
    pass


@dataclass(frozen=True, slots=True)
class SelectProgram:
    name: str


@dataclass(frozen=True, slots=True)
class Synthesize:
    text: str
    voice: VoiceRequest | None = None


@dataclass(frozen=True, slots=True)
class SynthesizeStart:
    voice: VoiceRequest | None = None


@dataclass(frozen=True, slots=True)
class SynthesizeChunk:
    text: str


@dataclass(frozen=True, slots=True)
class SynthesizeStop:
    pass


@dataclass(frozen=True, slots=True)
class Transcribe:
    name: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class AudioStart:
    rate: int
    width: int  # bytes per sample
    channels: int
    timestamp: int | None = None  # milliseconds


@dataclass(frozen=True, slots=True)
class AudioChunk:
    rate: int
    width: int
    channels: int
    audio: bytes
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class AudioStop:
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Unsupported:
    """An event type a voice server does not take (another service's, or unknown)."""

    type: str


Request = (
    Describe
    | SelectProgram
    | Synthesize
    | SynthesizeStart
    | SynthesizeChunk
    | SynthesizeStop
    | Transcribe
    | AudioStart
    | AudioChunk
    | AudioStop
    | Ping
    | Unsupported
)


def parse_request(event: Event) -> Request:
    """The event as a typed request.

    Raises:
        ValidationFailed: a known event with a missing or wrongly typed field (the field is
            named in the message).
    """
    d = event.data
    match event.type:
        case "describe":
            return Describe()
        case "select-program":
            return SelectProgram(_fields.text(d, "name", where=event.type, limit=_MAX_NAME_CHARS))
        case "synthesize":
            _plain_text_only(d, event.type)
            return Synthesize(_fields.text(d, "text", where=event.type), _voice(d, event.type))
        case "synthesize-start":
            _plain_text_only(d, event.type)
            return SynthesizeStart(_voice(d, event.type))
        case "synthesize-chunk":
            return SynthesizeChunk(_fields.text(d, "text", where=event.type))
        case "synthesize-stop":
            return SynthesizeStop()
        case "transcribe":
            return Transcribe(_name(d, "name", event.type), _name(d, "language", event.type))
        case "audio-start":
            return AudioStart(*_audio_format(d, event.type), _timestamp(d, event.type))
        case "audio-chunk":
            rate, width, channels = _audio_format(d, event.type)
            return AudioChunk(rate, width, channels, event.payload, _timestamp(d, event.type))
        case "audio-stop":
            return AudioStop(_timestamp(d, event.type))
        case "ping":
            return Ping(_name(d, "text", event.type))
        case _:
            return Unsupported(event.type)


def _complaint(fault: Fault) -> VoiceStreamError:
    # Wyoming's error event has only text: name the event, then the field.
    field = f'{fault.where}: "{fault.key}"'
    match fault.problem, fault.expected:
        case "long", _:
            return ValidationFailed(f"{field} is longer than {fault.high} characters")
        case _, "an integer":
            return ValidationFailed(f"{field} must be an integer in {fault.low}..{fault.high}")
        case _:
            return ValidationFailed(f"{field} must be {fault.expected}")


_fields = FieldReader(_complaint)


def _name(d: dict[str, Any], key: str, where: str) -> str | None:
    return _fields.opt_text(d, key, where=where, limit=_MAX_NAME_CHARS)


def _audio_format(d: dict[str, Any], where: str) -> tuple[int, int, int]:
    return (
        _fields.integer(d, "rate", 1, _MAX_RATE, where=where),
        _fields.integer(d, "width", 1, _MAX_WIDTH, where=where),
        _fields.integer(d, "channels", 1, _MAX_CHANNELS, where=where),
    )


def _timestamp(d: dict[str, Any], where: str) -> int | None:
    return _fields.opt_integer(d, "timestamp", 0, 2**53, where=where)


def _voice(d: dict[str, Any], where: str) -> VoiceRequest | None:
    value = _fields.opt_obj(d, "voice", where=where)
    if value is None:
        return None
    voice = VoiceRequest(
        _name(value, "name", f"{where}.voice"),
        _name(value, "language", f"{where}.voice"),
        _name(value, "speaker", f"{where}.voice"),
    )
    return None if voice == VoiceRequest() else voice


def _plain_text_only(d: dict[str, Any], where: str) -> None:
    # Our engines would read SSML tags aloud; say so rather than speak markup.
    text_format = d.get("text_format")
    if text_format is not None and text_format != "text":
        raise ValidationFailed(f'{where}: only "text_format": "text" is supported')


# ---- what a server sends -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attribution:
    name: str
    url: str


@dataclass(frozen=True, slots=True)
class TtsVoice:
    name: str
    languages: tuple[str, ...]
    attribution: Attribution
    description: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class TtsProgram:
    name: str
    attribution: Attribution
    voices: tuple[TtsVoice, ...]
    description: str | None = None
    version: str | None = None
    supports_synthesize_streaming: bool = True


@dataclass(frozen=True, slots=True)
class AsrModel:
    name: str
    languages: tuple[str, ...]
    attribution: Attribution
    description: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class AsrProgram:
    name: str
    attribution: Attribution
    models: tuple[AsrModel, ...]
    description: str | None = None
    version: str | None = None
    supports_transcript_streaming: bool = True
    # True: the client decides where speech ends and sends audio-stop (Home Assistant runs
    # its own VAD then); we transcribe until audio-stop.
    requires_external_vad: bool = True


def _artifact(
    name: str, attribution: Attribution, description: str | None, version: str | None
) -> dict[str, Any]:
    return {
        "name": name,
        "attribution": {"name": attribution.name, "url": attribution.url},
        "installed": True,
        "description": description,
        "version": version,
    }


def info(asr: list[AsrProgram], tts: list[TtsProgram]) -> Event:
    """``info``: the answer to ``describe``; the other service families stay empty lists."""
    asr_data = [
        {
            **_artifact(p.name, p.attribution, p.description, p.version),
            "models": [
                {
                    **_artifact(m.name, m.attribution, m.description, m.version),
                    "languages": list(m.languages),
                }
                for m in p.models
            ],
            "supports_transcript_streaming": p.supports_transcript_streaming,
            "requires_external_vad": p.requires_external_vad,
        }
        for p in asr
    ]
    tts_data = [
        {
            **_artifact(p.name, p.attribution, p.description, p.version),
            "voices": [
                {
                    **_artifact(v.name, v.attribution, v.description, v.version),
                    "languages": list(v.languages),
                    "speakers": None,
                }
                for v in p.voices
            ],
            "supports_synthesize_streaming": p.supports_synthesize_streaming,
        }
        for p in tts
    ]
    return Event(
        "info",
        {
            "asr": asr_data,
            "tts": tts_data,
            "handle": [],
            "intent": [],
            "wake": [],
            "mic": [],
            "snd": [],
        },
    )


def audio_start(rate: int, width: int = 2, channels: int = 1) -> Event:
    return Event("audio-start", {"rate": rate, "width": width, "channels": channels})


def audio_chunk(pcm: bytes, rate: int, width: int = 2, channels: int = 1) -> Event:
    return Event("audio-chunk", {"rate": rate, "width": width, "channels": channels}, pcm)


def audio_stop() -> Event:
    return Event("audio-stop")


def transcript(text: str, language: str | None = None) -> Event:
    data: dict[str, Any] = {"text": text}
    if language is not None:
        data["language"] = language
    return Event("transcript", data)


def transcript_start(language: str | None = None) -> Event:
    return Event("transcript-start", {} if language is None else {"language": language})


def transcript_chunk(text: str) -> Event:
    return Event("transcript-chunk", {"text": text})


def transcript_stop() -> Event:
    return Event("transcript-stop")


def synthesize_stopped() -> Event:
    return Event("synthesize-stopped")


def pong(text: str | None = None) -> Event:
    return Event("pong", {"text": text})


def error(text: str, code: str | None = None) -> Event:
    data: dict[str, Any] = {"text": text}
    if code is not None:
        data["code"] = code
    return Event("error", data)
