"""ITU-T G.711 μ-law and A-law, as table lookups over whole buffers.

Encoding follows the classic Sun reference (the one ``audioop`` used): μ-law takes
the top 14 bits and negates negative values in two's complement, A-law takes the top
13 bits and uses one's complement. Decoding is unambiguous in the standard.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["alaw_to_pcm16", "pcm16_to_alaw", "pcm16_to_ulaw", "ulaw_to_pcm16"]

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # largest 14-bit magnitude before the bias would overflow the top segment
# Upper magnitude bound of each of the 8 segments (μ-law: biased 14-bit; A-law: 13-bit).
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _all_pcm16() -> npt.NDArray[np.int32]:
    # Ordered by the uint16 view of each sample so a buffer's uint16 view indexes straight in.
    return np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    pcm14 = _all_pcm16() >> 2
    mask = np.where(pcm14 < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm14), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, magnitude, side="left")
    code = (seg << 4) | ((magnitude >> (seg + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    pcm13 = _all_pcm16() >> 3
    negative = pcm13 < 0
    mask = np.where(negative, 0x55, 0xD5)  # even-bit inversion, sign bit set for >= 0
    magnitude = np.where(negative, -pcm13 - 1, pcm13)
    seg = np.searchsorted(_ALAW_SEG_END, magnitude, side="left")
    shift = np.where(seg < 2, 1, seg)
    code = (seg << 4) | ((magnitude >> shift) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> npt.NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, _ULAW_BIAS - magnitude, magnitude - _ULAW_BIAS).astype("<i2")


def _build_alaw_decode() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (code & 0x70) >> 4
    mantissa = (code & 0x0F) << 4
    magnitude = np.where(
        seg == 0,
        mantissa + 8,
        (mantissa + 0x108) << np.maximum(seg - 1, 0),
    )
    return np.where(code & 0x80, magnitude, -magnitude).astype("<i2")


_ULAW_ENCODE = _build_ulaw_encode()
_ALAW_ENCODE = _build_alaw_encode()
_ULAW_DECODE = _build_ulaw_decode()
_ALAW_DECODE = _build_alaw_decode()


def _encode(pcm: bytes, table: npt.NDArray[np.uint8]) -> bytes:
    if len(pcm) % 2:
        raise ValueError("PCM s16le needs an even number of bytes")
    # Indexing by the uint16 view maps each sample to its table entry in one pass.
    index: npt.NDArray[np.uint16] = np.frombuffer(pcm, dtype="<u2")
    return table[index].tobytes()


def _decode(data: bytes, table: npt.NDArray[np.int16]) -> bytes:
    return table[np.frombuffer(data, dtype=np.uint8)].tobytes()


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """Mono s16le to G.711 μ-law, one byte per sample."""
    return _encode(pcm, _ULAW_ENCODE)


def ulaw_to_pcm16(data: bytes) -> bytes:
    """G.711 μ-law to mono s16le."""
    return _decode(data, _ULAW_DECODE)


def pcm16_to_alaw(pcm: bytes) -> bytes:
    """Mono s16le to G.711 A-law, one byte per sample."""
    return _encode(pcm, _ALAW_ENCODE)


def alaw_to_pcm16(data: bytes) -> bytes:
    """G.711 A-law to mono s16le."""
    return _decode(data, _ALAW_DECODE)
