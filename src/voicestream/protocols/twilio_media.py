"""Twilio Media Streams (bidirectional ``<Connect><Stream>``), sans-I/O.

Twilio → server, JSON text frames::

    {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    {"event": "start", "sequenceNumber": "1", "streamSid": "MZ…",
     "start": {"streamSid": "MZ…", "accountSid": "AC…", "callSid": "CA…", "tracks": ["inbound"],
               "customParameters": {…},
               "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    {"event": "media", "streamSid": "MZ…", "media": {"track": "inbound", "chunk": "1",
     "timestamp": "20", "payload": "<base64 μ-law>"}}
    {"event": "dtmf", "streamSid": "MZ…", "dtmf": {"track": "inbound_track", "digit": "1"}}
    {"event": "mark", "streamSid": "MZ…", "mark": {"name": "utt-1"}}  # our mark, played out
    {"event": "stop", "streamSid": "MZ…", "stop": {"accountSid": "AC…", "callSid": "CA…"}}

Server → Twilio: ``media`` (``{"payload"}`` only), ``mark`` and ``clear``. ``parse`` turns one
frame into a typed event; ``TwilioStream`` holds the per-call state (stream id, 20 ms framing
of outgoing audio, marks awaiting their echo).
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
    "TwilioStream",
    "parse",
    "serialize",
]

FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law
ULAW_SILENCE = b"\xff"
_ENCODING = "audio/x-mulaw"
_RATE = 8000
_MAX_PAYLOAD = 64 * 1024  # base64 characters; Twilio sends 20 ms (216 characters)


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Media:
    stream_sid: str
    payload: bytes  # μ-law 8 kHz
    track: str | None = None
    chunk: int | None = None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_sid: str
    call_sid: str | None = None


Event = Connected | Start | Media | Dtmf | Mark | Stop


@dataclass(frozen=True, slots=True)
class MediaOut:
    stream_sid: str
    payload: bytes  # μ-law 8 kHz


@dataclass(frozen=True, slots=True)
class MarkOut:
    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class Clear:
    stream_sid: str


Command = MediaOut | MarkOut | Clear


# ---- parsing -------------------------------------------------------------------------------


def _start(msg: dict[str, Any]) -> Start:
    start = field_obj(msg, "start")
    sid = field_str(start, "streamSid", where="start")
    top = msg.get("streamSid")
    if top is not None and top != sid:
        raise ProtocolError('"streamSid" differs from "start.streamSid"')
    fmt = start.get("mediaFormat")
    if fmt is not None:
        if not isinstance(fmt, dict):
            raise ProtocolError('"start.mediaFormat" must be an object')
        encoding, rate = fmt.get("encoding"), fmt.get("sampleRate")
        channels = fmt.get("channels", 1)
        if encoding != _ENCODING or rate != _RATE or channels != 1:
            raise InvalidAudio(
                f"unsupported media format {encoding!r} at {rate!r} Hz, {channels!r} channels; "
                f"only {_ENCODING} at {_RATE} Hz mono"
            )
    tracks = start.get("tracks", ["inbound"])
    if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
        raise ProtocolError('"start.tracks" must be a list of strings')
    return Start(
        stream_sid=sid,
        call_sid=opt_str(start, "callSid", where="start") or "",
        account_sid=opt_str(start, "accountSid", where="start") or "",
        tracks=tuple(tracks),
        custom_parameters=str_map(start.get("customParameters"), where="start.customParameters"),
    )


def _media(msg: dict[str, Any]) -> Media:
    media = field_obj(msg, "media")
    return Media(
        stream_sid=field_str(msg, "streamSid", where="media"),
        payload=b64_audio(media, "payload", where="media", max_chars=_MAX_PAYLOAD),
        track=opt_str(media, "track", where="media"),
        chunk=opt_count(media, "chunk", where="media"),
        timestamp_ms=opt_count(media, "timestamp", where="media"),
    )


def parse(raw: str | bytes) -> Event:
    """Parse one frame from Twilio.

    Raises:
        InvalidJSON: not JSON (a truncated frame, for instance).
        ProtocolError: not a Twilio event, or a required field missing or mistyped.
        InvalidAudio: a payload that is not base64, or a media format other than 8 kHz μ-law.
    """
    msg = load_object(raw)
    match msg.get("event"):
        case "connected":
            return Connected(str(msg.get("protocol", "")), str(msg.get("version", "")))
        case "start":
            return _start(msg)
        case "media":
            return _media(msg)
        case "dtmf":
            digit = dtmf_digits(field_obj(msg, "dtmf").get("digit"), where="dtmf.digit")
            return Dtmf(field_str(msg, "streamSid", where="dtmf"), digit)
        case "mark":
            name = field_str(field_obj(msg, "mark"), "name", where="mark")
            return Mark(field_str(msg, "streamSid", where="mark"), name)
        case "stop":
            stop = msg.get("stop")
            call = opt_str(stop, "callSid", where="stop") if isinstance(stop, dict) else None
            return Stop(field_str(msg, "streamSid", where="stop"), call)
        case None:
            raise ProtocolError('message has no "event"')
        case other:
            raise ProtocolError(f"unknown event {str(other)[:40]!r}")


# ---- serializing ---------------------------------------------------------------------------


def serialize(command: Command) -> str:
    body: dict[str, Any]
    match command:
        case MediaOut(sid, payload):
            body = {
                "event": "media",
                "streamSid": sid,
                "media": {"payload": base64.b64encode(payload).decode("ascii")},
            }
        case MarkOut(sid, name):
            body = {"event": "mark", "streamSid": sid, "mark": {"name": name}}
        case Clear(sid):
            body = {"event": "clear", "streamSid": sid}
    return json.dumps(body, separators=(",", ":"))


# ---- per-call state ------------------------------------------------------------------------


class TwilioStream(CarrierStream):
    """One call's protocol state.

    ``receive`` checks ordering (nothing but ``connected`` before ``start``, one stream per
    socket); ``audio`` cuts agent μ-law into 20 ms ``media`` frames; ``mark`` and ``clear``
    keep the set of marks Twilio has not yet echoed (it echoes them when the audio before them
    has played, and at once on ``clear``).
    """

    __slots__ = ("_order", "start")

    def __init__(self) -> None:
        super().__init__()
        self.start: Start | None = None
        self._order = StreamOrder("streamSid")

    @property
    def stream_sid(self) -> str:
        if self.start is None:
            raise ProtocolError("no stream has started")
        return self.start.stream_sid

    @property
    def stopped(self) -> bool:
        return self._order.stopped

    def receive(self, raw: str | bytes) -> Event:
        event = parse(raw)
        match event:
            case Connected():
                self._order.connected()
            case Start():
                self._order.start(event.stream_sid)
                self.start = event
                self._frame_audio(FRAME_BYTES, ULAW_SILENCE)
            case _:
                self._order.in_stream(_name(event), event.stream_sid)
                if isinstance(event, Mark):
                    self._marks.echoed(event.name)
                elif isinstance(event, Stop):
                    self._order.stopped = True
        return event

    def audio(self, ulaw: bytes) -> list[str]:
        """Agent audio (μ-law 8 kHz, any length) → whole 20 ms ``media`` frames."""
        return [serialize(MediaOut(self.stream_sid, f)) for f in self._frames(ulaw)]

    def flush_audio(self) -> list[str]:
        """The last partial frame, padded with μ-law silence."""
        return [serialize(MediaOut(self.stream_sid, f)) for f in self._last_frame()]

    def mark(self) -> str:
        """A mark after the audio sent so far; Twilio echoes it once that audio has played."""
        return serialize(MarkOut(self.stream_sid, self._marks.new()))

    def clear(self) -> str:
        """Barge-in: Twilio drops its buffered audio (and echoes the pending marks)."""
        self._clear_audio()
        return serialize(Clear(self.stream_sid))


def _name(event: Event) -> str:
    return type(event).__name__.lower()
