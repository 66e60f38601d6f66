"""Client audio is bounded by what its header declares, checked before anything is decoded: a
tiny file claiming an absurd rate or channel count is refused at once, not decoded for minutes."""

from __future__ import annotations

import resource
import struct
import time

import pytest

from voicestream.errors import InvalidAudio, PayloadTooLarge
from voicestream.media.decode import decode_audio
from voicestream.media.formats import MAX_SOURCE_CHANNELS, check_source_audio
from voicestream.media.signal import sine
from voicestream.media.wav import encode_wav, read_wav_format

from .test_wav import make_wav


def _wav_fields(
    payload: bytes, *, tag: int = 1, channels: int = 1, rate: int = 16000, align: int, bits: int
) -> bytes:
    """A WAV whose fmt fields are written as given, consistent or not."""
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(payload))
    return b"RIFF" + struct.pack("<I", len(body) + len(payload)) + body + payload


def _au(payload: bytes, *, rate: int, channels: int = 1) -> bytes:
    """Sun .au with 16-bit linear PCM: decoded by libav, not by our own WAV reader."""
    return struct.pack(">4sIIIII", b".snd", 24, len(payload), 3, rate, channels) + payload


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_28_kb_wav_declaring_1_hz_is_refused_at_once() -> None:
    # 14,000 samples at 1 Hz: almost four hours of audio, 16000-fold once resampled to 16 kHz.
    data = make_wav(bytes(28_000), rate=1)
    rss_before = _peak_rss_mib()
    started = time.monotonic()
    with pytest.raises(InvalidAudio, match="sample rate"):
        decode_audio(data, 16000)
    assert time.monotonic() - started < 1.0
    assert _peak_rss_mib() - rss_before < 100


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_wav_fields(bytes(64), align=2, bits=0), "inconsistent"),  # bits_per_sample=0
        (_wav_fields(bytes(64), align=0, bits=0), "block size of 0"),
        (_wav_fields(bytes(64), tag=3, align=4, bits=0), "inconsistent"),  # float, 0 bits
        (_wav_fields(bytes(64), align=2, bits=12), "inconsistent"),
        (_wav_fields(bytes(64), align=3, bits=16), "inconsistent"),
        (_wav_fields(bytes(64), channels=0, align=2, bits=16), "channel count 0"),
        (_wav_fields(bytes(64), channels=200, align=400, bits=16), "channel count 200"),
        (_wav_fields(bytes(64), rate=0, align=2, bits=16), "sample rate 0"),
        (_wav_fields(bytes(64), rate=999, align=2, bits=16), "sample rate 999"),
        (_wav_fields(bytes(64), rate=400_000, align=2, bits=16), "sample rate 400000"),
        (_wav_fields(bytes(64), tag=3, rate=1, align=4, bits=32), "sample rate 1"),  # libav's
        (_wav_fields(bytes(64), tag=0x11, rate=5, align=256, bits=4), "sample rate 5"),  # ADPCM
    ],
)
def test_wav_headers_no_audio_can_have_are_invalid_audio(data: bytes, message: str) -> None:
    with pytest.raises(InvalidAudio, match=message):
        decode_audio(data, 16000)
    with pytest.raises(InvalidAudio, match=message):
        read_wav_format(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_au(bytes(28_000), rate=1), "sample rate 1"),
        (_au(bytes(28_000), rate=200), "sample rate 200"),
        (_au(bytes(1600), rate=16000, channels=MAX_SOURCE_CHANNELS + 1), "channel count"),
    ],
)
def test_containers_libav_reads_are_bounded_too(data: bytes, message: str) -> None:
    with pytest.raises(InvalidAudio, match=message):
        decode_audio(data, 16000)


def test_audio_within_the_bounds_still_decodes() -> None:
    assert len(decode_audio(_au(sine(440, 0.5, 8000), rate=8000), 16000)) == 16000
    assert len(decode_audio(encode_wav(sine(440, 0.5, 1000), 1000), 16000)) == 16000
    stereo = _wav_fields(bytes(4 * 8000), channels=2, rate=8000, align=4, bits=16)
    assert len(decode_audio(stereo, 16000)) == 32000
    float_wav = _wav_fields(bytes(4 * 800), tag=3, rate=8000, align=4, bits=32)
    assert len(decode_audio(float_wav, 16000)) == 3200


def test_libav_stops_once_the_duration_limit_passes() -> None:
    # 100 s of .au: the decoder gives up after the limit, not after decoding all of it.
    data = _au(bytes(2 * 1000 * 100), rate=1000)
    with pytest.raises(PayloadTooLarge):
        decode_audio(data, 16000, max_seconds=10.0)


@pytest.mark.parametrize(("rate", "channels"), [(1000, 1), (192_000, 8), (44100, 2)])
def test_check_source_audio_accepts_real_layouts(rate: int, channels: int) -> None:
    check_source_audio(rate, channels)
