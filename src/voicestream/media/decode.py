"""Decoding client audio into mono s16le at the rate the engines want.

Everything a client sends is untrusted: every failure comes out as InvalidAudio
(or PayloadTooLarge), never as a raw PyAV exception.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import av.error

from voicestream.errors import InvalidAudio, PayloadTooLarge, UnsupportedFormat
from voicestream.media.formats import AudioFormat, Codec, check_source_audio
from voicestream.media.g711 import alaw_to_pcm16, ulaw_to_pcm16
from voicestream.media.resample import Resampler, check_rate, resample
from voicestream.media.wav import read_wav, read_wav_format

__all__ = ["DEFAULT_MAX_SECONDS", "RawStreamDecoder", "decode_audio", "decode_raw"]

DEFAULT_MAX_SECONDS = 4 * 3600.0

# Only plain audio containers may be probed. Demuxers such as HLS, concat or image
# sequences open further files or URLs named inside the input, which untrusted
# bytes must never get to do. "mov" covers MP4/M4A, "matroska" covers WebM.
_DEMUXER_WHITELIST = "wav,w64,mp3,ogg,flac,aac,mov,matroska,aiff,caf,au"

# What PyAV and libav* raise on bad input; anything else is a bug and propagates.
_DECODE_ERRORS = (av.error.FFmpegError, ValueError, EOFError, OSError)


def decode_audio(
    data: bytes, target_rate: int = 16000, max_seconds: float = DEFAULT_MAX_SECONDS
) -> bytes:
    """Any common audio file (WAV, MP3, Ogg, FLAC, AAC, M4A, WebM) as mono s16le.

    Raises InvalidAudio for input that holds no decodable audio or declares a rate or
    channel count outside ``check_source_audio``'s bounds (checked before decoding), and
    PayloadTooLarge when the container declares more than ``max_seconds`` (checked before
    decoding) or, for a file that declares no length, once more than that decodes, so a
    tiny file that expands into hours of audio is stopped early.
    """
    check_rate(target_rate, "target_rate")
    if not data:
        raise InvalidAudio("audio is empty")
    if data[:4] == b"RIFF":
        # Checked before any decoder runs: the header alone decides what decoding will cost.
        if read_wav_format(data).is_pcm16:
            # The common case of plain PCM WAV needs no demuxer at all.
            try:
                pcm, rate = read_wav(data)
            except InvalidAudio:
                pass  # an odd chunk layout libav may still read
            else:
                _check_duration(len(pcm) / 2 / rate, max_seconds)
                if not pcm:
                    raise InvalidAudio("WAV file holds no audio samples")
                return resample(pcm, rate, target_rate)
    try:
        pcm = _decode_with_libav(data, target_rate, max_seconds)
    except _DECODE_ERRORS as exc:
        raise InvalidAudio(f"could not decode audio: {_describe(exc)}") from None
    if not pcm:
        raise InvalidAudio("no audio samples could be decoded")
    return pcm


def _describe(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _check_duration(seconds: float, max_seconds: float) -> None:
    if seconds > max_seconds:
        raise PayloadTooLarge(
            f"audio is longer than the {max_seconds:g} s limit",
            details={"max_seconds": max_seconds},
        )


class _Mixer:
    """Downmix and resample decoded frames, restarting if the stream's layout changes."""

    def __init__(self, target_rate: int) -> None:
        self._target_rate = target_rate
        self._resampler: av.AudioResampler | None = None
        self._key: tuple[str, str, int] | None = None
        self._pts = 0
        self._chunks: list[bytes] = []

    def add(self, frame: av.AudioFrame) -> None:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._key:
            # Chained Ogg or ADTS may switch parameters mid-stream, which one filter
            # graph cannot follow: finish the old one and start a new one.
            self.flush()
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self._target_rate)
            self._key = key
            self._pts = 0
        assert self._resampler is not None
        # Rewrite timestamps as a gapless count: the demuxer's may jump or repeat,
        # and the output is meant to be the samples back to back.
        frame.pts = self._pts
        frame.time_base = Fraction(1, frame.sample_rate)
        self._pts += frame.samples
        self._take(self._resampler.resample(frame))

    def flush(self) -> None:
        if self._resampler is not None:
            self._take(self._resampler.resample(None))
            self._resampler = None

    def _take(self, frames: list[av.AudioFrame]) -> None:
        for out in frames:
            self._chunks.append(bytes(memoryview(out.planes[0])[: out.samples * 2]))

    def result(self) -> bytes:
        self.flush()
        return b"".join(self._chunks)


