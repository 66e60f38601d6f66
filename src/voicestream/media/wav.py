"""RIFF/WAVE: writing 16-bit PCM headers (also for endless streams) and reading PCM WAV."""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

from voicestream.errors import InvalidAudio

__all__ = ["WAV_HEADER_SIZE", "encode_wav", "read_wav", "wav_header"]

WAV_HEADER_SIZE = 44
_UNKNOWN_SIZE = 0xFFFFFFFF  # decoders treat a maxed-out size as "read until EOF"
_FORMAT_PCM = 0x0001
_FORMAT_EXTENSIBLE = 0xFFFE
# The first two bytes of a WAVE_FORMAT_EXTENSIBLE SubFormat GUID carry the plain format tag.
_EXTENSIBLE_FMT_MIN = 40


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


def encode_wav(pcm: bytes, sample_rate: int) -> bytes:
    """Mono s16le wrapped as a complete WAV file."""
    if len(pcm) % 2:
        raise ValueError("PCM s16le needs an even number of bytes")
    return wav_header(sample_rate, len(pcm) // 2) + pcm


def read_wav(data: bytes) -> tuple[bytes, int]:
    """Mono s16le and the sample rate of a 16-bit PCM WAV; other channel counts are averaged.

    A data chunk of unknown size (0 or 0xFFFFFFFF, as streaming writers leave it) runs
    to the end of the input; one that claims more than is there (a cut-off file)
    yields the whole samples that are present.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InvalidAudio("not a WAV file (no RIFF/WAVE header)")
    fmt: tuple[int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[body : body + size])
        elif chunk_id == b"data":
            if fmt is None:
                raise InvalidAudio("WAV data chunk comes before its fmt chunk")
            channels, rate, _ = fmt
            # Writers that cannot seek back leave the size at 0 or at the maximum.
            end = len(data) if size in (0, _UNKNOWN_SIZE) else body + size
            return _to_mono(data[body:end], channels), rate
        pos = body + size + (size & 1)  # chunks are padded to an even length
    if fmt is None:
        raise InvalidAudio("WAV file has no fmt chunk")
    raise InvalidAudio("WAV file has no data chunk")


def _parse_fmt(chunk: bytes) -> tuple[int, int, int]:
    if len(chunk) < 16:
        raise InvalidAudio("WAV fmt chunk is truncated")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == _FORMAT_EXTENSIBLE and len(chunk) >= _EXTENSIBLE_FMT_MIN:
        (tag,) = struct.unpack_from("<H", chunk, 24)
    if tag != _FORMAT_PCM or bits != 16:
        raise InvalidAudio(f"only 16-bit PCM WAV is supported (format {tag:#x}, {bits} bits)")
    if channels < 1 or rate < 1 or block_align != channels * 2:
        raise InvalidAudio("WAV fmt chunk is inconsistent")
    return channels, rate, block_align


def _to_mono(payload: bytes, channels: int) -> bytes:
    usable = len(payload) - len(payload) % (2 * channels)
    if channels == 1:
        return payload[:usable]
    frames: npt.NDArray[np.int16] = np.frombuffer(payload, dtype="<i2", count=usable // 2)
    mono = frames.reshape(-1, channels).mean(axis=1, dtype=np.float32)
    out: npt.NDArray[np.int16] = np.round(mono).astype("<i2")
    return out.tobytes()
