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
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidAudio, ProtocolError
from .call_media import (
    CarrierStream,
    StreamOrder,
    b64_audio,
    dtmf_digits,
    field_obj,
    field_str,
    opt_count,
    opt_str,
    str_map,
)
from .json_messages import load_object

__all__ = [
    "ENCODINGS",
    "FRAME_BYTES",
    "Clear",
    "Connected",
    "Dtmf",
    "Event",
    "Mark",
    "MarkOut",
    "Media",
    "MediaOut",
    "Start",
    "Stop",
    "StreamError",
    "TelnyxStream",
    "parse",
    "serialize",
]

FRAME_BYTES = 160  # 20 ms of 8 kHz G.711
RATE = 8000
# Each encoding's silence: the code for a zero sample.
ENCODINGS = {"PCMU": b"\xff", "PCMA": b"\xd5"}
_MAX_PAYLOAD = 64 * 1024  # base64 characters; Telnyx sends 20 ms (216 characters)


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
class Media:
    stream_id: str | None
    payload: bytes  # G.711 at 8 kHz, in the start's encoding
    track: str | None = None
    chunk: int | None = None
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_id: str | None
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    stream_id: str | None
    name: str


@dataclass(frozen=True, slots=True)
class StreamError:
    """Telnyx reports a problem with the stream (a bad frame of ours, for instance)."""

    stream_id: str | None
    code: str
    title: str
    detail: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_id: str | None
    call_control_id: str | None = None


Event = Connected | Start | Media | Dtmf | Mark | StreamError | Stop


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
    fmt = start.get("media_format")
    if fmt is None:
        return "PCMU"  # what Telnyx streams when nothing else was negotiated
    if not isinstance(fmt, dict):
        raise ProtocolError('"start.media_format" must be an object')
    encoding, rate, channels = fmt.get("encoding"), fmt.get("sample_rate"), fmt.get("channels", 1)
    name = encoding.upper() if isinstance(encoding, str) else encoding
    if name not in ENCODINGS or rate != RATE or channels != 1:
        raise InvalidAudio(
            f"unsupported media format {encoding!r} at {rate!r} Hz, {channels!r} channels; "
            f"only PCMU or PCMA at {RATE} Hz mono"
        )
    return str(name)


def _start(msg: dict[str, Any]) -> Start:
    start = field_obj(msg, "start")
    return Start(
        stream_id=field_str(msg, "stream_id", where="start"),
        call_control_id=field_str(start, "call_control_id", where="start", limit=500),
        encoding=_encoding(start),
        caller=opt_str(start, "from", where="start"),
        callee=opt_str(start, "to", where="start"),
        custom_parameters=str_map(start.get("custom_parameters"), where="start.custom_parameters"),
    )


def _media(msg: dict[str, Any], sid: str | None) -> Media:
    media = field_obj(msg, "media")
    return Media(
        stream_id=sid,
        payload=b64_audio(media, "payload", where="media", max_chars=_MAX_PAYLOAD),
        track=opt_str(media, "track", where="media"),
        chunk=opt_count(media, "chunk", where="media"),
        timestamp=opt_count(media, "timestamp", where="media"),
    )


def _error(msg: dict[str, Any], sid: str | None) -> StreamError:
    payload = field_obj(msg, "payload", where="error")
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
        case "media" | "dtmf" | "mark" | "error" | "stop" as name:
            # Only "start" must name the stream; a later frame that does is checked against it
            # (see TelnyxStream).
            return _in_stream(name, msg, opt_str(msg, "stream_id", where=name))
        case None:
            raise ProtocolError('message has no "event"')
        case other:
            raise ProtocolError(f"unknown event {str(other)[:40]!r}")


def _in_stream(name: str, msg: dict[str, Any], sid: str | None) -> Event:
    match name:
        case "media":
            return _media(msg, sid)
        case "dtmf":
            return Dtmf(sid, dtmf_digits(field_obj(msg, "dtmf").get("digit"), where="dtmf.digit"))
        case "mark":
            return Mark(sid, field_str(field_obj(msg, "mark"), "name", where="mark"))
        case "error":
            return _error(msg, sid)
    stop = msg.get("stop")
    call = None
    if isinstance(stop, dict):
        call = opt_str(stop, "call_control_id", where="stop", limit=500)
    return Stop(sid, call)


# ---- serializing ---------------------------------------------------------------------------


def serialize(command: Command) -> str:
    body: dict[str, Any]
    match command:
        case MediaOut(payload):
            body = {"event": "media", "media": {"payload": base64.b64encode(payload).decode()}}
        case MarkOut(name):
            body = {"event": "mark", "mark": {"name": name}}
        case Clear():
            body = {"event": "clear"}
    return json.dumps(body, separators=(",", ":"))


# ---- per-call state ------------------------------------------------------------------------


class TelnyxStream(CarrierStream):
    """One call's protocol state.

    ``receive`` checks ordering (nothing but ``connected`` before ``start``, one stream per
    socket, nothing after ``stop``, a frame's ``stream_id`` when it has one); ``audio`` cuts agent
    G.711 into 20 ms ``media`` frames; ``mark`` and ``clear`` keep the marks Telnyx has not yet
    echoed.
    """

    __slots__ = ("_order", "start")

    def __init__(self) -> None:
        super().__init__()
        self.start: Start | None = None
        self._order = StreamOrder("stream_id")

    @property
    def stopped(self) -> bool:
        return self._order.stopped

    def receive(self, raw: str | bytes) -> Event:
        event = parse(raw)
        match event:
            case Connected():
                self._order.connected()
            case Start():
                self._order.start(event.stream_id)
                self.start = event
                self._frame_audio(FRAME_BYTES, ENCODINGS[event.encoding])
            case _:
                self._order.in_stream(_name(event), event.stream_id)
                if isinstance(event, Mark):
                    self._marks.echoed(event.name)
                elif isinstance(event, Stop):
                    self._order.stopped = True
        return event

    def audio(self, g711: bytes) -> list[str]:
        """Agent audio (G.711 8 kHz in the call's encoding, any length) → 20 ms frames."""
        return [serialize(MediaOut(f)) for f in self._frames(g711)]

    def flush_audio(self) -> list[str]:
        """The last partial frame, padded with the encoding's silence."""
        return [serialize(MediaOut(f)) for f in self._last_frame()]

    def mark(self) -> str:
        """A mark after the audio sent so far; Telnyx echoes it once that audio has played."""
        return serialize(MarkOut(self._marks.new()))

    def clear(self) -> str:
        """Barge-in: Telnyx drops its queued audio (and echoes the pending marks)."""
        self._clear_audio()
        return serialize(Clear())


def _name(event: Event) -> str:
    return type(event).__name__.lower()
