"""Tempo change with the pitch kept (FFmpeg's ``atempo`` through PyAV), streaming."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

__all__ = ["Tempo"]


class Tempo:
    """Streaming tempo change of mono s16le through chained ``atempo`` filters (pitch kept)."""

    def __init__(self, rate: int, speed: float) -> None:
        self._rate = rate
        self._time_base = Fraction(1, rate)
        self._pts = 0
        self._graph = av.filter.Graph()
        node = self._graph.add_abuffer(
            format="s16", sample_rate=rate, layout="mono", time_base=self._time_base
        )
        for factor in self.factors(speed):
            step = self._graph.add("atempo", f"{factor:.6f}")
            node.link_to(step)
            node = step
        sink = self._graph.add("abuffersink")
        node.link_to(sink)
        self._graph.configure()

    @staticmethod
    def factors(speed: float) -> list[float]:
        """``speed`` as a product of factors within atempo's 0.5–2.0 range."""
        out: list[float] = []
        while speed > 2.0:
            out.append(2.0)
            speed /= 2.0
        while speed < 0.5:
            out.append(0.5)
            speed /= 0.5
        out.append(speed)
        return out

    def process(self, pcm: bytes) -> bytes:
        if not pcm:
            return b""
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self._pts += samples.shape[1]
        self._graph.push(frame)
        return self._drain()

    def flush(self) -> bytes:
        self._graph.push(None)
        return self._drain()

    def _drain(self) -> bytes:
        out: list[bytes] = []
        while True:
            try:
                frame = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return b"".join(out)
            if isinstance(frame, av.AudioFrame):
                out.append(frame.to_ndarray().astype("<i2").tobytes())
