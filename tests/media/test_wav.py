from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest

from voicestream.errors import InvalidAudio
from voicestream.media.signal import sine
from voicestream.media.wav import complete_wav, encode_wav, read_wav, wav_header


def make_wav(
    payload: bytes,
    *,
    rate: int = 16000,
    channels: int = 1,
    bits: int = 16,
    tag: int = 1,
    extra_chunks: bytes = b"",
) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if tag == 0xFFFE:
        # cbSize, valid bits, channel mask, then the PCM SubFormat GUID.
        guid = b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + guid
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + extra_chunks
        + b"data"
        + struct.pack("<I", len(payload))
        + payload
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_header_fields() -> None:
    header = wav_header(24000, 1000)
    assert len(header) == 44
    fields = struct.unpack("<4sI4s4sIHHIIHH4sI", header)
    assert fields == (
        b"RIFF", 36 + 2000, b"WAVE", b"fmt ", 16, 1, 1, 24000, 48000, 2, 16, b"data", 2000,
    )  # fmt: skip


def test_streaming_header_claims_maximum_sizes() -> None:
    header = wav_header(16000, None)
    assert struct.unpack_from("<I", header, 4) == (0xFFFFFFFF,)  # RIFF size
    assert struct.unpack_from("<I", header, 40) == (0xFFFFFFFF,)  # data size


def test_complete_wav_writes_the_real_sizes_of_a_stream() -> None:
    pcm = sine(300, 0.25, 24000)
    streamed = wav_header(24000, None) + pcm
    with wave.open(io.BytesIO(streamed)) as reader:
        assert reader.getnframes() == 0x7FFFFFFF  # what a stream's header makes stdlib say
    completed = complete_wav(streamed)
    assert completed == encode_wav(pcm, 24000)
    with wave.open(io.BytesIO(completed)) as reader:
        assert reader.getnframes() == len(pcm) // 2
        assert reader.readframes(reader.getnframes()) == pcm
    assert complete_wav(completed) == completed  # a finished file stays as it is
    assert complete_wav(wav_header(8000, None)) == encode_wav(b"", 8000)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"RIFF\xff\xff\xff\xffWAVE",
        make_wav(bytes(8), extra_chunks=b"LIST" + struct.pack("<I", 4) + b"abcd"),  # not canonical
        wav_header(16000, None) + b"\x01",  # half a sample
        wav_header(16000, None, channels=2) + bytes(6),  # a frame and a half
    ],
)
def test_complete_wav_refuses_what_it_cannot_size(data: bytes) -> None:
    with pytest.raises(ValueError):
        complete_wav(data)


def test_encode_wav_reads_back_with_the_stdlib() -> None:
    pcm = sine(300, 0.25, 22050)
    with wave.open(io.BytesIO(encode_wav(pcm, 22050))) as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == 22050
        assert reader.readframes(reader.getnframes()) == pcm


def test_read_wav_round_trip_and_streamed_file() -> None:
    pcm = sine(440, 0.1, 8000)
    assert read_wav(encode_wav(pcm, 8000)) == (pcm, 8000)
    assert read_wav(wav_header(8000, None) + pcm) == (pcm, 8000)
    # Streaming writers that cannot seek back may leave the data size at 0.
    assert read_wav(wav_header(8000, 0) + pcm) == (pcm, 8000)
    # A file cut mid-sample keeps the whole samples only.
    assert read_wav(encode_wav(pcm, 8000)[:-3]) == (pcm[:-4], 8000)


def test_read_wav_downmixes_stereo() -> None:
    left = np.array([1000, -2000, 300, 32767], dtype="<i2")
    right = np.array([3000, 2000, -301, 32767], dtype="<i2")
    stereo = np.stack([left, right], axis=1).tobytes()
    pcm, rate = read_wav(make_wav(stereo, channels=2, rate=44100))
    assert rate == 44100
    assert np.frombuffer(pcm, "<i2").tolist() == [2000, 0, 0, 32767]


def test_read_wav_skips_other_chunks_including_odd_sized_ones() -> None:
    pcm = sine(440, 0.05, 16000)
    odd_list = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"
    assert read_wav(make_wav(pcm, extra_chunks=odd_list)) == (pcm, 16000)


def test_read_wav_accepts_extensible_pcm() -> None:
    pcm = sine(440, 0.05, 16000)
    assert read_wav(make_wav(pcm, tag=0xFFFE)) == (pcm, 16000)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a WAV"),
        (b"RIFX\x00\x00\x00\x00WAVE", "not a WAV"),
        (b"RIFF\x00\x00\x00\x00AVI ", "not a WAV"),
        (make_wav(bytes(8), bits=8), "16-bit PCM"),
        (make_wav(bytes(16), bits=32, tag=3), "16-bit PCM"),
        (make_wav(bytes(16), bits=24), "16-bit PCM"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt"),
        (make_wav(b"")[:36], "no data"),
    ],
)
def test_read_wav_rejects_what_is_not_16_bit_pcm(data: bytes, message: str) -> None:
    with pytest.raises(InvalidAudio, match=message):
        read_wav(data)


def test_wav_header_validates() -> None:
    with pytest.raises(ValueError):
        wav_header(0, 10)
    with pytest.raises(ValueError):
        wav_header(16000, -1)
