"""Streaming encoders from mono s16le to every output format.

Each encoder returns whatever bytes are ready after every ``encode`` call, so a
client can start playing before synthesis is over; ``finish`` drains the codec and
the container.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from voicestream.media.chapter_marks import ChapterMark, av_chapters, vorbis_chapter_tags
from voicestream.media.formats import AudioFormat, Codec
from voicestream.media.g711 import pcm16_to_alaw, pcm16_to_ulaw
from voicestream.media.resample import Resampler
from voicestream.media.tempo import Tempo
from voicestream.media.wav import wav_header

__all__ = ["StreamEncoder", "make_encoder"]

# Ogg flushes a page once it spans this long. libavformat's default is a full
# second, which would hold back the first second of audio; one page per 20 ms
# Opus packet costs ~28 bytes of framing but adds no latency.
_OGG_PAGE_DURATION_US = 20_000


@dataclass(frozen=True, slots=True)
class _MuxSpec:
    muxer: str
    codec: str
    container_options: dict[str, str]
    codec_options: dict[str, str]


_MUX_SPECS: dict[Codec, _MuxSpec] = {
    # No ID3 tag or Xing frame: a client gets bare MP3 frames from the first byte.
    Codec.MP3: _MuxSpec("mp3", "libmp3lame", {"id3v2_version": "0", "write_xing": "0"}, {}),
    Codec.AAC: _MuxSpec("adts", "aac", {}, {}),
    Codec.OPUS: _MuxSpec(
        "ogg", "libopus", {"page_duration": str(_OGG_PAGE_DURATION_US)}, {"frame_duration": "20"}
    ),
    # The default 8 KiB padding block only helps later in-place tag edits; a
    # stream would just send it before any audio.
    Codec.FLAC: _MuxSpec("flac", "flac", {"metadata_header_padding": "0"}, {}),
}


class StreamEncoder(abc.ABC):
    """Mono s16le in at the input rate, encoded bytes out as soon as they exist."""

    __slots__ = ("_finished", "fmt", "input_rate")

    def __init__(self, fmt: AudioFormat, input_rate: int) -> None:
        self.fmt = fmt
        self.input_rate = input_rate
        self._finished = False

    def encode(self, pcm: bytes) -> bytes:
        """Encode the next chunk; returns the output that is ready now, possibly ``b""``."""
        if self._finished:
            raise RuntimeError("encode() after finish()")
        if len(pcm) % 2:
            raise ValueError("PCM s16le needs an even number of bytes")
        return self._encode(pcm)

    def finish(self) -> bytes:
        """Flush everything still buffered; later calls return ``b""``."""
        if self._finished:
            return b""
        self._finished = True
        return self._finish()

    @abc.abstractmethod
    def _encode(self, pcm: bytes) -> bytes: ...

    @abc.abstractmethod
    def _finish(self) -> bytes: ...


class _RawEncoder(StreamEncoder):
    """PCM, G.711 and WAV: a resample and a per-sample mapping, no codec state."""

    __slots__ = ("_header", "_resampler")

    def __init__(self, fmt: AudioFormat, input_rate: int) -> None:
        super().__init__(fmt, input_rate)
        self._resampler = Resampler(input_rate, fmt.sample_rate)
        # Length unknown up front, so the header says "until EOF" (media.wav.complete_wav
        # writes the real sizes where the whole stream is known before it leaves).
        self._header = wav_header(fmt.sample_rate, None) if fmt.codec is Codec.WAV else b""

    def _convert(self, pcm: bytes) -> bytes:
        if self.fmt.codec is Codec.ULAW:
            pcm = pcm16_to_ulaw(pcm)
        elif self.fmt.codec is Codec.ALAW:
            pcm = pcm16_to_alaw(pcm)
        if self._header:
            pcm, self._header = self._header + pcm, b""
        return pcm

    def _encode(self, pcm: bytes) -> bytes:
        return self._convert(self._resampler.process(pcm))

    def _finish(self) -> bytes:
        return self._convert(self._resampler.flush())


class _ByteSink:
    """A write-only, non-seekable file for libavformat that we drain after every call.

    Having no ``seek`` makes libavformat flush after every packet and skip the
    header rewrites (MP3 Xing, FLAC STREAMINFO totals) that only seekable files allow.
    """

    __slots__ = ("_chunks",)

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


class _MuxEncoder(StreamEncoder):
    """MP3, AAC/ADTS, Ogg Opus and FLAC through libavcodec and libavformat."""

    __slots__ = ("_container", "_pts", "_resampler", "_sink", "_stream", "_time_base")

    def __init__(
        self, fmt: AudioFormat, input_rate: int, chapters: Sequence[ChapterMark] = ()
    ) -> None:
        super().__init__(fmt, input_rate)
        spec = _MUX_SPECS[fmt.codec]
        self._resampler = Resampler(input_rate, fmt.sample_rate)
        self._sink = _ByteSink()
        options = spec.container_options
        if chapters and fmt.codec is Codec.MP3:
            # A whole file, not a live stream: an ID3v2.3 tag up front carries the CHAP frames.
            options = {**options, "id3v2_version": "3"}
        self._container = av.open(
            self._sink, mode="w", format=spec.muxer, container_options=options
        )
        if chapters and fmt.codec is Codec.FLAC:
            self._container.metadata.update(vorbis_chapter_tags(chapters))
        elif chapters:
            self._container.set_chapters(av_chapters(chapters))
        stream = self._container.add_stream(spec.codec, rate=fmt.sample_rate)
        if not isinstance(stream, av.AudioStream):
            raise TypeError(f"{spec.codec} is not an audio codec")
        ctx = stream.codec_context
        ctx.layout = "mono"
        # Many streams encode at once; one thread each keeps them from oversubscribing.
        ctx.thread_count = 1
        if fmt.bitrate:
            ctx.bit_rate = fmt.bitrate
        if spec.codec_options:
            ctx.options = dict(spec.codec_options)
        self._stream = stream
        self._time_base = Fraction(1, fmt.sample_rate)
        self._pts = 0

    def _encode(self, pcm: bytes) -> bytes:
        self._write(self._resampler.process(pcm))
        return self._sink.take()

    def _finish(self) -> bytes:
        self._write(self._resampler.flush())
        # encode(None) drains the codec, including its fixed-size frame buffer whose
        # last partial frame libavcodec pads and marks for trimming.
        self._container.mux(self._stream.encode(None))
        self._container.close()
        return self._sink.take()

    def _write(self, pcm: bytes) -> None:
        if not pcm:
            return
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.fmt.sample_rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += samples.shape[1]
        # PyAV re-chunks to the codec's frame_size (1152 MP3, 1024 AAC, 960 Opus)
        # and converts to its sample format, holding the remainder for the next call.
        self._container.mux(self._stream.encode(frame))


class _TempoEncoder(StreamEncoder):
    """A tempo change (pitch kept) in front of the format's own encoder, done at the output
    rate: on 16 kHz flite speech, atempo at 16 kHz came out measurably less intelligible than
    the same speech resampled first (pocketsphinx lost two words of seven at 0.75x)."""

    __slots__ = ("_inner", "_resampler", "_tempo")

    def __init__(self, fmt: AudioFormat, input_rate: int, speed: float) -> None:
        super().__init__(fmt, input_rate)
        self._resampler = Resampler(input_rate, fmt.sample_rate)
        self._tempo = Tempo(fmt.sample_rate, speed)
        self._inner = make_encoder(fmt, fmt.sample_rate)

    def _encode(self, pcm: bytes) -> bytes:
        return self._inner.encode(self._tempo.process(self._resampler.process(pcm)))

    def _finish(self) -> bytes:
        tempo = self._tempo.process(self._resampler.flush()) + self._tempo.flush()
        return self._inner.encode(tempo) + self._inner.finish()


def make_encoder(
    fmt: AudioFormat,
    input_rate: int,
    *,
    speed: float = 1.0,
    chapters: Sequence[ChapterMark] = (),
) -> StreamEncoder:
    """An encoder from mono s16le at ``input_rate`` to ``fmt`` (resampling as needed), played
    ``speed`` times as fast with the pitch kept when that is not 1, with ``chapters`` marked
    where the container has chapter markers (MP3, Ogg Opus, FLAC; see media/chapter_marks.py,
    which also writes WAV's)."""
    if speed != 1.0:
        return _TempoEncoder(fmt, input_rate, speed)
    if fmt.codec in _MUX_SPECS:
        return _MuxEncoder(fmt, input_rate, chapters)
    return _RawEncoder(fmt, input_rate)
