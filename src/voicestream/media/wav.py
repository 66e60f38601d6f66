"""RIFF/WAVE: writing 16-bit PCM headers (also for endless streams) and reading PCM WAV."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voicestream.errors import InvalidAudio
from voicestream.media.formats import check_source_audio

__all__ = [
    "WAV_HEADER_SIZE",
    "WavFormat",
    "complete_wav",
    "encode_wav",
    "read_wav",
    "read_wav_format",
    "wav_header",
]

WAV_HEADER_SIZE = 44
_UNKNOWN_SIZE = 0xFFFFFFFF  # decoders treat a maxed-out size as "read until EOF"
_FORMAT_PCM = 0x0001
_FORMAT_EXTENSIBLE = 0xFFFE
# The first two bytes of a WAVE_FORMAT_EXTENSIBLE SubFormat GUID carry the plain format tag.
_EXTENSIBLE_FMT_MIN = 40
# Tags whose blocks are whole samples, so the sample size must be real and fill the block:
# PCM, IEEE float, A-law, µ-law. Compressed tags (ADPCM, MP3…) may say 0 bits per sample.
_SAMPLE_FORMATS = frozenset({_FORMAT_PCM, 0x0003, 0x0006, 0x0007})
_SAMPLE_SIZES = frozenset({8, 16, 24, 32, 64})


def wav_header(
    sample_rate: int, num_samples: int | None, channels: int = 1, bits: int = 16
) -> bytes:
    """A canonical 44-byte PCM header; ``num_samples=None`` for a stream of unknown length."""
    if sample_rate <= 0 or channels <= 0 or bits <= 0 or bits % 8:
        raise ValueError("sample_rate and channels must be positive, bits a multiple of 8")
    block_align = channels * bits // 8
    if num_samples is None:
        data_size = riff_size = _UNKNOWN_SIZE
    else:
        if num_samples < 0:
            raise ValueError("num_samples must not be negative")
        data_size = num_samples * block_align
        riff_size = data_size + WAV_HEADER_SIZE - 8
        if riff_size > _UNKNOWN_SIZE:
            raise ValueError("too long for a RIFF file")
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff_size,
        b"WAVE",
        b"fmt ",
        16,
        _FORMAT_PCM,
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        bits,
        b"data",
        data_size,
    )


def complete_wav(data: bytes) -> bytes:
    """A WAV file written as a stream (``wav_header(rate, None)`` then samples), with the real
    RIFF and data sizes of the samples present.

    A stream's header must leave before its length is known, so it says 0xFFFFFFFF ("until
    EOF"): FFmpeg reads such a file to its end, but Python's ``wave`` reports 2**31 - 1 frames
    and tools that trust the header show a duration of hours. Whoever holds the whole stream
    before sending (or storing) it writes the real sizes with this.

    Raises:
        ValueError: not a canonical 44-byte PCM header, samples that are not whole frames, or
            too long for RIFF's 32-bit sizes.
    """
    if (
        len(data) < WAV_HEADER_SIZE
        or data[:4] != b"RIFF"
        or data[8:16] != b"WAVEfmt "
        or data[36:40] != b"data"
    ):
        raise ValueError("not a WAV stream with a canonical 44-byte header")
    (block_align,) = struct.unpack_from("<H", data, 32)
    data_size = len(data) - WAV_HEADER_SIZE
    if not block_align or data_size % block_align:
        raise ValueError("the samples are not whole frames")
    riff_size = data_size + WAV_HEADER_SIZE - 8
    if riff_size > _UNKNOWN_SIZE:
        raise ValueError("too long for a RIFF file")
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", riff_size),
            data[8:40],
            struct.pack("<I", data_size),
            data[WAV_HEADER_SIZE:],
        )
    )


def encode_wav(pcm: bytes, sample_rate: int) -> bytes:
    """Mono s16le wrapped as a complete WAV file."""
    if len(pcm) % 2:
        raise ValueError("PCM s16le needs an even number of bytes")
    return wav_header(sample_rate, len(pcm) // 2) + pcm


@dataclass(frozen=True, slots=True)
class WavFormat:
    """A WAV file's fmt chunk; ``tag`` is the plain format tag, also for WAVE_FORMAT_EXTENSIBLE."""

    tag: int
    channels: int
    sample_rate: int
    block_align: int
    bits: int

    @property
    def is_pcm16(self) -> bool:
        return self.tag == _FORMAT_PCM and self.bits == 16


