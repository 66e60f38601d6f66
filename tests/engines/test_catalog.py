"""The engine registry: voice lookup, readiness, and the default engine set."""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import pytest

from voicestream.config import load_settings
from voicestream.engines import espeak_tts
from voicestream.engines.base import (
    STTDecoder,
    STTEngine,
    Synthesis,
    TTSEngine,
    VADModel,
    VADState,
    Voice,
)
from voicestream.engines.catalog import EngineRegistry, build_default_registry
from voicestream.errors import EngineUnavailable, UnknownVoice


@pytest.fixture(scope="module")
def default_registry() -> EngineRegistry:
    return build_default_registry(load_settings({}))


def test_default_registry_has_every_engine_ready(default_registry: EngineRegistry) -> None:
    ids = {v.id for v in default_registry.voices()}
    assert {"slt", "rms", "awb", "kal16", "espeak-de", "espeak-en-us"} <= ids
    assert default_registry.tts_engine_names() == ["flite", "espeak-ng"]
    assert default_registry.ready() == {
        "flite": True,
        "espeak-ng": True,
        "pocketsphinx": True,
        "silero-vad": True,
    }
    assert default_registry.stt.sample_rate == default_registry.vad.sample_rate == 16000


def test_voice_lookup(default_registry: EngineRegistry) -> None:
    engine, voice = default_registry.voice("slt")
    assert engine.name == "flite" and voice.gender == "female"
    assert default_registry.tts_for("espeak-de").name == "espeak-ng"
    syn = engine.synthesize("Ready.", voice)
    assert syn.sample_rate == voice.sample_rate and syn.pcm


def test_unknown_voice_names_the_id_and_the_catalog(default_registry: EngineRegistry) -> None:
    with pytest.raises(UnknownVoice) as info:
        default_registry.voice("marvin")
    assert "marvin" in info.value.message and "/v1/voices" in info.value.message
    assert info.value.code == "unknown_voice"


def test_missing_espeak_only_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def __init__(self) -> None:
            raise EngineUnavailable("libespeak-ng is not installed")

    monkeypatch.setattr(espeak_tts, "EspeakTTS", Broken)
    with caplog.at_level(logging.WARNING, logger="voicestream.engines.catalog"):
        registry = build_default_registry(load_settings({}, stt_threads=1))
    assert registry.tts_engine_names() == ["flite"]
    assert "espeak-ng voices disabled" in caplog.text
    assert all(registry.ready().values())


class _FakeTTS(TTSEngine):
    def __init__(self, name: str, ids: list[str], *, broken: bool = False) -> None:
        self.name = name
        self._voices = [Voice(i, i, "en-US", "neutral", 16000, name) for i in ids]
        self._broken = broken

    def voices(self) -> list[Voice]:
        return list(self._voices)

    def synthesize(self, text: str, voice: Voice) -> Synthesis:
        return Synthesis(b"", 16000)

    def warm_up(self) -> None:
        if self._broken:
            raise RuntimeError("model file corrupt")


class _FakeSTT(STTEngine):
    name = "fake-stt"
    sample_rate = 16000
    language = "en-US"

    def acquire(self) -> STTDecoder:
        raise NotImplementedError

    def release(self, decoder: STTDecoder, *, learn: bool = True) -> None:
        raise NotImplementedError


class _FakeVAD(VADModel):
    sample_rate = 16000
    window_samples = 512

    def new_state(self) -> VADState:
        return VADState()

    def speech_probability(self, state: VADState, window: npt.NDArray[np.float32]) -> float:
        return 0.0


def test_duplicate_voice_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="'a'"):
        EngineRegistry(
            [_FakeTTS("one", ["a"]), _FakeTTS("two", ["b", "a"])], _FakeSTT(), _FakeVAD()
        )


def test_readiness_follows_warm_up(caplog: pytest.LogCaptureFixture) -> None:
    registry = EngineRegistry(
        [_FakeTTS("good", ["a"]), _FakeTTS("bad", ["b"], broken=True)], _FakeSTT(), _FakeVAD()
    )
    assert not any(registry.ready().values())
    with caplog.at_level(logging.ERROR):
        registry.warm_up()
    assert registry.ready() == {"good": True, "bad": False, "fake-stt": True, "_FakeVAD": True}
    assert "warming up bad failed" in caplog.text
    assert [v.id for v in registry.voices()] == ["a", "b"]
