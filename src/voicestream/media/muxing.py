"""Media files as containers: what a file holds (``probe``) and new audio tracks muxed under an
existing video without re-encoding it (``mux_under_video``).

Everything read here is untrusted, like any upload: PyAV failures come out as ``InvalidAudio``
with a message a caller can show, never as a raw PyAV exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from voicestream.errors import InvalidAudio
from voicestream.media.resample import Resampler, check_rate

__all__ = ["MediaInfo", "MuxAudio", "mux_under_video", "probe", "video_packets"]

# The demuxers of chunked_decode plus WebM's and MPEG-PS's. Demuxers that open further files or
# URLs named inside the input (HLS, concat, image sequences) stay out.
_DEMUXER_WHITELIST = (
    "wav,w64,mp3,ogg,flac,aac,mov,matroska,aiff,caf,au,avi,mpegts,flv,asf,mpeg,webm_dash_manifest"
)
_ERRORS = (av.error.FFmpegError, ValueError, EOFError, OSError)
# AAC is defined for these rates; other rates are resampled to 48 kHz.
_AAC_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000})
_AAC_FALLBACK_RATE = 48000
_AAC_BIT_RATE = 128_000
# How far ahead of the video the audio is encoded while interleaving, in seconds.
_AUDIO_LEAD = 1.0
_AUDIO_CHUNK_SECONDS = 1.0

# MP4 stores a track's language as an ISO 639-2/T code; FFmpeg drops anything else. The
# two-letter codes map to their three-letter form here (three-letter codes pass unchanged).
_ISO_639_2 = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "ca": "cat", "cs": "ces", "cy": "cym",
    "da": "dan", "de": "deu", "el": "ell", "en": "eng", "es": "spa", "et": "est", "eu": "eus",
    "fa": "fas", "fi": "fin", "fil": "fil", "fr": "fra", "ga": "gle", "gl": "glg", "gu": "guj",
    "he": "heb", "hi": "hin", "hr": "hrv", "hu": "hun", "hy": "hye", "id": "ind", "is": "isl",
    "it": "ita", "ja": "jpn", "ka": "kat", "kk": "kaz", "km": "khm", "kn": "kan", "ko": "kor",
    "lt": "lit", "lv": "lav", "mk": "mkd", "ml": "mal", "mn": "mon", "mr": "mar", "ms": "msa",
    "mt": "mlt", "my": "mya", "nb": "nob", "ne": "nep", "nl": "nld", "nn": "nno", "no": "nor",
    "pa": "pan", "pl": "pol", "pt": "por", "ro": "ron", "ru": "rus", "si": "sin", "sk": "slk",
    "sl": "slv", "sq": "sqi", "sr": "srp", "sv": "swe", "sw": "swa", "ta": "tam", "te": "tel",
    "th": "tha", "tl": "tgl", "tr": "tur", "uk": "ukr", "ur": "urd", "uz": "uzb", "vi": "vie",
    "zh": "zho", "zu": "zul",
}  # fmt: skip


def _describe(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _open(path: Path) -> Any:
    try:
        return av.open(str(path), mode="r", options={"format_whitelist": _DEMUXER_WHITELIST})
    except _ERRORS as exc:
        raise InvalidAudio(
            f"the file is not audio or video that can be read: {_describe(exc)}"
        ) from None


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a media file holds."""

    duration: float
    has_audio: bool
    has_video: bool
    video_codec: str | None
    width: int | None
    height: int | None


def _stream_seconds(stream: Any) -> float:
    if stream.duration is None or stream.time_base is None:
        return 0.0
    return float(stream.duration * stream.time_base)


