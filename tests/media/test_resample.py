from __future__ import annotations

import numpy as np
import pytest

from voicestream.media.resample import Resampler, resample
from voicestream.media.signal import pcm_to_float, rms_dbfs, sine

RATE_PAIRS = [(16000, 8000), (8000, 16000), (22050, 16000), (16000, 48000), (44100, 16000)]


def peak_frequency(pcm: bytes, rate: int) -> float:
    x = pcm_to_float(pcm).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    k = int(np.argmax(spectrum))
    # Parabolic interpolation between bins gives sub-bin accuracy.
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return float((k + offset) * rate / x.size)


def middle(pcm: bytes, rate: int) -> bytes:
    # Skip the filter's ramp at both ends.
    edge = rate // 10 * 2
    return pcm[edge:-edge]


def chunked(pcm: bytes, src: int, dst: int, sizes: list[int]) -> bytes:
    resampler = Resampler(src, dst)
    out, pos, i = [], 0, 0
    while pos < len(pcm):
        size = sizes[i % len(sizes)] * 2
        out.append(resampler.process(pcm[pos : pos + size]))
        pos += size
        i += 1
    out.append(resampler.flush())
    return b"".join(out)


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS)
def test_tone_keeps_pitch_level_and_length(src: int, dst: int) -> None:
    pcm = sine(440, 1.0, src)
    out = resample(pcm, src, dst)
    assert abs(len(out) // 2 - dst) <= 2
    assert abs(peak_frequency(out, dst) - 440.0) < 0.5
    assert abs(rms_dbfs(middle(out, dst)) - rms_dbfs(middle(pcm, src))) < 0.5


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS)
@pytest.mark.parametrize("sizes", [[0], [1], [7, 333, 2, 1001]], ids=["20ms", "1", "odd"])
def test_chunking_does_not_change_the_output(src: int, dst: int, sizes: list[int]) -> None:
    pcm = sine(440, 0.5, src) + sine(1234, 0.25, src, amplitude=0.9)
    if sizes == [1]:
        pcm = pcm[: src // 10 * 2]  # one sample at a time is slow; 100 ms shows it
    sizes = [src // 50] if sizes == [0] else sizes
    whole = np.frombuffer(resample(pcm, src, dst), "<i2").astype(np.int32)
    parts = np.frombuffer(chunked(pcm, src, dst, sizes), "<i2").astype(np.int32)
    assert parts.size == whole.size
    assert np.max(np.abs(parts - whole)) <= 1


def test_same_rate_is_a_passthrough() -> None:
    pcm = sine(440, 0.1, 16000)
    assert resample(pcm, 16000, 16000) is pcm
    resampler = Resampler(16000, 16000)
    assert resampler.passthrough
    assert resampler.process(pcm) is pcm
    assert resampler.flush() == b""


def test_flush_ends_one_stream_and_the_next_starts_clean() -> None:
    pcm = sine(440, 0.2, 16000)
    resampler = Resampler(16000, 8000)
    first = resampler.process(pcm) + resampler.flush()
    second = resampler.process(pcm) + resampler.flush()
    assert first == second == resample(pcm, 16000, 8000)
    assert resampler.flush() == b""


def test_streaming_output_arrives_while_streaming() -> None:
    resampler = Resampler(24000, 16000)
    frame = sine(440, 0.02, 24000)
    produced = [len(resampler.process(frame)) for _ in range(10)]
    # All but the filter's small delay comes out immediately.
    assert all(n > 0 for n in produced)
    assert sum(produced) // 2 >= 10 * 320 - 64


@pytest.mark.parametrize("rate", [0, -8000, 192001, 10**9])
def test_rejects_impossible_rates(rate: int) -> None:
    with pytest.raises(ValueError):
        Resampler(rate, 16000)
    with pytest.raises(ValueError):
        Resampler(16000, rate)
    with pytest.raises(ValueError):
        resample(b"", 16000, rate)


def test_rejects_half_samples() -> None:
    with pytest.raises(ValueError, match="even"):
        Resampler(16000, 8000).process(b"\x00\x00\x00")
    with pytest.raises(ValueError, match="even"):
        resample(b"\x00", 16000, 16000)


def test_empty_input() -> None:
    assert resample(b"", 16000, 8000) == b""
    assert Resampler(16000, 8000).process(b"") == b""
