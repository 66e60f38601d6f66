"""Sample-rate conversion of mono s16le through libswresample (PyAV)."""

from __future__ import annotations

import numbers
from fractions import Fraction

import av
import numpy as np

__all__ = ["MAX_RATE", "Resampler", "check_rate", "resample"]

MAX_RATE = 192_000


def check_rate(rate: int, what: str) -> None:
    """ValueError unless ``rate`` is a usable sample rate."""
    if not isinstance(rate, numbers.Integral) or isinstance(rate, bool) or not 0 < rate <= MAX_RATE:
        raise ValueError(f"{what} must be an int in 1..{MAX_RATE}, got {rate!r}")


class Resampler:
    """Streaming converter: feed chunks of any size to ``process``, then ``flush`` once.

    The output does not depend on how the input was chunked, so a stream resampled
    20 ms at a time matches the same audio resampled in one piece. ``flush`` drains
    the filter's delay line and leaves the resampler ready for a new stream.
    """

    __slots__ = ("_av", "_dst_rate", "_pts", "_src_rate", "_time_base")

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        check_rate(src_rate, "src_rate")
        check_rate(dst_rate, "dst_rate")
        self._src_rate = int(src_rate)
        self._dst_rate = int(dst_rate)
        self._time_base = Fraction(1, self._src_rate)
        self._pts = 0
        self._av: av.AudioResampler | None = None

    @property
    def src_rate(self) -> int:
        return self._src_rate

    @property
    def dst_rate(self) -> int:
        return self._dst_rate

    @property
    def passthrough(self) -> bool:
        return self._src_rate == self._dst_rate

    def process(self, pcm: bytes) -> bytes:
        """Resample the next chunk; returns what is ready (the filter holds back a few samples)."""
        if len(pcm) % 2:
            raise ValueError("PCM s16le needs an even number of bytes")
        if self.passthrough or not pcm:
            return pcm
        if self._av is None:
            self._av = av.AudioResampler(format="s16", layout="mono", rate=self._dst_rate)
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self._src_rate
        # Contiguous timestamps keep the filter graph from seeing gaps or jumps
        # however the caller chops the stream.
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += samples.shape[1]
        return _join(self._av.resample(frame))

    def flush(self) -> bytes:
        """The held-back tail of the stream; the next ``process`` starts a new stream."""
        if self._av is None:
            return b""
        tail = _join(self._av.resample(None))
        # A drained libav filter graph cannot take more input, so start afresh.
        self._av = None
        self._pts = 0
        return tail


def _join(frames: list[av.AudioFrame]) -> bytes:
    # A plane's buffer may be padded past its samples, so take exactly samples * 2 bytes.
    return b"".join([memoryview(f.planes[0])[: f.samples * 2] for f in frames])


def resample(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample a whole mono s16le buffer in one go."""
    resampler = Resampler(src_rate, dst_rate)
    if resampler.passthrough:
        if len(pcm) % 2:
            raise ValueError("PCM s16le needs an even number of bytes")
        return pcm
    return resampler.process(pcm) + resampler.flush()
