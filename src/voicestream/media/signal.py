"""Small numeric helpers over mono s16le, for tests, benchmarks and level checks."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["best_lag_correlation", "float_to_pcm", "pcm_to_float", "rms_dbfs", "sine"]

_FULL_SCALE = 32768.0

Signal = bytes | npt.NDArray[np.floating] | npt.NDArray[np.integer]


def pcm_to_float(pcm: bytes) -> npt.NDArray[np.float32]:
    """s16le as float32 in [-1, 1)."""
    samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
    return samples.astype(np.float32) / np.float32(_FULL_SCALE)


def float_to_pcm(x: npt.ArrayLike) -> bytes:
    """Float samples in [-1, 1] to s16le, clipping anything outside."""
    scaled = np.rint(np.asarray(x, dtype=np.float64) * _FULL_SCALE)
    return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()


def rms_dbfs(pcm: bytes) -> float:
    """RMS level relative to full scale (a full-scale sine is about -3 dBFS); -inf for silence."""
    x = pcm_to_float(pcm).astype(np.float64)
    if not x.size:
        return -math.inf
    rms = float(np.sqrt(np.mean(x * x)))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> bytes:
    """A pure tone as s16le."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    return float_to_pcm(amplitude * np.sin(2.0 * np.pi * freq * t))


def _as_float(signal: Signal) -> npt.NDArray[np.float64]:
    if isinstance(signal, bytes | bytearray | memoryview):
        return pcm_to_float(bytes(signal)).astype(np.float64)
    return np.asarray(signal, dtype=np.float64).reshape(-1)


def best_lag_correlation(a: Signal, b: Signal, max_lag: int) -> tuple[float, int]:
    """The best normalized cross-correlation of ``a`` and ``b`` over lags ``-max_lag..max_lag``.

    Returns ``(correlation, lag)`` where ``b[i + lag]`` lines up with ``a[i]``: a
    codec's delay shows up as a positive lag when ``b`` is the decoded copy of ``a``.
    Each lag is normalized over its own overlap, so a lossless copy scores 1.0.
    """
    x, y = _as_float(a), _as_float(b)
    n, m = x.size, y.size
    if not n or not m:
        return 0.0, 0
    size = 1 << (n + m - 1).bit_length()
    # corr[k] = sum_i x[i] * y[i + k], for k from -(n - 1) to m - 1, via one FFT product.
    spectrum = np.conj(np.fft.rfft(x, size)) * np.fft.rfft(y, size)
    full = np.fft.irfft(spectrum, size)
    lags = np.arange(max(-max_lag, -(n - 1)), min(max_lag, m - 1) + 1)
    raw = full[lags % size]
    # Energy of the overlapping parts for each lag, from cumulative sums of squares.
    cx = np.concatenate(([0.0], np.cumsum(x * x)))
    cy = np.concatenate(([0.0], np.cumsum(y * y)))
    x_start = np.maximum(-lags, 0)
    y_start = np.maximum(lags, 0)
    length = np.minimum(n - x_start, m - y_start)
    ex = cx[x_start + length] - cx[x_start]
    ey = cy[y_start + length] - cy[y_start]
    denom = np.sqrt(ex * ey)
    corr = np.divide(raw, denom, out=np.zeros_like(raw), where=denom > 1e-12)
    best = int(np.argmax(corr))
    # Rounding in the FFT can push a perfect match a hair past 1.
    return min(float(corr[best]), 1.0), int(lags[best])
