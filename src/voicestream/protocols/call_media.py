"""The carrier base: what the telephony media-stream codecs share (Twilio, Telnyx, Vonage).

* What a call's frames mean, whichever carrier sent them: ``CallStart``, ``CallAudio``,
  ``CallDtmf``, ``CallStop`` and ``CallNotice``. Each carrier's stream translates its own
  frames into these (``CarrierStream.call_event``), so the bridge that runs the call
  (``transports/telephony_bridge``) knows no carrier's framing.
* ``CarrierStream``: one call's state for the audio going back, the same for every carrier:
  whole 20 ms frames (known once the stream has started and said its codec), the book of marks
  sent and not yet echoed (a carrier echoes a mark once the audio queued before it has played,
  and at once when the queue is cleared), and the clear of a barge-in. A carrier says how its
  frames are written (``_media_out``, ``_mark_out``, ``_clear_out``).
* ``JsonCarrier`` and ``JsonCarrierStream``: Twilio and Telnyx speak one JSON dialect but for
  the name of the stream id, whether every frame carries it, and their ``connected``/``start``
  frames. The frames of a started stream (media, dtmf, mark, stop), the ordering rules and the
  frames going back (media, mark, clear) are read and written here once, configured by a
  ``JsonCarrier``.
* ``FIELDS``: the carriers' way of telling a bad field (a ``ProtocolError``, or
  ``InvalidAudio`` for a payload, naming the dotted field).
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from ..errors import InvalidAudio, ProtocolError, VoiceStreamError
from .json_fields import Fault, FieldReader

__all__ = [
    "DTMF_DIGITS",
    "FIELDS",
    "AudioFramer",
    "CallAudio",
    "CallDtmf",
    "CallEvent",
    "CallNotice",
    "CallStart",
    "CallStop",
    "CarrierStream",
    "Dtmf",
    "JsonCarrier",
    "JsonCarrierStream",
    "Mark",
    "MarkBook",
    "Media",
    "Stop",
    "StreamFrame",
    "dtmf_digits",
]

DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")
FRAME_BYTES_8K = 160  # 20 ms of 8 kHz G.711, what the JSON carriers stream
_MAX_PENDING_MARKS = 100
_INBOUND = (None, "inbound")  # the caller's track (a frame that names none is the caller's)


# ---- bad fields ----------------------------------------------------------------------------


def _complaint(fault: Fault) -> VoiceStreamError:
    field = f'"{fault.path}"'
    match fault.expected, fault.problem:
        case "a base64 string", "long":
            return InvalidAudio(f"{fault.where} payload exceeds {fault.high} base64 characters")
        case "a base64 string", "invalid":
            return InvalidAudio(f"{field} is not valid base64")
        case "a string", _:
            return ProtocolError(f"{field} must be a non-empty string")
        case "a count", "range":
            return ProtocolError(f"{field} must not be negative")
        case "a count", _:
            return ProtocolError(f"{field} must be a number")
        case "names mapped to strings", _:
            return ProtocolError(f"{field} must map names to strings")
        case _:
            return ProtocolError(f"{field} must be {fault.expected}")


# Carriers' ids and names are never empty and never long.
FIELDS = FieldReader(_complaint, text_limit=200, empty_text=False)


def dtmf_digits(value: object, *, where: str, limit: int = 1) -> str:
    """One key press (or up to ``limit`` of them): 0-9, *, #, A-D."""
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ProtocolError(f'"{where}" must be a string of 1 to {limit} DTMF digits')
    if not set(value) <= DTMF_DIGITS:
        raise ProtocolError(f"not a DTMF digit: {value!r}")
    return value


# ---- what a call's frames mean -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallStart:
    """The stream has started: its audio format, and where a ticket may travel."""

    wire_format: str  # a raw format name: ulaw_8000, alaw_8000, pcm_8000, pcm_16000
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallAudio:
    payload: bytes  # caller audio in the wire format


@dataclass(frozen=True, slots=True)
class CallDtmf:
    digits: str


@dataclass(frozen=True, slots=True)
class CallStop:
    """The carrier ended the stream (the caller hung up)."""


@dataclass(frozen=True, slots=True)
class CallNotice:
    """The carrier reports a problem and keeps the call up: a line for the operator."""

    message: str


