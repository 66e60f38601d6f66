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
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidAudio, InvalidJSON, ProtocolError

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
_MAX_PARAMS = 32
_MAX_PENDING_MARKS = 100
_DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")


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


def _obj(msg: dict[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f'"{key}" must be an object')
    return value


def _str(msg: dict[str, Any], key: str, *, where: str, limit: int = 200) -> str:
    value = msg.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ProtocolError(f'"{where}.{key}" must be a non-empty string')
    return value


def _opt_str(msg: dict[str, Any], key: str, *, where: str) -> str | None:
    return None if msg.get(key) is None else _str(msg, key, where=where)


def _opt_int(msg: dict[str, Any], key: str, *, where: str) -> int | None:
    # Twilio sends numbers as strings ("chunk": "1"); accept both.
    value = msg.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProtocolError(f'"{where}.{key}" must be a number')
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ProtocolError(f'"{where}.{key}" must be a number') from None
    if number < 0:
        raise ProtocolError(f'"{where}.{key}" must not be negative')
    return number


def _start(msg: dict[str, Any]) -> Start:
    start = _obj(msg, "start")
    sid = _str(start, "streamSid", where="start")
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
    params = start.get("customParameters", {})
    if params is None:
        params = {}
    if (
        not isinstance(params, dict)
        or len(params) > _MAX_PARAMS
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
    ):
        raise ProtocolError('"start.customParameters" must map names to strings')
    return Start(
        stream_sid=sid,
        call_sid=_opt_str(start, "callSid", where="start") or "",
        account_sid=_opt_str(start, "accountSid", where="start") or "",
        tracks=tuple(tracks),
        custom_parameters=dict(params),
    )


def _media(msg: dict[str, Any]) -> Media:
    media = _obj(msg, "media")
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise ProtocolError('"media.payload" must be a base64 string')
    if len(payload) > _MAX_PAYLOAD:
        raise InvalidAudio(f"media payload exceeds {_MAX_PAYLOAD} base64 characters")
    try:
        audio = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidAudio('"media.payload" is not valid base64') from None
    return Media(
        stream_sid=_str(msg, "streamSid", where="media"),
        payload=audio,
        track=_opt_str(media, "track", where="media"),
        chunk=_opt_int(media, "chunk", where="media"),
        timestamp_ms=_opt_int(media, "timestamp", where="media"),
    )


def _dtmf(msg: dict[str, Any]) -> Dtmf:
    digit = _str(_obj(msg, "dtmf"), "digit", where="dtmf", limit=1)
    if digit not in _DTMF_DIGITS:
        raise ProtocolError(f"not a DTMF digit: {digit!r}")
    return Dtmf(_str(msg, "streamSid", where="dtmf"), digit)


def parse(raw: str | bytes) -> Event:
    """Parse one frame from Twilio.

    Raises:
        InvalidJSON: not JSON (a truncated frame, for instance).
        ProtocolError: not a Twilio event, or a required field missing or mistyped.
        InvalidAudio: a payload that is not base64, or a media format other than 8 kHz μ-law.
    """
    try:
        msg = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidJSON(f"message is not valid JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("message must be a JSON object")
    match msg.get("event"):
        case "connected":
            return Connected(str(msg.get("protocol", "")), str(msg.get("version", "")))
        case "start":
            return _start(msg)
        case "media":
            return _media(msg)
        case "dtmf":
            return _dtmf(msg)
        case "mark":
            name = _str(_obj(msg, "mark"), "name", where="mark")
            return Mark(_str(msg, "streamSid", where="mark"), name)
        case "stop":
            stop = msg.get("stop")
            call = None
            if isinstance(stop, dict):
                call = _opt_str(stop, "callSid", where="stop")
            return Stop(_str(msg, "streamSid", where="stop"), call)
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


class TwilioStream:
    """One call's protocol state.

    ``receive`` checks ordering (nothing but ``connected`` before ``start``, one stream per
    socket); ``audio`` cuts agent μ-law into 20 ms ``media`` frames; ``mark`` and ``clear``
    keep the set of marks Twilio has not yet echoed (it echoes them when the audio before them
    has played, and at once on ``clear``).
    """

    __slots__ = ("_buffer", "_mark_seq", "pending_marks", "played_marks", "start", "stopped")

    def __init__(self) -> None:
        self.start: Start | None = None
        self.stopped = False
        self.pending_marks: list[str] = []
        self.played_marks: list[str] = []
        self._buffer = bytearray()
        self._mark_seq = 0

    @property
    def stream_sid(self) -> str:
        if self.start is None:
            raise ProtocolError("no stream has started")
        return self.start.stream_sid

    def receive(self, raw: str | bytes) -> Event:
        event = parse(raw)
        match event:
            case Connected():
                if self.start is not None:
                    raise ProtocolError('"connected" after "start"')
            case Start():
                if self.start is not None:
                    raise ProtocolError('a second "start" on the same socket')
                self.start = event
            case _:
                if self.start is None:
                    raise ProtocolError(f'"{_name(event)}" before "start"')
                if self.stopped:
                    raise ProtocolError(f'"{_name(event)}" after "stop"')
                if event.stream_sid != self.start.stream_sid:
                    raise ProtocolError("streamSid does not match this stream")
                if isinstance(event, Mark):
                    self._echoed(event.name)
                elif isinstance(event, Stop):
                    self.stopped = True
        return event

    def _echoed(self, name: str) -> None:
        if name in self.pending_marks:
            self.pending_marks.remove(name)
            self.played_marks.append(name)
            del self.played_marks[:-_MAX_PENDING_MARKS]  # only the recent history matters

    def audio(self, ulaw: bytes) -> list[str]:
        """Agent audio (μ-law 8 kHz, any length) → whole 20 ms ``media`` frames."""
        self._buffer += ulaw
        cut = len(self._buffer) - len(self._buffer) % FRAME_BYTES
        frames = [
            serialize(MediaOut(self.stream_sid, bytes(self._buffer[i : i + FRAME_BYTES])))
            for i in range(0, cut, FRAME_BYTES)
        ]
        del self._buffer[:cut]
        return frames

    def flush_audio(self) -> list[str]:
        """The last partial frame, padded with μ-law silence."""
        if not self._buffer:
            return []
        pad = ULAW_SILENCE * (FRAME_BYTES - len(self._buffer))
        frame = serialize(MediaOut(self.stream_sid, bytes(self._buffer) + pad))
        self._buffer.clear()
        return [frame]

    def mark(self) -> str:
        """A mark after the audio sent so far; Twilio echoes it once that audio has played."""
        self._mark_seq += 1
        name = f"utt-{self._mark_seq}"
        self.pending_marks.append(name)
        del self.pending_marks[:-_MAX_PENDING_MARKS]  # a peer that never echoes stays bounded
        return serialize(MarkOut(self.stream_sid, name))

    def clear(self) -> str:
        """Barge-in: Twilio drops its buffered audio (and echoes the pending marks)."""
        self._buffer.clear()
        return serialize(Clear(self.stream_sid))


def _name(event: Event) -> str:
    return type(event).__name__.lower()