def read_wav_format(data: bytes) -> WavFormat:
    """The checked fmt chunk of a RIFF/WAVE file, read before any decoder sees the file.

    Raises:
        InvalidAudio: not RIFF/WAVE, no fmt chunk, or a fmt chunk no audio can have: a rate or
            channel count outside ``check_source_audio``'s bounds, or, for sample formats (PCM,
            float, A-law, µ-law), a sample size of 0 or one that disagrees with the block size.
    """
    for chunk_id, body, size in _chunks(data):
        if chunk_id == b"fmt ":
            return _parse_fmt(data[body : body + size])
    raise InvalidAudio("WAV file has no fmt chunk")


def read_wav(data: bytes) -> tuple[bytes, int]:
    """Mono s16le and the sample rate of a 16-bit PCM WAV; other channel counts are averaged.

    A data chunk of unknown size (0 or 0xFFFFFFFF, as streaming writers leave it) runs
    to the end of the input; one that claims more than is there (a cut-off file)
    yields the whole samples that are present.
    """
    fmt: WavFormat | None = None
    for chunk_id, body, size in _chunks(data):
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[body : body + size])
            if not fmt.is_pcm16:
                raise InvalidAudio(
                    f"only 16-bit PCM WAV is supported (format {fmt.tag:#x}, {fmt.bits} bits)"
                )
        elif chunk_id == b"data":
            if fmt is None:
                raise InvalidAudio("WAV data chunk comes before its fmt chunk")
            # Writers that cannot seek back leave the size at 0 or at the maximum.
            end = len(data) if size in (0, _UNKNOWN_SIZE) else body + size
            return _to_mono(data[body:end], fmt.channels), fmt.sample_rate
    if fmt is None:
        raise InvalidAudio("WAV file has no fmt chunk")
    raise InvalidAudio("WAV file has no data chunk")


def _chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(chunk id, offset of its body, declared size) of each chunk of a RIFF/WAVE file."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InvalidAudio("not a WAV file (no RIFF/WAVE header)")
    pos = 12
    while pos + 8 <= len(data):
        (size,) = struct.unpack_from("<I", data, pos + 4)
        yield data[pos : pos + 4], pos + 8, size
        pos += 8 + size + (size & 1)  # chunks are padded to an even length


def _parse_fmt(chunk: bytes) -> WavFormat:
    if len(chunk) < 16:
        raise InvalidAudio("WAV fmt chunk is truncated")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == _FORMAT_EXTENSIBLE and len(chunk) >= _EXTENSIBLE_FMT_MIN:
        (tag,) = struct.unpack_from("<H", chunk, 24)
    check_source_audio(rate, channels)
    if block_align < 1:
        raise InvalidAudio("WAV fmt chunk declares a block size of 0")
    if tag in _SAMPLE_FORMATS and (
        bits not in _SAMPLE_SIZES or block_align != channels * bits // 8
    ):
        raise InvalidAudio(
            f"WAV fmt chunk is inconsistent ({bits} bits per sample, {channels} channels, "
            f"blocks of {block_align} bytes)"
        )
    return WavFormat(tag, channels, rate, block_align, bits)


def _to_mono(payload: bytes, channels: int) -> bytes:
    usable = len(payload) - len(payload) % (2 * channels)
    if channels == 1:
        return payload[:usable]
    frames: npt.NDArray[np.int16] = np.frombuffer(payload, dtype="<i2", count=usable // 2)
    mono = frames.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    out: npt.NDArray[np.int16] = np.round(mono).astype("<i2")
    return out.tobytes()
