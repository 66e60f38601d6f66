"""The STT decoder pools as Prometheus gauges, read from the engines at scrape time.

Decoders are the server's biggest memory holders (pocketsphinx: ~95 MB each), so how many are
busy, how many idle, and how close admission is to its cap are worth seeing; reading them when
scraped means the engines need no hooks to keep gauges current.

Every STT engine is reported under its ``engine`` label (the default one, the other Whisper
models, and the pocketsphinx pool lending Whisper streams their live partials). The engines are
asked of the registry at each scrape, not bound when the app starts: a models-dir model chosen
as the default that fails to load is replaced by the next engine after the server is up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from ..engines.base import STTEngine

__all__ = ["DecoderPoolCollector"]


class DecoderPoolCollector:
    """A prometheus_client collector over the ``pool_stats`` of the engines ``engines`` gives
    when scraped (e.g. ``registry.stt_engines``)."""

    def __init__(self, engines: Callable[[], Sequence[STTEngine]]) -> None:
        self._engines = engines

    def collect(self) -> Iterator[Metric]:
        decoders = GaugeMetricFamily(
            "voicestream_stt_decoders",
            "STT decoders alive, by engine and state: busy (lent to a stream) or idle (warm in "
            "the pool).",
            labels=["engine", "state"],
        )
        admitted = GaugeMetricFamily(
            "voicestream_stt_streams_admitted",
            "STT streams open now, by engine (each may hold one decoder).",
            labels=["engine"],
        )
        cap = GaugeMetricFamily(
            "voicestream_stt_streams_max",
            "STT streams admitted at most, by engine (VOICESTREAM_MAX_STT_STREAMS); more get "
            "429/1013.",
            labels=["engine"],
        )
        for engine in self._engines():
            stats = engine.pool_stats()
            decoders.add_metric([engine.name, "busy"], stats.busy)
            decoders.add_metric([engine.name, "idle"], stats.idle)
            admitted.add_metric([engine.name], stats.streams)
            if stats.max_streams is not None:
                cap.add_metric([engine.name], stats.max_streams)
        yield decoders
        yield admitted
        yield cap
