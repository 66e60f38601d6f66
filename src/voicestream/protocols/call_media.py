"""What the telephony media-stream codecs share (Twilio, Telnyx, Vonage), sans-I/O.

Field checks on their JSON frames, each failure a ``ProtocolError`` (or ``InvalidAudio`` for a
payload) naming the field; cutting outgoing agent audio into whole 20 ms frames; and the book of
marks sent to the carrier that it has not yet echoed back (a carrier echoes a mark once the audio
queued before it has played, and at once when the queue is cleared).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..errors import InvalidAudio, ProtocolError

__all__ = [
    "DTMF_DIGITS",
    "AudioFramer",
    "CarrierStream",
    "MarkBook",
    "StreamOrder",
    "b64_audio",
    "dtmf_digits",
    "field_obj",
    "field_str",
    "opt_count",
    "opt_str",
    "str_map",
]

DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")
_MAX_PENDING_MARKS = 100


def field_obj(msg: dict[str, Any], key: str, *, where: str = "") -> dict[str, Any]:
    """``msg[key]``, which must be a JSON object."""
    value = msg.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f'"{where}{"." if where else ""}{key}" must be an object')
    return value


def field_str(msg: dict[str, Any], key: str, *, where: str, limit: int = 200) -> str:
    """``msg[key]``, a non-empty string of at most ``limit`` characters."""
    value = msg.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ProtocolError(f'"{where}.{key}" must be a non-empty string')
    return value


def opt_str(msg: dict[str, Any], key: str, *, where: str, limit: int = 200) -> str | None:
    """Like ``field_str``, but absent (or null) is None."""
    return None if msg.get(key) is None else field_str(msg, key, where=where, limit=limit)


def opt_count(msg: dict[str, Any], key: str, *, where: str) -> int | None:
    """A non-negative whole number; carriers send them as strings ("chunk": "1"), so both do."""
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


def str_map(value: object, *, where: str, limit: int = 32) -> dict[str, str]:
    """Custom parameters: at most ``limit`` names, each mapped to a string; null is empty."""
    if value is None:
        return {}
    if (
        not isinstance(value, dict)
        or len(value) > limit
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    ):
        raise ProtocolError(f'"{where}" must map names to strings')
    return dict(value)


def b64_audio(msg: dict[str, Any], key: str, *, where: str, max_chars: int) -> bytes:
    """A base64 audio payload, bounded before it is decoded."""
    payload = msg.get(key)
    if not isinstance(payload, str):
        raise ProtocolError(f'"{where}.{key}" must be a base64 string')
    if len(payload) > max_chars:
        raise InvalidAudio(f"{where} payload exceeds {max_chars} base64 characters")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidAudio(f'"{where}.{key}" is not valid base64') from None


def dtmf_digits(value: object, *, where: str, limit: int = 1) -> str:
    """One key press (or up to ``limit`` of them): 0-9, *, #, A-D."""
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ProtocolError(f'"{where}" must be a string of 1 to {limit} DTMF digits')
    if not set(value) <= DTMF_DIGITS:
        raise ProtocolError(f"not a DTMF digit: {value!r}")
    return value


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


class CarrierStream:
    """What every carrier's per-call state keeps for the audio going back: its 20 ms framing
    (known once the stream has started and said its codec) and its marks."""

    __slots__ = ("_framer", "_marks")

    def __init__(self) -> None:
        self._framer: AudioFramer | None = None
        self._marks = MarkBook()

    @property
    def pending_marks(self) -> list[str]:
        """Marks sent that the carrier has not echoed yet, oldest first."""
        return self._marks.pending

    @property
    def played_marks(self) -> list[str]:
        """Recent marks the carrier echoed as played, oldest first."""
        return self._marks.played

    def _frame_audio(self, frame_bytes: int, silence: bytes) -> None:
        self._framer = AudioFramer(frame_bytes, silence)

    def _started(self) -> AudioFramer:
        if self._framer is None:
            raise ProtocolError("no stream has started")
        return self._framer

    def _frames(self, audio: bytes) -> list[bytes]:
        return self._started().push(audio)

    def _last_frame(self) -> list[bytes]:
        frame = self._started().flush()
        return [] if frame is None else [frame]

    def _clear_audio(self) -> None:
        if self._framer is not None:
            self._framer.clear()


class StreamOrder:
    """The ordering rules of the JSON carriers (Twilio, Telnyx): nothing but ``connected``
    before ``start``, one ``start`` per socket, nothing after ``stop``, and every frame that
    names a stream naming this one."""

    __slots__ = ("sid", "sid_field", "stopped")

    def __init__(self, sid_field: str) -> None:
        self.sid_field = sid_field  # the carrier's name for the stream id, for messages
        self.sid: str | None = None
        self.stopped = False

    def connected(self) -> None:
        if self.sid is not None:
            raise ProtocolError('"connected" after "start"')

    def start(self, sid: str) -> None:
        if self.sid is not None:
            raise ProtocolError('a second "start" on the same socket')
        self.sid = sid

    def in_stream(self, event: str, sid: str | None) -> None:
        """A frame of the stream (``sid`` None: it does not say which)."""
        if self.sid is None:
            raise ProtocolError(f'"{event}" before "start"')
        if self.stopped:
            raise ProtocolError(f'"{event}" after "stop"')
        if sid is not None and sid != self.sid:
            raise ProtocolError(f"{self.sid_field} does not match this stream")