CallEvent = CallStart | CallAudio | CallDtmf | CallStop | CallNotice


# ---- the frames of a started JSON stream (Twilio, Telnyx) ----------------------------------


@dataclass(frozen=True, slots=True)
class Media:
    stream_id: str | None  # None: the frame does not name its stream (Telnyx may leave it out)
    payload: bytes  # G.711 at 8 kHz, in the start's encoding
    track: str | None = None
    chunk: int | None = None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Dtmf:
    stream_id: str | None
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    """Our mark, echoed: the audio sent before it has played."""

    stream_id: str | None
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    stream_id: str | None
    call_id: str | None = None  # Twilio's callSid, Telnyx's call_control_id


StreamFrame = Media | Dtmf | Mark | Stop


@dataclass(frozen=True, slots=True)
class JsonCarrier:
    """What sets one JSON carrier's frames apart; the rest of them is read the same way."""

    name: str  # for messages: "Twilio Media Streams"
    sid_field: str  # the stream id's field: "streamSid", "stream_id"
    # Every frame names its stream, both ways (Twilio); or only "start" does (Telnyx).
    sid_everywhere: bool
    call_field: str  # the call's id in "stop": "callSid", "call_control_id"
    call_limit: int = 200  # characters of that id
    max_payload: int = 64 * 1024  # base64 characters; carriers send 20 ms (216 characters)

    def stream_id(self, msg: Mapping[str, Any], *, where: str) -> str | None:
        if self.sid_everywhere:
            return FIELDS.text(msg, self.sid_field, where=where)
        return FIELDS.opt_text(msg, self.sid_field, where=where)

    def frame(self, msg: Mapping[str, Any]) -> StreamFrame:
        """A frame of the started stream (media, dtmf, mark or stop); the carrier's ``parse``
        reads its ``connected``, ``start`` and own events before handing the rest here.

        Raises:
            ProtocolError: no event, an unknown one, or a field missing or mistyped.
            InvalidAudio: a payload that is not base64, or longer than ``max_payload``.
        """
        name = msg.get("event")
        if name is None:
            raise ProtocolError('message has no "event"')
        if name not in ("media", "dtmf", "mark", "stop"):
            raise ProtocolError(f"unknown event {str(name)[:40]!r}")
        sid = self.stream_id(msg, where=name)
        match name:
            case "media":
                return self._media(msg, sid)
            case "dtmf":
                digit = FIELDS.obj(msg, "dtmf").get("digit")
                return Dtmf(sid, dtmf_digits(digit, where="dtmf.digit"))
            case "mark":
                return Mark(sid, FIELDS.text(FIELDS.obj(msg, "mark"), "name", where="mark"))
        stop = msg.get("stop")
        call = None
        if isinstance(stop, dict):
            call = FIELDS.opt_text(stop, self.call_field, where="stop", limit=self.call_limit)
        return Stop(sid, call)

    def media_out(self, sid: str | None, payload: bytes) -> str:
        """Agent audio; ``sid`` None: the frame does not name the stream."""
        return self._out("media", sid, {"payload": base64.b64encode(payload).decode("ascii")})

    def mark_out(self, sid: str | None, name: str) -> str:
        return self._out("mark", sid, {"name": name})

    def clear_out(self, sid: str | None) -> str:
        return self._out("clear", sid, None)

    def _out(self, event: str, sid: str | None, body: dict[str, str] | None) -> str:
        msg: dict[str, object] = {"event": event}
        if sid is not None:
            msg[self.sid_field] = sid
        if body is not None:
            msg[event] = body
        return json.dumps(msg, separators=(",", ":"))

    def _media(self, msg: Mapping[str, Any], sid: str | None) -> Media:
        media = FIELDS.obj(msg, "media")
        return Media(
            stream_id=sid,
            payload=FIELDS.base64(media, "payload", where="media", max_chars=self.max_payload),
            track=FIELDS.opt_text(media, "track", where="media"),
            chunk=FIELDS.opt_count(media, "chunk", where="media"),
            timestamp_ms=FIELDS.opt_count(media, "timestamp", where="media"),
        )


# ---- the audio going back ------------------------------------------------------------------


