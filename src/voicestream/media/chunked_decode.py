"""A long recording decoded a chunk at a time: any container PyAV reads, audio or video (its
first audio stream), as mono s16le at one rate, never whole in memory.

``decode.decode_audio`` returns a whole upload's samples at once, which is right for a request
and wrong for an hour-long file in a background job. ``ChunkedDecoder`` reads from a seekable
file (MP4 and MOV keep their index at the end) and hands out a few seconds at a time, with how
far it has got, so a caller can report progress and hold only what it is working on.

Everything it reads is untrusted, like any upload: failures come out as ``InvalidAudio`` (or
``PayloadTooLarge`` past ``max_seconds``), never as a raw PyAV exception.
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import IO, Any

import av
import av.error

from voicestream.errors import InvalidAudio, PayloadTooLarge
from voicestream.media.decode import DEFAULT_MAX_SECONDS
from voicestream.media.formats import check_source_audio
from voicestream.media.resample import check_rate

__all__ = ["ChunkedDecoder"]

# decode.py's audio containers plus the usual video ones. Demuxers that open further files or
# URLs named inside the input (HLS, concat, image sequences) stay out, as there.
_DEMUXER_WHITELIST = "wav,w64,mp3,ogg,flac,aac,mov,matroska,aiff,caf,au,avi,mpegts,flv,asf"
_DECODE_ERRORS = (av.error.FFmpegError, ValueError, EOFError, OSError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class ChunkedDecoder:
    """Reads ``file`` (seekable, opened for binary reading) as mono s16le at ``target_rate``.

    Blocking: run it on an executor. Call ``close`` when done (it does not close ``file``).

    Raises (from the constructor and ``read``):
        InvalidAudio: no audio stream, an unsupported rate or channel count, or nothing
            decodable.
        PayloadTooLarge: longer than ``max_seconds`` (declared, or as decoded).
    """

    def __init__(
        self, file: IO[bytes], target_rate: int, *, max_seconds: float = DEFAULT_MAX_SECONDS
    ) -> None:
        check_rate(target_rate, "target_rate")
        self.target_rate = target_rate
        self._max_seconds = max_seconds
        self._file_bytes = max(1, os.fstat(file.fileno()).st_size) if _has_fileno(file) else 0
        try:
            self._container = av.open(
                file, mode="r", options={"format_whitelist": _DEMUXER_WHITELIST}
            )
        except _DECODE_ERRORS as exc:
            raise InvalidAudio(f"could not read the file: {_describe(exc)}") from None
        try:
            if not self._container.streams.audio:
                raise InvalidAudio("the file has no audio stream")
            self._stream = self._container.streams.audio[0]
            codec = self._stream.codec_context
            if codec is None:
                raise InvalidAudio("the audio stream's encoding is not supported")
            check_source_audio(codec.sample_rate, codec.channels)
            codec.thread_count = 1
            self.declared_seconds = self._declared_seconds()
            if self.declared_seconds is not None and self.declared_seconds > max_seconds:
                raise PayloadTooLarge(
                    f"the recording declares {self.declared_seconds:.0f} s, over the "
                    f"{max_seconds:g} s limit",
                    details={"max_seconds": max_seconds},
                )
            self._packets = self._container.demux(self._stream)
        except BaseException:
            self._container.close()
            raise
        self._resampler: av.AudioResampler | None = None
        self._layout: tuple[str, str, int] | None = None
        self._pts = 0
        self._position = 0  # bytes into the file of the last packet read
        self._ended = False
        self._decoded_any = False
        self._last_error: Exception | None = None
        self.source_seconds = 0.0  # decoded so far, in the source's own timeline

    def _declared_seconds(self) -> float | None:
        stream = self._stream
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if self._container.duration is not None:
            return self._container.duration / av.time_base
        return None

    @property
    def fraction_done(self) -> float:
        """How far through the file decoding is, 0-1: by time when the file declares its
        length, else by bytes read."""
        if self._ended:
            return 1.0
        if self.declared_seconds:
            return min(1.0, self.source_seconds / self.declared_seconds)
        if self._file_bytes:
            return min(1.0, self._position / self._file_bytes)
        return 0.0

    def read(self, seconds: float) -> bytes:
        """At least ``seconds`` of audio (less only at the end); ``b""`` once it is over."""
        wanted = max(1, round(seconds * self.target_rate)) * 2
        out: list[bytes] = []
        have = 0
        while have < wanted and not self._ended:
            try:
                packet = next(self._packets)
            except StopIteration:
                out.append(self._drain())
                self._ended = True
                break
            except _DECODE_ERRORS as exc:
                raise InvalidAudio(f"could not read the file: {_describe(exc)}") from None
            if packet.pos is not None and packet.pos >= 0:
                self._position = packet.pos
            for pcm in self._decode(packet):
                out.append(pcm)
                have += len(pcm)
        if self._ended and not self._decoded_any:
            if self._last_error is not None:
                raise InvalidAudio(f"could not decode audio: {_describe(self._last_error)}")
            raise InvalidAudio("no audio samples could be decoded")
        return b"".join(out)

    def _decode(self, packet: av.Packet[Any]) -> list[bytes]:
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            # One damaged packet should cost a few ms of audio, not the recording.
            self._last_error = exc
            return []
        out: list[bytes] = []
        for frame in frames:
            if not isinstance(frame, av.AudioFrame):
                continue
            # Chained streams may change parameters mid-file: each frame meets the bounds.
            check_source_audio(frame.sample_rate, frame.layout.nb_channels)
            self.source_seconds += frame.samples / frame.sample_rate
            if self.source_seconds > self._max_seconds:
                raise PayloadTooLarge(
                    f"the recording is longer than the {self._max_seconds:g} s limit",
                    details={"max_seconds": self._max_seconds},
                )
            out.append(self._resample(frame))
            self._decoded_any = True
        return out

    def _resample(self, frame: av.AudioFrame) -> bytes:
        layout = (frame.format.name, frame.layout.name, frame.sample_rate)
        out = b""
        if layout != self._layout:
            # One filter graph cannot follow a change of parameters: finish it, start anew.
            out = self._drain()
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.target_rate)
            self._layout = layout
            self._pts = 0
        assert self._resampler is not None
        # A gapless count: the demuxer's timestamps may jump or repeat.
        frame.pts = self._pts
        frame.time_base = Fraction(1, frame.sample_rate)
        self._pts += frame.samples
        return out + _samples(self._resampler.resample(frame))

    def _drain(self) -> bytes:
        if self._resampler is None:
            return b""
        out = _samples(self._resampler.resample(None))
        self._resampler = None
        self._layout = None
        return out

    def close(self) -> None:
        self._container.close()


def _samples(frames: list[av.AudioFrame]) -> bytes:
    return b"".join(bytes(memoryview(f.planes[0])[: f.samples * 2]) for f in frames)


def _has_fileno(file: IO[bytes]) -> bool:
    try:
        file.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True
