from __future__ import annotations

import pytest

from voicestream.media.framing import Framer, frame_bytes


def ramp(n_bytes: int) -> bytes:
    return bytes(i % 251 for i in range(n_bytes))


@pytest.mark.parametrize(
    ("rate", "ms", "bps", "size"),
    [(16000, 20, 2, 640), (8000, 20, 1, 160), (22050, 20, 2, 882), (48000, 10, 2, 960)],
)
def test_frame_bytes(rate: int, ms: int, bps: int, size: int) -> None:
    assert frame_bytes(rate, ms, bps) == size


def test_frame_bytes_rejects_fractional_frames_and_nonsense() -> None:
    with pytest.raises(ValueError, match="whole number"):
        frame_bytes(11025, 20)
    with pytest.raises(ValueError):
        frame_bytes(0, 20)
    with pytest.raises(ValueError):
        frame_bytes(16000, 0)


def test_push_returns_exact_frames_and_keeps_the_rest() -> None:
    framer = Framer(16000)
    data = ramp(640 * 3 + 100)
    frames = framer.push(data)
    assert frames == [data[0:640], data[640:1280], data[1280:1920]]
    assert framer.pending == 100
    assert framer.push(b"") == []
    assert framer.flush() == data[1920:]
    assert framer.pending == 0
    assert framer.flush() == b""


def test_frames_span_pushes_and_odd_byte_boundaries() -> None:
    framer = Framer(8000, frame_ms=20)  # 320 bytes
    data = ramp(320 * 7 + 3)
    out: list[bytes] = []
    pos = 0
    for size in (1, 3, 319, 2, 641, 5, 17, 999, 1000):
        out += framer.push(data[pos : pos + size])
        pos += size
    assert pos >= len(data)
    assert out == [data[i : i + 320] for i in range(0, 320 * 7, 320)]
    assert framer.flush() == data[320 * 7 :]


def test_flush_with_padding() -> None:
    framer = Framer(16000, frame_ms=10)  # 320 bytes
    framer.push(b"\x01\x02\x03\x04")
    padded = framer.flush(pad=True)
    assert padded == b"\x01\x02\x03\x04" + bytes(316)
    assert framer.flush(pad=True) == b""


def test_one_byte_per_sample_framing() -> None:
    framer = Framer(8000, bytes_per_sample=1)
    assert framer.frame_size == 160
    assert framer.push(ramp(400)) == [ramp(400)[:160], ramp(400)[160:320]]
