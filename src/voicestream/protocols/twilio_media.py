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
frame into a typed event; ``TwilioStream`` is the carrier base (``call_media``) configured for
Twilio: every frame names its stream as ``streamSid``, and so does every frame going back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidAudio, ProtocolError
from .call_media import (
    FIELDS,
    CallEvent,
    CallStart,
    JsonCarrier,
    JsonCarrierStream,
    StreamFrame,
)
from .json_messages import load_object

__all__ = [
    "FRAME_BYTES",
    "TWILIO",
    "Clear",
    "Connected",
    "Event",
    "MarkOut",
    "MediaOut",
    "Start",
    "TwilioStream",
    "parse",
    "serialize",
]

FRAME_BYTES = 160  # 20 ms of 8 kHz μ-law
ULAW_SILENCE = b"\xff"
_ENCODING = "audio/x-mulaw"
_RATE = 8000
TWILIO = JsonCarrier(
    name="Twilio Media Streams", sid_field="streamSid", sid_everywhere=True, call_field="callSid"
)


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


# The frames of the started stream (media, dtmf, mark, stop) are the carrier base's.
Event = Connected | Start | StreamFrame


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
    start = FIELDS.obj(msg, "start")
    sid = FIELDS.text(start, "streamSid", where="start")
    top = msg.get("streamSid")
    if top is not None and top != sid:
        raise ProtocolError('"streamSid" differs from "start.streamSid"')
    fmt = FIELDS.opt_obj(start, "mediaFormat", where="start")
    if fmt is not None:
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
        call_sid=FIELDS.opt_text(start, "callSid", where="start") or "",
        account_sid=FIELDS.opt_text(start, "accountSid", where="start") or "",
        tracks=tuple(tracks),
        custom_parameters=FIELDS.str_map(start, "customParameters", where="start"),
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
    return TWILIO.frame(msg)


# ---- serializing ---------------------------------------------------------------------------


def serialize(command: Command) -> str:
    match command:
        case MediaOut(sid, payload):
            return TWILIO.media_out(sid, payload)
        case MarkOut(sid, name):
            return TWILIO.mark_out(sid, name)
        case Clear(sid):
            return TWILIO.clear_out(sid)


# ---- per-call state ------------------------------------------------------------------------


class TwilioStream(JsonCarrierStream[Event, Start]):
    """One Twilio call's protocol state: the carrier base's ordering, framing and marks, with
    μ-law 8 kHz both ways and the stream id on every frame going back."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(TWILIO, parse)

    @property
    def stream_sid(self) -> str:
        """The stream's id; ProtocolError before it has started."""
        return self._started_id()

    def _own_event(self, event: Event) -> CallEvent | None:
        match event:
            case Connected():
                self._connected()
            case Start(stream_sid=sid, custom_parameters=params):
                self._begin(event, sid, ULAW_SILENCE)
                return CallStart("ulaw_8000", params)
        return None
