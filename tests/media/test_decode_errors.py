from __future__ import annotations

import io
import random

import av
import numpy as np
import pytest

from voicestream.errors import InvalidAudio, PayloadTooLarge, UnsupportedFormat
from voicestream.media.decode import RawStreamDecoder, decode_audio, decode_raw
from voicestream.media.encode import make_encoder
from voicestream.media.formats import parse_format
from voicestream.media.signal import sine
from voicestream.media.wav import encode_wav, wav_header


def _mp3(seconds: float) -> bytes:
    encoder = make_encoder(parse_format("mp3_22050_32"), 16000)
    return encoder.encode(sine(440, seconds, 16000)) + encoder.finish()


def _video_only() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=1)
        assert isinstance(stream, av.VideoStream)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuvj420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        container.mux(stream.encode(frame.reformat(format="yuvj420p")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


BAD_INPUTS = {
    "empty": b"",
    "garbage": random.Random(1).randbytes(4096),
    "text": b"this is plainly not audio\n" * 20,
    "truncated wav header": encode_wav(sine(440, 0.1, 16000), 16000)[:20],
    "wav header without data": wav_header(16000, 0),
    "streaming wav header without data": wav_header(16000, None),
    "truncated mp3": _mp3(1.0)[:40],
    "ogg capture pattern only": b"OggS" + bytes(60),
    "flac marker only": b"fLaC" + bytes(40),
    "hls playlist": b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
    "video without audio": _video_only(),
}


@pytest.mark.parametrize("data", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_invalid_audio(data: bytes) -> None:
    with pytest.raises(InvalidAudio) as info:
        decode_audio(data)
    assert info.value.code == "invalid_audio"
    assert info.value.message


def test_too_long_audio_is_refused() -> None:
    with pytest.raises(PayloadTooLarge):
        decode_audio(_mp3(2.0), max_seconds=1.0)
    with pytest.raises(PayloadTooLarge):
        decode_audio(encode_wav(sine(440, 2.0, 16000), 16000), max_seconds=1.0)
    assert decode_audio(_mp3(0.5), max_seconds=1.0)


def test_wav_with_an_unusable_sample_rate() -> None:
    with pytest.raises(InvalidAudio, match="sample rate"):
        decode_audio(encode_wav(sine(440, 0.01, 16000), 1_000_000))


def test_decode_rejects_a_bad_target_rate() -> None:
    with pytest.raises(ValueError):
        decode_audio(encode_wav(sine(440, 0.1, 16000), 16000), target_rate=0)


def test_raw_pcm_with_an_odd_byte_count() -> None:
    with pytest.raises(InvalidAudio, match="odd number of bytes"):
        decode_raw(b"\x00\x01\x02", parse_format("pcm_16000"))
    decoder = RawStreamDecoder(parse_format("pcm_16000"), 16000)
    assert decoder.decode(b"\x00\x01") == b"\x00\x01"
    with pytest.raises(InvalidAudio, match="odd number of bytes"):
        decoder.decode(b"\x00\x01\x02")


def test_raw_decoders_refuse_containers() -> None:
    with pytest.raises(UnsupportedFormat):
        decode_raw(b"\x00\x00", parse_format("mp3_44100_128"))
    with pytest.raises(UnsupportedFormat):
        RawStreamDecoder(parse_format("wav_16000"), 16000)


def test_g711_raw_has_no_alignment_constraint() -> None:
    assert (
        decode_raw(b"\xff\x00\x7f", parse_format("ulaw_8000"), 8000)
        == np.array([0, -32124, 0], "<i2").tobytes()
    )
