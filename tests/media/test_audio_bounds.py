"""Client audio is bounded by what its header declares, checked before anything is decoded: a
tiny file claiming an absurd rate or channel count is refused at once, not decoded for minutes."""

from __future__ import annotations

import io
import resource
import struct
import time

import av
import numpy as np
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


def _encode(container: str, codec: str, seconds: float, rate: int) -> bytes:
    """``seconds`` of a 440 Hz tone, encoded by PyAV into ``container`` in memory."""
    out = io.BytesIO()
    with av.open(out, "w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=rate, layout="mono")
        tone = np.frombuffer(sine(440, seconds, rate), dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        frame.sample_rate = rate
        encoder_format = stream.codec_context.codec.audio_formats[0].name
        to_encoder = av.AudioResampler(format=encoder_format, layout="mono", rate=rate)
        for converted in to_encoder.resample(frame):
            muxer.mux(stream.encode(converted))
        muxer.mux(stream.encode(None))
    return out.getvalue()


def _flac_claiming(total_samples: int, *, seconds: float = 1.0) -> bytes:
    """A real FLAC whose STREAMINFO says it holds ``total_samples`` (0: unknown)."""
    data = bytearray(_encode("flac", "flac", seconds, 16000))
    assert data[:4] == b"fLaC"
    # STREAMINFO starts at 8; its 36-bit sample count spans the low nibble of byte 21
    # and bytes 22-25.
    data[21] = (data[21] & 0xF0) | (total_samples >> 32)
    data[22:26] = struct.pack(">I", total_samples & 0xFFFFFFFF)
    return bytes(data)


def test_a_flac_claiming_hours_is_refused_before_decoding() -> None:
    # One second of samples behind a header claiming 2^36 - 1 samples: 49 days at 16 kHz.
    with pytest.raises(PayloadTooLarge) as refused:
        decode_audio(_flac_claiming(2**36 - 1), 16000)
    assert refused.value.details["declared_seconds"] > 4 * 3600


@pytest.mark.parametrize(
    ("container", "codec", "rate"),
    [
        ("flac", "flac", 16000),
        ("ogg", "libopus", 48000),
        ("mp3", "libmp3lame", 16000),
        ("matroska", "libopus", 48000),  # a browser's MediaRecorder upload
        ("adts", "aac", 16000),
    ],
)
def test_compressed_audio_over_the_limit_is_refused_from_what_it_declares(
    container: str, codec: str, rate: int
) -> None:
    data = _encode(container, codec, 3.0, rate)
    with pytest.raises(PayloadTooLarge) as refused:
        decode_audio(data, 16000, max_seconds=1.0)
    # Refused from the header, not after a second of it had been decoded.
    assert refused.value.details["declared_seconds"] == pytest.approx(3.0, abs=0.2)
    assert len(decode_audio(data, 16000, max_seconds=4.0)) == pytest.approx(96000, rel=0.05)


def test_pcm_is_bounded_by_the_upload_size_before_decoding() -> None:
    # 100 s of .au whose header leaves the length unknown: the bytes alone say too long.
    data = struct.pack(">4sIIIII", b".snd", 24, 0xFFFFFFFF, 3, 1000, 1) + bytes(2 * 1000 * 100)
    with pytest.raises(PayloadTooLarge) as refused:
        decode_audio(data, 16000, max_seconds=10.0)
    assert refused.value.details["declared_seconds"] == pytest.approx(100, abs=0.1)


def test_a_pcm_header_overstating_its_length_is_not_refused() -> None:
    # Claims 2^31 bytes (18 h at 16 kHz), holds half a second: only the samples count.
    data = _au(sine(440, 0.5, 16000), rate=16000)
    data = data[:8] + struct.pack(">I", 0x7FFFFFFF) + data[12:]
    assert len(decode_audio(data, 16000)) == 16000


def test_a_file_declaring_no_length_is_still_stopped_while_decoding() -> None:
    with pytest.raises(PayloadTooLarge) as refused:
        decode_audio(_flac_claiming(0, seconds=3.0), 16000, max_seconds=1.0)
    assert "declared_seconds" not in refused.value.details