class AudioFramer:
    """Agent audio of any length in, whole frames of ``frame_bytes`` out.

    Carriers play what they get, so a frame is never split across messages; the last partial
    frame of an utterance is padded with the codec's silence when the utterance ends.
    """

    __slots__ = ("_buffer", "frame_bytes", "silence")

    def __init__(self, frame_bytes: int, silence: bytes) -> None:
        self.frame_bytes = frame_bytes
        self.silence = silence  # one sample's worth of the codec's silence
        self._buffer = bytearray()

    def push(self, audio: bytes) -> list[bytes]:
        """The whole frames ``audio`` completes; the remainder waits for more."""
        self._buffer += audio
        size = self.frame_bytes
        cut = len(self._buffer) - len(self._buffer) % size
        frames = [bytes(self._buffer[i : i + size]) for i in range(0, cut, size)]
        del self._buffer[:cut]
        return frames

    def flush(self) -> bytes | None:
        """The partial frame, padded with silence; None when there is none."""
        if not self._buffer:
            return None
        missing = self.frame_bytes - len(self._buffer)
        frame = bytes(self._buffer) + self.silence * (missing // len(self.silence))
        self._buffer.clear()
        return frame

    def clear(self) -> None:
        """Barge-in: the unsent partial frame is dropped with everything else."""
        self._buffer.clear()


class MarkBook:
    """Marks sent (``utt-1``, ``utt-2``, …) until the carrier echoes them back as played."""

    __slots__ = ("_seq", "pending", "played")

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.played: list[str] = []
        self._seq = 0

    def new(self) -> str:
        """The next mark's name, booked as pending."""
        self._seq += 1
        name = f"utt-{self._seq}"
        self.pending.append(name)
        del self.pending[:-_MAX_PENDING_MARKS]  # a peer that never echoes stays bounded
        return name

    def echoed(self, name: str) -> bool:
        """The carrier played up to ``name``; False for a mark that is not ours."""
        if name not in self.pending:
            return False
        self.pending.remove(name)
        self.played.append(name)
        del self.played[:-_MAX_PENDING_MARKS]  # only the recent history matters
        return True


# ---- one call's state ----------------------------------------------------------------------

EventT = TypeVar("EventT", covariant=True)  # a carrier's own parsed frame
FrameT = TypeVar("FrameT", bound=str | bytes, covariant=True)  # an outgoing audio frame
JsonEventT = TypeVar("JsonEventT")
StartT = TypeVar("StartT")


class CarrierStream(ABC, Generic[EventT, FrameT]):
    """One call's protocol state, whichever carrier: ``receive`` reads a frame into the codec's
    own event (checking the carrier's ordering rules), ``call_event`` into what it means to the
    call; ``audio``, ``flush_audio``, ``mark`` and ``clear`` build the frames going back."""

    __slots__ = ("_framer", "_marks")

    # No stop event: the socket closing is the hang-up.
    ends_on_close: ClassVar[bool] = False

    def __init__(self) -> None:
        self._framer: AudioFramer | None = None
        self._marks = MarkBook()

    def receive(self, frame: str | bytes) -> EventT:
        """One frame in, as the codec's own event.

        Raises:
            InvalidJSON, ProtocolError, InvalidAudio: a bad frame, or one out of order.
        """
        return self._read(frame)[0]

    def call_event(self, frame: str | bytes) -> CallEvent | None:
        """One frame in, as what it means to the call; None for frames the call has no use
        for (``connected``, echoed marks, another track's audio). Raises as ``receive``."""
        return self._read(frame)[1]

    @property
    def pending_marks(self) -> list[str]:
        """Marks sent that the carrier has not echoed yet, oldest first."""
        return self._marks.pending

    @property
    def played_marks(self) -> list[str]:
        """Recent marks the carrier echoed as played, oldest first."""
        return self._marks.played

    def audio(self, encoded: bytes) -> list[FrameT]:
        """Agent audio in the call's wire format (any length) → whole 20 ms frames."""
        return [self._media_out(frame) for frame in self._started().push(encoded)]

    def flush_audio(self) -> list[FrameT]:
        """The utterance's last partial frame, padded with the codec's silence."""
        frame = self._started().flush()
        return [] if frame is None else [self._media_out(frame)]

    def mark(self) -> str:
        """A mark after the audio sent so far; the carrier echoes it once that has played."""
        return self._mark_out(self._marks.new())

    def clear(self) -> str:
        """Barge-in: the carrier drops the audio it has queued (and echoes pending marks)."""
        if self._framer is not None:
            self._framer.clear()
        return self._clear_out()

    def _frame_audio(self, frame_bytes: int, silence: bytes) -> None:
        """The stream has started and said its codec: outgoing audio can be framed."""
        self._framer = AudioFramer(frame_bytes, silence)

    def _started(self) -> AudioFramer:
        if self._framer is None:
            raise ProtocolError("no stream has started")
        return self._framer

    @abstractmethod
    def _read(self, frame: str | bytes) -> tuple[EventT, CallEvent | None]: ...

    @abstractmethod
    def _media_out(self, frame: bytes) -> FrameT: ...

    @abstractmethod
    def _mark_out(self, name: str) -> str: ...

    @abstractmethod
    def _clear_out(self) -> str: ...


class JsonCarrierStream(CarrierStream[JsonEventT, str], Generic[JsonEventT, StartT]):
    """A JSON carrier's call (Twilio, Telnyx): text frames only; nothing but ``connected``
    before ``start``, one ``start`` per socket, nothing after ``stop``, and every frame that
    names a stream naming this one.

    The frames of the started stream are read here, and the frames going back written; a
    carrier reads its own (``connected``, ``start``, and any others) in ``_own_event`` with
    ``_connected``, ``_begin`` and ``_in_stream``.
    """

    __slots__ = ("_carrier", "_parse", "start", "stopped", "stream_id")

    def __init__(self, carrier: JsonCarrier, parse: Callable[[str], JsonEventT]) -> None:
        """``parse``: the carrier's codec, one text frame to one of its events."""
        super().__init__()
        self._carrier = carrier
        self._parse = parse
        self.start: StartT | None = None
        self.stream_id: str | None = None
        self.stopped = False

    @abstractmethod
    def _own_event(self, event: JsonEventT) -> CallEvent | None: ...

    def _read(self, frame: str | bytes) -> tuple[JsonEventT, CallEvent | None]:
        if not isinstance(frame, str):
            raise ProtocolError(f"{self._carrier.name} frames are JSON text, not binary")
        event = self._parse(frame)
        match event:
            case Media(stream_id=sid, payload=payload, track=track):
                self._in_stream("media", sid)
                return event, CallAudio(payload) if track in _INBOUND else None
            case Dtmf(stream_id=sid, digit=digit):
                self._in_stream("dtmf", sid)
                return event, CallDtmf(digit)
            case Mark(stream_id=sid, name=name):
                self._in_stream("mark", sid)
                self._marks.echoed(name)
                return event, None
            case Stop(stream_id=sid):
                self._in_stream("stop", sid)
                self.stopped = True
                return event, CallStop()
        return event, self._own_event(event)

    def _media_out(self, frame: bytes) -> str:
        return self._carrier.media_out(self._sid_out(), frame)

    def _mark_out(self, name: str) -> str:
        return self._carrier.mark_out(self._sid_out(), name)

    def _clear_out(self) -> str:
        return self._carrier.clear_out(self._sid_out())

    def _sid_out(self) -> str | None:
        return self._started_id() if self._carrier.sid_everywhere else None

    def _started_id(self) -> str:
        if self.stream_id is None:
            raise ProtocolError("no stream has started")
        return self.stream_id

    def _connected(self) -> None:
        if self.stream_id is not None:
            raise ProtocolError('"connected" after "start"')

    def _begin(self, start: StartT, stream_id: str, silence: bytes) -> None:
        if self.stream_id is not None:
            raise ProtocolError('a second "start" on the same socket')
        self.start = start
        self.stream_id = stream_id
        self._frame_audio(FRAME_BYTES_8K, silence)

    def _in_stream(self, event: str, sid: str | None) -> None:
        """A frame of the stream (``sid`` None: it does not say which)."""
        if self.stream_id is None:
            raise ProtocolError(f'"{event}" before "start"')
        if self.stopped:
            raise ProtocolError(f'"{event}" after "stop"')
        if sid is not None and sid != self.stream_id:
            raise ProtocolError(f"{self._carrier.sid_field} does not match this stream")