def _decode_with_libav(data: bytes, target_rate: int, max_seconds: float) -> bytes:
    container = av.open(
        io.BytesIO(data), mode="r", options={"format_whitelist": _DEMUXER_WHITELIST}
    )
    try:
        if not container.streams.audio:
            raise InvalidAudio("the file has no audio stream")
        stream = container.streams.audio[0]
        codec = stream.codec_context
        if codec is None:
            # libav found the stream but no decoder for it (a WAV saying 0 bits per sample).
            raise InvalidAudio("the audio stream's encoding is not supported")
        check_source_audio(codec.sample_rate, codec.channels)
        _check_declared_duration(container, stream, len(data), max_seconds)
        codec.thread_count = 1
        mixer = _Mixer(target_rate)
        seconds = 0.0
        decoded_any = False
        last_error: Exception | None = None
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                # One damaged packet should cost a few ms of audio, not the upload.
                last_error = exc
                continue
            for frame in frames:
                if not isinstance(frame, av.AudioFrame):
                    continue
                # Chained streams may change parameters mid-file: each frame meets the bounds.
                check_source_audio(frame.sample_rate, frame.layout.nb_channels)
                seconds += frame.samples / frame.sample_rate
                _check_duration(seconds, max_seconds)
                mixer.add(frame)
                decoded_any = True
        if not decoded_any and last_error is not None:
            raise last_error
        return mixer.result()
    finally:
        container.close()


def _check_declared_duration(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    upload_bytes: int,
    max_seconds: float,
) -> None:
    """PayloadTooLarge before any decoding when the file says it is longer than allowed.

    Every length the container gives counts (stream and container duration, frame count),
    so one honest field is not outvoted by another that lies low. For PCM the upload size
    bounds what can really decode, so a header claiming hours over a few bytes of samples
    is not refused, while an upload holding too many samples is, without decoding them.
    Compressed codecs have no such bound (FLAC or Opus silence costs next to no bytes):
    there the during-decode limit stays the backstop for files that declare no length.
    """
    codec = stream.codec_context
    declared: list[float] = []
    if stream.duration is not None and stream.time_base is not None:
        declared.append(float(stream.duration * stream.time_base))
    if container.duration is not None:
        declared.append(container.duration / av.time_base)
    if stream.frames > 0 and codec.frame_size > 0 and codec.sample_rate > 0:
        declared.append(stream.frames * codec.frame_size / codec.sample_rate)
    seconds = max(declared, default=None)
    bit_rate = codec.bit_rate or 0
    if codec.name.startswith("pcm_") and bit_rate > 0:
        can_hold = upload_bytes * 8 / bit_rate
        seconds = can_hold if seconds is None else min(seconds, can_hold)
    if seconds is not None and seconds > max_seconds:
        raise PayloadTooLarge(
            f"the audio declares {seconds:.0f} s, over the {max_seconds:g} s limit",
            details={"max_seconds": max_seconds, "declared_seconds": round(seconds, 3)},
        )


def _raw_to_pcm16(data: bytes, fmt: AudioFormat) -> bytes:
    if fmt.codec is Codec.PCM:
        if len(data) % 2:
            raise InvalidAudio("PCM s16le audio has an odd number of bytes")
        return data
    if fmt.codec is Codec.ULAW:
        return ulaw_to_pcm16(data)
    if fmt.codec is Codec.ALAW:
        return alaw_to_pcm16(data)
    raise UnsupportedFormat(f"{fmt.name} is not a raw format; decode it with decode_audio")


def decode_raw(data: bytes, fmt: AudioFormat, target_rate: int = 16000) -> bytes:
    """Headerless ``pcm_*``, ``ulaw_8000`` or ``alaw_8000`` input as mono s16le."""
    return resample(_raw_to_pcm16(data, fmt), fmt.sample_rate, target_rate)


class RawStreamDecoder:
    """Raw input arriving in messages, decoded and resampled as a continuous stream.

    Each PCM message must hold whole samples: a client that splits a sample across
    messages is sending something else than it says, and we reject it.
    """

    __slots__ = ("_resampler", "fmt", "target_rate")

    def __init__(self, fmt: AudioFormat, target_rate: int) -> None:
        if not fmt.is_raw:
            raise UnsupportedFormat(f"{fmt.name} is not a raw format")
        self.fmt = fmt
        self.target_rate = target_rate
        self._resampler = Resampler(fmt.sample_rate, target_rate)

    def decode(self, chunk: bytes) -> bytes:
        """The next message as s16le at ``target_rate`` (the resampler holds back a few samples)."""
        return self._resampler.process(_raw_to_pcm16(chunk, self.fmt))

    def flush(self) -> bytes:
        """The samples the resampler still holds, at the end of the stream."""
        return self._resampler.flush()
