"""The STT decoder pool as Prometheus gauges, read from the engine at scrape time.

Decoders are the server's biggest memory holders (pocketsphinx: ~95 MB each), so how many are
busy, how many idle, and how close admission is to its cap are worth seeing; reading them when
scraped means the engine needs no hooks to keep gauges current.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..engines.base import STTEngine

__all__ = ["DecoderPoolCollector"]


class DecoderPoolCollector:
    """A prometheus_client collector over one engine's ``pool_stats``."""

    def __init__(self, engine: STTEngine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        stats = self._engine.pool_stats()
        decoders = GaugeMetricFamily(
            "voicestream_stt_decoders",
            "STT decoders alive, by state: busy (lent to a stream) or idle (warm in the pool).",
            labels=["state"],
        )
        decoders.add_metric(["busy"], stats.busy)
        decoders.add_metric(["idle"], stats.idle)
        yield decoders
        yield GaugeMetricFamily(
            "voicestream_stt_streams_admitted",
            "STT streams open now (each may hold one decoder).",
            value=stats.streams,
        )
        if stats.max_streams is not None:
            yield GaugeMetricFamily(
                "voicestream_stt_streams_max",
                "STT streams admitted at most (VOICESTREAM_MAX_STT_STREAMS); more get 429/1013.",
                value=stats.max_streams,
            )
