"""G.711 against the standard's formulas, written here independently of the module's tables."""

from __future__ import annotations

import types
import warnings

import av
import numpy as np
import pytest

from voicestream.media.g711 import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16
from voicestream.media.signal import sine

ALL_CODES = bytes(range(256))
ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32)
ALL_PCM = ALL_SAMPLES.astype("<i2").tobytes()


def _audioop() -> types.ModuleType | None:
    # Gone in Python 3.13 and deprecated before; when present it is a third opinion.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return None
    return audioop


def ref_ulaw_decode(code: int) -> int:
    inverted = ~code & 0xFF
    segment = (inverted >> 4) & 0x7
    mantissa = inverted & 0xF
    magnitude = 4 * (((2 * mantissa + 33) << segment) - 33)
    return -magnitude if inverted & 0x80 else magnitude


def ref_alaw_decode(code: int) -> int:
    toggled = code ^ 0x55
    segment = (toggled >> 4) & 0x7
    mantissa = toggled & 0xF
    magnitude13 = 2 * mantissa + 1 if segment == 0 else (2 * mantissa + 33) << (segment - 1)
    return magnitude13 * 8 if toggled & 0x80 else -magnitude13 * 8


def ref_ulaw_encode(sample: int) -> int:
    value = sample >> 2  # 14-bit
    sign = 0x80 if value < 0 else 0x00
    magnitude = min(abs(value), 8159) + 33
    segment = magnitude.bit_length() - 6  # 33..63 is segment 0, 4096..8191 segment 7
    body = 0x7F if segment > 7 else (segment << 4) | ((magnitude >> (segment + 1)) & 0xF)
    return (sign | body) ^ 0xFF


def ref_alaw_encode(sample: int) -> int:
    value = sample >> 3  # 13-bit
    sign, magnitude = (0x80, value) if value >= 0 else (0x00, -value - 1)
    if magnitude >= 4096:
        body = 0x7F
    elif magnitude < 32:
        body = magnitude >> 1
    else:
        segment = magnitude.bit_length() - 5
        body = (segment << 4) | ((magnitude >> segment) & 0xF)
    return (sign | body) ^ 0x55


def _samples(pcm: bytes) -> list[int]:
    return [int(v) for v in np.frombuffer(pcm, dtype="<i2")]


def test_known_values() -> None:
    assert _samples(ulaw_to_pcm16(b"\xff\x00\x7f\x80")) == [0, -32124, 0, 32124]
    assert _samples(alaw_to_pcm16(b"\xd5\x55\x2a\xaa")) == [8, -8, -32256, 32256]
    assert pcm16_to_ulaw(np.array([0, 32767, -32768], "<i2").tobytes()) == b"\xff\x80\x00"
    assert pcm16_to_alaw(np.array([0, 32767, -32768], "<i2").tobytes()) == b"\xd5\xaa\x2a"


def test_decode_matches_the_standard_for_every_code() -> None:
    assert _samples(ulaw_to_pcm16(ALL_CODES)) == [ref_ulaw_decode(c) for c in ALL_CODES]
    assert _samples(alaw_to_pcm16(ALL_CODES)) == [ref_alaw_decode(c) for c in ALL_CODES]


def test_encode_matches_the_standard_for_every_sample() -> None:
    samples = [int(s) for s in ALL_SAMPLES]
    assert list(pcm16_to_ulaw(ALL_PCM)) == [ref_ulaw_encode(s) for s in samples]
    assert list(pcm16_to_alaw(ALL_PCM)) == [ref_alaw_encode(s) for s in samples]


def test_decode_matches_ffmpeg() -> None:
    for codec, ours in (("pcm_mulaw", ulaw_to_pcm16), ("pcm_alaw", alaw_to_pcm16)):
        ctx = av.CodecContext.create(codec, "r")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = 8000
        ctx.layout = "mono"
        frames = ctx.decode(av.Packet(ALL_CODES))
        decoded = b"".join(f.to_ndarray().astype("<i2").tobytes() for f in frames)
        assert decoded == ours(ALL_CODES), codec


def test_matches_audioop_when_available() -> None:
    audioop = _audioop()
    if audioop is None:
        pytest.skip("audioop is not in this Python")
    assert pcm16_to_ulaw(ALL_PCM) == audioop.lin2ulaw(ALL_PCM, 2)
    assert pcm16_to_alaw(ALL_PCM) == audioop.lin2alaw(ALL_PCM, 2)
    assert ulaw_to_pcm16(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert alaw_to_pcm16(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


def test_every_code_survives_decode_then_encode() -> None:
    back = pcm16_to_ulaw(ulaw_to_pcm16(ALL_CODES))
    # μ-law has two zeros: 0x7F ("negative zero") decodes to 0, which encodes as 0xFF.
    expected = bytes(0xFF if c == 0x7F else c for c in ALL_CODES)
    assert back == expected
    assert pcm16_to_alaw(alaw_to_pcm16(ALL_CODES)) == ALL_CODES


@pytest.mark.parametrize(
    ("encode", "decode"), [(pcm16_to_ulaw, ulaw_to_pcm16), (pcm16_to_alaw, alaw_to_pcm16)]
)
def test_companding_noise_is_small(encode: object, decode: object) -> None:
    assert callable(encode) and callable(decode)
    pcm = sine(440, 1.0, 8000, amplitude=0.5)
    restored = decode(encode(pcm))
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    y = np.frombuffer(restored, "<i2").astype(np.float64)
    snr = 10 * np.log10(np.sum(x * x) / np.sum((x - y) ** 2))
    assert snr > 35.0
    # Quantization steps grow with level but never beyond the top segment's.
    assert np.max(np.abs(x - y)) <= 1024


def test_encode_rejects_half_samples() -> None:
    with pytest.raises(ValueError, match="even"):
        pcm16_to_ulaw(b"\x00\x00\x00")
    assert pcm16_to_alaw(b"") == b""
    assert ulaw_to_pcm16(b"") == b""