def _video_stream(container: Any) -> Any:
    """The first real video stream: an MP3's or M4A's cover art is a one-picture "video" stream
    marked as an attached picture, and such a file is audio."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _decodes(container: Any, stream: Any) -> bool:
    """Whether ``stream`` yields at least one frame: a header alone proves little."""
    try:
        for packet in container.demux(stream):
            for _frame in packet.decode():
                return True
    except _ERRORS:
        return False
    return False


def probe(path: Path) -> MediaInfo:
    """The streams and duration of the media file at ``path`` (blocking).

    Raises:
        InvalidAudio: not a media file, no audio or video stream, or nothing decodable.
    """
    with _open(path) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = _video_stream(container)
        if audio is None and video is None:
            raise InvalidAudio("the file has no audio or video stream")
        if container.duration is not None and container.duration > 0:
            duration = container.duration / av.time_base
        else:
            duration = max(_stream_seconds(s) for s in (audio, video) if s is not None)
        first = video if video is not None else audio
        if not _decodes(container, first):
            kind = "video" if first is video else "audio"
            raise InvalidAudio(f"the file's {kind} stream could not be decoded")
        codec = video.codec_context if video is not None else None
        return MediaInfo(
            duration=float(duration),
            has_audio=audio is not None,
            has_video=video is not None,
            video_codec=codec.name if codec is not None else None,
            width=codec.width if codec is not None else None,
            height=codec.height if codec is not None else None,
        )


def video_packets(path: Path) -> list[bytes]:
    """The payloads of the first video stream's packets, in file order (blocking).

    Raises:
        InvalidAudio: not a media file, or no video stream.
    """
    with _open(path) as container:
        stream = _video_stream(container)
        if stream is None:
            raise InvalidAudio("the file has no video stream")
        return [bytes(p) for p in container.demux(stream) if p.size]


@dataclass(frozen=True, slots=True)
class MuxAudio:
    """One audio track to mux: mono s16le at ``rate``, with its language and title."""

    pcm: bytes
    rate: int
    language: str | None = None
    title: str | None = None


def _language(code: str) -> str:
    lowered = code.strip().lower().split("-")[0].split("_")[0]
    return _ISO_639_2.get(lowered, lowered)


class _AudioTrack:
    """One MuxAudio encoded to AAC a chunk at a time, so it interleaves with the video."""

    def __init__(self, output: Any, audio: MuxAudio, default: bool) -> None:
        self.rate = audio.rate if audio.rate in _AAC_RATES else _AAC_FALLBACK_RATE
        self._resampler = Resampler(audio.rate, self.rate)
        self._pcm = audio.pcm
        self._src_rate = audio.rate
        self._read = 0  # bytes of the source taken so far
        self._pts = 0  # samples sent to the encoder so far
        self._time_base = Fraction(1, self.rate)
        self.stream = output.add_stream("aac", rate=self.rate, layout="mono")
        self.stream.bit_rate = _AAC_BIT_RATE
        if audio.language:
            self.stream.metadata["language"] = _language(audio.language)
        if audio.title:
            self.stream.metadata["title"] = audio.title
            self.stream.metadata["handler_name"] = audio.title
        self.stream.disposition = (
            av.stream.Disposition.default if default else av.stream.Disposition(0)
        )

    @property
    def done(self) -> bool:
        return self._read >= len(self._pcm)

    @property
    def seconds(self) -> float:
        return self._read / 2 / self._src_rate

    def _frame(self, pcm: bytes) -> Any:
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += samples.shape[1]
        return frame

    def encode_until(self, seconds: float) -> Iterator[Any]:
        """Packets for the source audio up to ``seconds`` (then more on later calls)."""
        chunk = max(2, round(_AUDIO_CHUNK_SECONDS * self._src_rate) * 2)
        while not self.done and self.seconds < seconds:
            piece = self._pcm[self._read : self._read + chunk]
            self._read += len(piece)
            ready = self._resampler.process(piece)
            if self.done:
                ready += self._resampler.flush()
            if ready:
                yield from self.stream.encode(self._frame(ready))

    def finish(self) -> Iterator[Any]:
        yield from self.encode_until(float("inf"))
        yield from self.stream.encode(None)


def _video_packets(source: Any, stream: Any) -> Iterator[Any]:
    """``stream``'s packets that carry data; a demuxing failure is the input's fault."""
    try:
        for packet in source.demux(stream):
            # Matroska leaves the dts of the first packets unset; they still belong in the copy.
            if packet.size:
                yield packet
    except _ERRORS as exc:
        raise InvalidAudio(f"the video could not be read: {_describe(exc)}") from None


def mux_under_video(video: Path, audio: Sequence[MuxAudio], out: Path) -> None:
    """Writes an MP4 to ``out``: ``video``'s first video stream copied packet for packet, then
    one AAC track per ``audio`` in order, the first being the default track (blocking).

    On any failure ``out`` is removed: nothing half-written is left behind.

    Raises:
        InvalidAudio: ``video`` is not media, has no video stream, or its video cannot be
            stored in MP4.
        ValueError: a MuxAudio with a bad rate or PCM.
    """
    for track in audio:
        check_rate(track.rate, "audio rate")
        if len(track.pcm) % 2:
            raise ValueError("PCM s16le needs an even number of bytes")
    try:
        _mux(video, audio, out)
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _mux(video: Path, audio: Sequence[MuxAudio], out: Path) -> None:
    with _open(video) as source:
        in_stream = _video_stream(source)
        if in_stream is None:
            raise InvalidAudio("the file has no video stream to put the audio under")
        with av.open(str(out), mode="w", format="mp4") as output:
            try:
                out_stream = output.add_stream_from_template(in_stream)
                tracks = [_AudioTrack(output, a, index == 0) for index, a in enumerate(audio)]
                output.start_encoding()
            except _ERRORS as exc:
                raise InvalidAudio(
                    f"the video's codec ({in_stream.codec_context.name}) cannot be stored in "
                    f"MP4: {_describe(exc)}"
                ) from None
            # Audio is encoded up to a little past each video packet so the muxer interleaves
            # without holding either stream back in memory.
            at = 0.0
            for packet in _video_packets(source, in_stream):
                stamp = packet.dts if packet.dts is not None else packet.pts
                if stamp is not None:
                    at = float(stamp * packet.time_base)
                for track in tracks:
                    output.mux(list(track.encode_until(at + _AUDIO_LEAD)))
                packet.stream = out_stream
                output.mux(packet)
            for track in tracks:
                output.mux(list(track.finish()))
