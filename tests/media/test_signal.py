from __future__ import annotations

import math

import numpy as np
import pytest

from voicestream.media.signal import (
    best_lag_correlation,
    float_to_pcm,
    pcm_to_float,
    rms_dbfs,
    sine,
)


def test_float_conversion_round_trips_and_clips() -> None:
    pcm = np.array([-32768, -1, 0, 1, 32767], dtype="<i2").tobytes()
    x = pcm_to_float(pcm)
    assert x.dtype == np.float32
    assert x.tolist() == [-1.0, -1 / 32768, 0.0, 1 / 32768, 32767 / 32768]
    assert float_to_pcm(x) == pcm
    clipped = np.frombuffer(float_to_pcm([2.0, -3.0, 1.0]), "<i2").tolist()
    assert clipped == [32767, -32768, 32767]


def test_levels() -> None:
    assert rms_dbfs(sine(1000, 1.0, 48000, amplitude=0.5)) == pytest.approx(-9.03, abs=0.01)
    assert rms_dbfs(sine(1000, 1.0, 48000, amplitude=1.0)) == pytest.approx(-3.01, abs=0.01)
    assert rms_dbfs(bytes(100)) == -math.inf
    assert rms_dbfs(b"") == -math.inf


def test_sine_has_its_frequency_and_length() -> None:
    x = pcm_to_float(sine(250, 0.5, 8000))
    assert x.size == 4000
    # 250 Hz at 8 kHz repeats every 32 samples.
    assert np.allclose(x[:-32], x[32:], atol=1e-4)


def test_best_lag_finds_a_known_delay() -> None:
    rng = np.random.default_rng(7)
    a = rng.standard_normal(4000) * 0.1
    delayed = np.concatenate([np.zeros(123), a])[:4000]
    corr, lag = best_lag_correlation(a, delayed, 500)
    assert corr == pytest.approx(1.0, abs=1e-6)
    assert lag == 123
    corr, lag = best_lag_correlation(delayed, a, 500)
    assert lag == -123
    corr, _ = best_lag_correlation(a, -a, 10)
    assert corr < 0.1
    corr, _ = best_lag_correlation(a, rng.standard_normal(4000), 50)
    assert corr < 0.2


def test_best_lag_accepts_pcm_bytes() -> None:
    pcm = sine(440, 0.1, 16000)
    corr, lag = best_lag_correlation(pcm, pcm, 0)
    assert corr == pytest.approx(1.0)
    assert lag == 0
    assert best_lag_correlation(b"", pcm, 10) == (0.0, 0)
