"""The STT pool gauges follow the registry: each engine by name, read when scraped."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fakes.scripted_engines import EnergyVAD, ScriptedSTT, ToneTTS
from voicestream.engines.catalog import EngineRegistry
from voicestream.observability.stt_pool_metrics import DecoderPoolCollector


class _UnloadableSTT(ScriptedSTT):
    """A models-dir model that passed the cheap check and fails when its weights load."""

    name = "whisper-large-v3"

    def warm_up(self) -> None:
        raise RuntimeError("model.bin is damaged")


def _scrape(metrics: CollectorRegistry) -> dict[str, dict[tuple[str, ...], float]]:
    return {
        family.name: {tuple(sorted(s.labels.items())): s.value for s in family.samples}
        for family in text_string_to_metric_families(generate_latest(metrics).decode())
    }


def test_the_gauges_follow_a_default_engine_replaced_after_start_up() -> None:
    chosen, fallback = _UnloadableSTT(), ScriptedSTT()
    fallback.admit_stream()
    registry = EngineRegistry(
        [ToneTTS()],
        chosen,
        EnergyVAD(),
        more_stt=[fallback],
        optional={chosen.name: "/models/large-v3"},
    )
    metrics = CollectorRegistry()
    # Bound as the app binds it: before the models load.
    metrics.register(DecoderPoolCollector(registry.stt_engines))
    before = _scrape(metrics)["voicestream_stt_streams_admitted"]
    assert before == {(("engine", "whisper-large-v3"),): 0, (("engine", "scripted-stt"),): 1}

    registry.warm_up()  # the chosen model fails: the next engine serves
    assert registry.stt is fallback
    after = _scrape(metrics)
    assert after["voicestream_stt_streams_admitted"] == {(("engine", "scripted-stt"),): 1}
    assert set(after["voicestream_stt_decoders"]) == {
        (("engine", "scripted-stt"), ("state", "busy")),
        (("engine", "scripted-stt"), ("state", "idle")),
    }
    fallback.leave_stream()
