"""Encode with make_encoder, decode with decode_audio / decode_raw, compare with the source."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from voicestream.media.decode import RawStreamDecoder, decode_audio, decode_raw
from voicestream.media.encode import make_encoder
from voicestream.media.formats import AudioFormat, parse_format
from voicestream.media.resample import resample
from voicestream.media.signal import best_lag_correlation, sine

from ._signals import tone_and_chirp

INPUT_RATE = 24000
LOSSLESS = ["pcm_16000", "pcm_48000", "wav_16000", "wav_44100", "flac_16000", "flac_48000"]
COMPANDED = ["ulaw_8000", "alaw_8000"]
LOSSY = [
    "mp3_44100_128",
    "mp3_24000_48",
    "mp3_22050_32",
    "opus_48000_64",
    "opus_48000_32",
    "aac_44100_128",
    "aac_48000_128",
]


def encode_in_chunks(fmt: AudioFormat, pcm: bytes, chunk_ms: int = 20) -> list[bytes]:
    encoder = make_encoder(fmt, INPUT_RATE)
    step = INPUT_RATE * chunk_ms // 1000 * 2
    chunks = [encoder.encode(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    return [*chunks, encoder.finish()]


def decode(fmt: AudioFormat, data: bytes) -> bytes:
    if fmt.is_raw:
        return decode_raw(data, fmt, fmt.sample_rate)
    return decode_audio(data, fmt.sample_rate)


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_round_trip_is_exact(name: str, source_24k: bytes) -> None:
    fmt = parse_format(name)
    decoded = decode(fmt, b"".join(encode_in_chunks(fmt, source_24k)))
    assert decoded == resample(source_24k, INPUT_RATE, fmt.sample_rate)


@pytest.mark.parametrize("name", COMPANDED)
def test_g711_round_trip_is_close(name: str, source_24k: bytes) -> None:
    fmt = parse_format(name)
    data = b"".join(encode_in_chunks(fmt, source_24k))
    assert len(data) == 16000  # one byte per sample at 8 kHz
    reference = resample(source_24k, INPUT_RATE, 8000)
    corr, lag = best_lag_correlation(reference, decode(fmt, data), 100)
    assert corr > 0.999
    assert lag == 0


@pytest.mark.parametrize("name", LOSSY)
def test_lossy_round_trip_correlates(name: str, source_24k: bytes) -> None:
    fmt = parse_format(name)
    decoded = decode(fmt, b"".join(encode_in_chunks(fmt, source_24k)))
    reference = resample(source_24k, INPUT_RATE, fmt.sample_rate)
    corr, lag = best_lag_correlation(reference, decoded, fmt.sample_rate // 10)
    assert corr > 0.9
    # Codec delay only ever moves the decoded copy later, and not by much.
    assert 0 <= lag < fmt.sample_rate // 10
    extra = len(decoded) // 2 - len(reference) // 2
    assert 0 <= extra < fmt.sample_rate // 10


@pytest.mark.parametrize("name", ["mp3_44100_128", "opus_48000_64", "aac_44100_128", "flac_24000"])
def test_decode_to_another_rate(name: str, source_24k: bytes) -> None:
    fmt = parse_format(name)
    decoded = decode_audio(b"".join(encode_in_chunks(fmt, source_24k)), 16000)
    corr, _ = best_lag_correlation(resample(source_24k, INPUT_RATE, 16000), decoded, 1600)
    assert corr > 0.9


@pytest.mark.parametrize(
    "name", ["pcm_16000", "wav_24000", "ulaw_8000", "mp3_44100_128", "opus_48000_64",
             "aac_48000_128", "flac_44100"],
)  # fmt: skip
def test_output_streams_before_finish(name: str) -> None:
    fmt = parse_format(name)
    pcm = tone_and_chirp(INPUT_RATE) + sine(660, 1.0, INPUT_RATE)
    chunks = encode_in_chunks(fmt, pcm)
    first = next(i for i, chunk in enumerate(chunks) if chunk)
    # 150 chunks of 20 ms; the first bytes must come within the first 200 ms, and
    # most of the stream must be out before finish().
    assert first < 10
    assert sum(map(len, chunks[:-1])) > 0.9 * sum(map(len, chunks))
    decoded = decode(fmt, b"".join(chunks))
    reference = resample(pcm, INPUT_RATE, fmt.sample_rate)
    corr, _ = best_lag_correlation(reference, decoded, fmt.sample_rate // 10)
    assert corr > 0.9


@pytest.mark.parametrize(
    ("name", "magic"),
    [
        ("opus_48000_64", b"OggS"),
        ("flac_16000", b"fLaC"),
        ("wav_16000", b"RIFF"),
        ("mp3_44100_128", b"\xff"),  # frame sync straight away: no ID3 tag
        ("aac_44100_128", b"\xff"),  # ADTS sync word
    ],
)
def test_container_framing(name: str, magic: bytes) -> None:
    data = b"".join(encode_in_chunks(parse_format(name), sine(440, 0.5, INPUT_RATE)))
    assert data.startswith(magic)
    if name.startswith("opus"):
        assert b"OpusHead" in data[:200]
    if name.startswith(("mp3", "aac")):
        assert data[1] & 0xF0 in (0xF0, 0xE0)
    if name.startswith("wav"):
        assert data[40:44] == b"\xff\xff\xff\xff"


@pytest.mark.parametrize(
    ("low_name", "high_name"),
    [("opus_48000_32", "opus_48000_128"), ("mp3_44100_32", "mp3_44100_192")],
)
def test_bitrate_is_applied(low_name: str, high_name: str) -> None:
    low, high = parse_format(low_name), parse_format(high_name)
    pcm = tone_and_chirp(INPUT_RATE)
    low_size = len(b"".join(encode_in_chunks(low, pcm)))
    high_size = len(b"".join(encode_in_chunks(high, pcm)))
    assert low.bitrate is not None
    # Two seconds at the nominal bitrate, give or take VBR and container overhead
    # (a page per 20 ms Opus packet adds about 11 kbit/s).
    assert 0.5 < low_size * 8 / 2 / low.bitrate < 1.8
    assert high_size > 2.5 * low_size


def test_aac_bitrate() -> None:
    fmt = parse_format("aac_48000_128")
    size = len(b"".join(encode_in_chunks(fmt, tone_and_chirp(INPUT_RATE))))
    assert 0.5 < size * 8 / 2 / 128000 < 1.3


def test_empty_stream_and_finish_twice() -> None:
    for name in ("pcm_16000", "wav_16000", "mp3_44100_128", "opus_48000_64"):
        encoder = make_encoder(parse_format(name), INPUT_RATE)
        out = encoder.encode(b"")
        # Containers may send their header before any audio; nothing else comes out.
        assert out == b"" or out.startswith((b"RIFF", b"OggS"))
        encoder.finish()
        assert encoder.finish() == b""
        with pytest.raises(RuntimeError):
            encoder.encode(b"\x00\x00")


def test_encoder_rejects_half_samples() -> None:
    encoder = make_encoder(parse_format("pcm_16000"), 16000)
    with pytest.raises(ValueError, match="even"):
        encoder.encode(b"\x00")


def test_same_rate_pcm_encoder_passes_bytes_through() -> None:
    pcm = sine(440, 0.1, 16000)
    encoder = make_encoder(parse_format("pcm_16000"), 16000)
    assert encoder.encode(pcm) + encoder.finish() == pcm


def _container(fmt_name: str, codec: str, rate: int, layout: str) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt_name) as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = layout
        mono = np.frombuffer(tone_and_chirp(rate), "<i2")
        channels = 2 if layout == "stereo" else 1
        # Packed s16: samples interleaved, the right channel at half level.
        interleaved = np.stack([mono, mono // 2][:channels], axis=1).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout=layout)
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("container", "codec", "rate"),
    [
        ("mp4", "aac", 44100),  # M4A
        ("webm", "libopus", 48000),
        ("ogg", "libopus", 48000),
        ("flac", "flac", 22050),
        ("wav", "pcm_f32le", 32000),  # float WAV goes through libav, not read_wav
        ("wav", "pcm_s16le", 16000),
    ],
)
def test_decode_common_containers_and_downmix_stereo(container: str, codec: str, rate: int) -> None:
    data = _container(container, codec, rate, "stereo")
    decoded = decode_audio(data, 16000)
    reference = resample(tone_and_chirp(rate), rate, 16000)
    corr, _ = best_lag_correlation(reference, decoded, 1600)
    assert corr > 0.95


def test_raw_stream_decoder_matches_one_shot() -> None:
    fmt = parse_format("ulaw_8000")
    encoder = make_encoder(fmt, 8000)
    data = encoder.encode(tone_and_chirp(8000)) + encoder.finish()
    decoder = RawStreamDecoder(fmt, 16000)
    streamed = b"".join(decoder.decode(data[i : i + 160]) for i in range(0, len(data), 160))
    streamed += decoder.flush()
    whole = np.frombuffer(decode_raw(data, fmt, 16000), "<i2").astype(np.int32)
    assert np.max(np.abs(np.frombuffer(streamed, "<i2") - whole)) <= 1


def test_raw_pcm_stream_at_the_same_rate_is_untouched() -> None:
    decoder = RawStreamDecoder(parse_format("pcm_16000"), 16000)
    pcm = sine(440, 0.02, 16000)
    assert decoder.decode(pcm) == pcm
    assert decoder.flush() == b""
