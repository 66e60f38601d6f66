"""Telnyx Media Streaming (bidirectional, RTP mode), sans-I/O.

Telnyx → server, JSON text frames::

    {"event": "connected", "version": "1.0.0"}
    {"event": "start", "sequence_number": "1", "stream_id": "32DE0DEA-…",
     "start": {"user_id": "…", "call_control_id": "v3:…", "call_session_id": "…",
               "from": "+13122010094", "to": "+13122123456", "client_state": "…",
               "custom_parameters": {…},
               "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}}
    {"event": "media", "sequence_number": "4", "stream_id": "…",
     "media": {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": "<base64 RTP>"}}
    {"event": "dtmf", "stream_id": "…", "dtmf": {"digit": "1"}}
    {"event": "mark", "stream_id": "…", "mark": {"name": "utt-1"}}   # our mark, played out
    {"event": "error", "stream_id": "…", "payload": {"code": 100002, "title": "…", "detail": "…"}}
    {"event": "stop", "stream_id": "…", "stop": {"user_id": "…", "call_control_id": "v3:…"}}

The stream id is top-level (``start.stream_id`` does not exist). Media is the RTP payload without
its header: G.711 μ-law (PCMU) or A-law (PCMA) at 8 kHz, as ``start.media_format`` says.
Server → Telnyx: ``{"event": "media", "media": {"payload"}}`` in the same encoding,
``{"event": "mark", "mark": {"name"}}`` and ``{"event": "clear"}`` (no stream id on any).
``TelnyxStream`` is the carrier base (``call_media``) configured for Telnyx.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidAudio
from .call_media import (
    FIELDS,
    CallEvent,
    CallNotice,
    CallStart,
    JsonCarrier,
    JsonCarrierStream,
    StreamFrame,
)
from .json_messages import load_object

__all__ = [
    "ENCODINGS",
    "FRAME_BYTES",
    "TELNYX",
    "Clear",
    "Connected",
    "Event",
    "MarkOut",
    "MediaOut",
    "Start",
    "StreamError",
    "TelnyxStream",
    "parse",
    "serialize",
]

FRAME_BYTES = 160  # 20 ms of 8 kHz G.711
RATE = 8000
# Each encoding's silence: the code for a zero sample.
ENCODINGS = {"PCMU": b"\xff", "PCMA": b"\xd5"}
WIRE_FORMATS = {"PCMU": "ulaw_8000", "PCMA": "alaw_8000"}  # as media.formats names them
# Only "start" must name the stream; a later frame that does is checked against it.
TELNYX = JsonCarrier(
    name="Telnyx media streaming",
    sid_field="stream_id",
    sid_everywhere=False,
    call_field="call_control_id",
    call_limit=500,
)


@dataclass(frozen=True, slots=True)
class Connected:
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_id: str
    call_control_id: str
    encoding: str  # "PCMU" or "PCMA"
    caller: str | None = None  # start.from
    callee: str | None = None  # start.to
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamError:
    """Telnyx reports a problem with the stream (a bad frame of ours, for instance)."""

    stream_id: str | None
    code: str
    title: str
    detail: str


# The frames of the started stream (media, dtmf, mark, stop) are the carrier base's.
Event = Connected | Start | StreamError | StreamFrame


@dataclass(frozen=True, slots=True)
class MediaOut:
    payload: bytes


@dataclass(frozen=True, slots=True)
class MarkOut:
    name: str


@dataclass(frozen=True, slots=True)
class Clear:
    pass


Command = MediaOut | MarkOut | Clear


# ---- parsing -------------------------------------------------------------------------------


def _encoding(start: dict[str, Any]) -> str:
    fmt = FIELDS.opt_obj(start, "media_format", where="start")
    if fmt is None:
        return "PCMU"  # what Telnyx streams when nothing else was negotiated
    encoding, rate, channels = fmt.get("encoding"), fmt.get("sample_rate"), fmt.get("channels", 1)
    name = encoding.upper() if isinstance(encoding, str) else encoding
    if name not in ENCODINGS or rate != RATE or channels != 1:
        raise InvalidAudio(
            f"unsupported media format {encoding!r} at {rate!r} Hz, {channels!r} channels; "
            f"only PCMU or PCMA at {RATE} Hz mono"
        )
    return str(name)


def _start(msg: dict[str, Any]) -> Start:
    start = FIELDS.obj(msg, "start")
    return Start(
        stream_id=FIELDS.text(msg, "stream_id", where="start"),
        call_control_id=FIELDS.text(start, "call_control_id", where="start", limit=500),
        encoding=_encoding(start),
        caller=FIELDS.opt_text(start, "from", where="start"),
        callee=FIELDS.opt_text(start, "to", where="start"),
        custom_parameters=FIELDS.str_map(start, "custom_parameters", where="start"),
    )


def _error(msg: dict[str, Any]) -> StreamError:
    sid = TELNYX.stream_id(msg, where="error")
    payload = FIELDS.obj(msg, "payload", where="error")
    return StreamError(
        sid,
        str(payload.get("code", ""))[:40],
        str(payload.get("title", ""))[:200],
        str(payload.get("detail", ""))[:500],
    )


def parse(raw: str | bytes) -> Event:
    """Parse one frame from Telnyx.

    Raises:
        InvalidJSON: not JSON (a truncated frame, for instance).
        ProtocolError: not a Telnyx event, or a required field missing or mistyped.
        InvalidAudio: a payload that is not base64, or a media format other than 8 kHz G.711.
    """
    msg = load_object(raw)
    match msg.get("event"):
        case "connected":
            return Connected(str(msg.get("version", ""))[:40])
        case "start":
            return _start(msg)
        case "error":
            return _error(msg)
    return TELNYX.frame(msg)


# ---- serializing ---------------------------------------------------------------------------


def serialize(command: Command) -> str:
    match command:
        case MediaOut(payload):
            return TELNYX.media_out(None, payload)
        case MarkOut(name):
            return TELNYX.mark_out(None, name)
        case Clear():
            return TELNYX.clear_out(None)


# ---- per-call state ------------------------------------------------------------------------


class TelnyxStream(JsonCarrierStream[Event, Start]):
    """One Telnyx call's protocol state: the carrier base's ordering, framing and marks, with
    G.711 (PCMU or PCMA, as the start says) both ways and no stream id on frames going back."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(TELNYX, parse)

    def _own_event(self, event: Event) -> CallEvent | None:
        match event:
            case Connected():
                self._connected()
            case Start(stream_id=sid, encoding=encoding, custom_parameters=params):
                self._begin(event, sid, ENCODINGS[encoding])
                return CallStart(WIRE_FORMATS[encoding], params)
            case StreamError(stream_id=sid, code=code, title=title, detail=detail):
                self._in_stream("error", sid)
                # Telnyx reports it and keeps the call up: a note for the operator.
                return CallNotice(f"Telnyx stream error {code}: {title} ({detail})")
        return None
