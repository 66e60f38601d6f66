"""Vonage Voice API WebSockets (an NCCO ``connect`` to a ``websocket`` endpoint), sans-I/O.

Vonage → server: first one JSON text frame, then audio as **binary** frames of raw 16-bit
little-endian mono PCM (20 ms each: 640 bytes at 16 kHz, 320 at 8 kHz), with JSON text events in
between::

    {"event": "websocket:connected", "content-type": "audio/l16;rate=16000", <NCCO headers>…}
    {"event": "websocket:dtmf", "digit": "5", "duration": 260}        # or "dtmf": {"digits"}
    {"event": "websocket:cleared"}                                    # our clear took effect
    {"event": "websocket:notify", "payload": {"name": "utt-1"}}       # our mark, played out

The NCCO endpoint's ``headers`` arrive as extra fields of ``websocket:connected``. Server →
Vonage: binary PCM frames at the call's rate, ``{"action": "clear"}`` (drop queued audio) and
``{"action": "notify", "payload": {…}}`` (echoed as ``websocket:notify`` once the audio queued
before it has played) — Vonage's marks. There is no stop event: the call ends with the socket.
``VonageStream`` is the carrier base (``call_media``) for Vonage's binary audio.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidAudio, ProtocolError
from .call_media import (
    FIELDS,
    CallAudio,
    CallDtmf,
    CallEvent,
    CallStart,
    CarrierStream,
    dtmf_digits,
)
from .json_messages import load_object

__all__ = [
    "RATES",
    "Audio",
    "Clear",
    "Cleared",
    "Connected",
    "Dtmf",
    "Event",
    "Notify",
    "NotifyOut",
    "VonageStream",
    "frame_bytes",
    "parse",
    "serialize",
]

RATES = (8000, 16000)
DEFAULT_RATE = 16000
_CONTENT_TYPE = re.compile(r"^\s*audio/l16\s*(?:;\s*rate\s*=\s*(\d{4,6})\s*)?$", re.IGNORECASE)
_MAX_HEADERS = 32
_MAX_DTMF = 20  # Vonage may report a run of digits in one event


def frame_bytes(rate: int) -> int:
    """20 ms of 16-bit mono PCM at ``rate``."""
    return rate // 50 * 2


@dataclass(frozen=True, slots=True)
class Connected:
    sample_rate: int
    headers: dict[str, str] = field(default_factory=dict)  # the NCCO's string headers


@dataclass(frozen=True, slots=True)
class Audio:
    pcm: bytes  # s16le mono at the call's rate


@dataclass(frozen=True, slots=True)
class Dtmf:
    digits: str


@dataclass(frozen=True, slots=True)
class Cleared:
    pass


@dataclass(frozen=True, slots=True)
class Notify:
    payload: dict[str, Any]


Event = Connected | Audio | Dtmf | Cleared | Notify


@dataclass(frozen=True, slots=True)
class Clear:
    pass


@dataclass(frozen=True, slots=True)
class NotifyOut:
    payload: dict[str, Any]


Command = Clear | NotifyOut


# ---- parsing -------------------------------------------------------------------------------


def _rate(content_type: object) -> int:
    if content_type is None:
        return DEFAULT_RATE
    match = _CONTENT_TYPE.match(content_type) if isinstance(content_type, str) else None
    if match is None:
        raise InvalidAudio(
            f"unsupported content-type {str(content_type)[:60]!r}; "
            "expected audio/l16;rate=16000 or audio/l16;rate=8000"
        )
    rate = int(match.group(1) or DEFAULT_RATE)
    if rate not in RATES:
        raise InvalidAudio(f"unsupported sample rate {rate} Hz; use 8000 or 16000")
    return rate


def _connected(msg: dict[str, Any]) -> Connected:
    headers = {
        k: v for k, v in msg.items() if k not in ("event", "content-type") and isinstance(v, str)
    }
    if len(headers) > _MAX_HEADERS:
        raise ProtocolError(f"websocket:connected carries more than {_MAX_HEADERS} headers")
    return Connected(_rate(msg.get("content-type")), headers)


def _dtmf(msg: dict[str, Any]) -> Dtmf:
    # Two shapes in the wild: {"digit": "5"} and {"dtmf": {"digits": "5"}}.
    if "dtmf" in msg:
        digits = FIELDS.obj(msg, "dtmf").get("digits")
        return Dtmf(dtmf_digits(digits, where="dtmf.digits", limit=_MAX_DTMF))
    return Dtmf(dtmf_digits(msg.get("digit"), where="digit", limit=_MAX_DTMF))


def parse(frame: str | bytes) -> Event:
    """Parse one frame from Vonage: ``bytes`` (a binary frame) is audio, ``str`` an event.

    Raises:
        InvalidJSON: a text frame that is not JSON (a truncated frame, for instance).
        ProtocolError: not a Vonage event, or a field missing or mistyped.
        InvalidAudio: audio that is not whole 16-bit samples, or a content-type other than
            16-bit linear PCM at 8 or 16 kHz.
    """
    if isinstance(frame, bytes | bytearray | memoryview):
        pcm = bytes(frame)
        if not pcm or len(pcm) % 2:
            raise InvalidAudio(f"a binary frame of {len(pcm)} bytes is not whole 16-bit samples")
        return Audio(pcm)
    msg = load_object(frame)
    match msg.get("event"):
        case "websocket:connected":
            return _connected(msg)
        case "websocket:dtmf":
            return _dtmf(msg)
        case "websocket:cleared":
            return Cleared()
        case "websocket:notify":
            return Notify(FIELDS.obj(msg, "payload"))
        case None:
            raise ProtocolError('message has no "event"')
        case other:
            raise ProtocolError(f"unknown event {str(other)[:40]!r}")


# ---- serializing ---------------------------------------------------------------------------


def serialize(command: Command) -> str:
    match command:
        case Clear():
            return '{"action":"clear"}'
        case NotifyOut(payload):
            return json.dumps({"action": "notify", "payload": payload}, separators=(",", ":"))


# ---- per-call state ------------------------------------------------------------------------


class VonageStream(CarrierStream[Event, bytes]):
    """One Vonage call's protocol state: ``websocket:connected`` first and once, then binary
    PCM at the call's rate both ways; marks are ``notify`` actions, echoed as
    ``websocket:notify``."""

    __slots__ = ("connected",)

    ends_on_close = True  # Vonage has no stop event: the socket closing is the hang-up

    def __init__(self) -> None:
        super().__init__()
        self.connected: Connected | None = None

    def _read(self, frame: str | bytes) -> tuple[Event, CallEvent | None]:
        if self.connected is None and not isinstance(frame, str):
            # Whatever the bytes hold (the connected event itself, sent as binary), it is audio
            # to this protocol, and audio comes second.
            raise ProtocolError("binary audio before websocket:connected")
        event = parse(frame)
        match event:
            case Connected(sample_rate=rate, headers=headers):
                if self.connected is not None:
                    raise ProtocolError("a second websocket:connected on the same socket")
                self.connected = event
                self._frame_audio(frame_bytes(rate), b"\x00\x00")
                return event, CallStart(f"pcm_{rate}", headers)
            case _ if self.connected is None:
                raise ProtocolError("an event before websocket:connected")
            case Audio(pcm=pcm):
                return event, CallAudio(pcm)
            case Dtmf(digits=digits):
                return event, CallDtmf(digits)
            case Notify(payload):
                name = payload.get("name")
                if isinstance(name, str):
                    self._marks.echoed(name)
        return event, None  # cleared, and notify (booked above)

    def _media_out(self, frame: bytes) -> bytes:
        return frame

    def _mark_out(self, name: str) -> str:
        return serialize(NotifyOut({"name": name}))

    def _clear_out(self) -> str:
        return serialize(Clear())
