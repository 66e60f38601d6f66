"""The engine registry: voice lookup, readiness, and the default engine set."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from model_files import add_voice, add_whisper
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
from voicestream.engines.model_dir import ModelProblem
from voicestream.errors import EngineUnavailable, ModelNotInstalled, UnknownVoice


@pytest.fixture(scope="module")
def default_registry() -> EngineRegistry:
    return build_default_registry(load_settings({}))


def test_default_registry_has_every_engine_ready(default_registry: EngineRegistry) -> None:
    ids = {v.id for v in default_registry.voices()}
    assert {"en_US-joe-medium", "slt", "rms", "awb", "kal16", "espeak-de", "espeak-en-us"} <= ids
    # Piper voices first, flite and espeak-ng kept.
    assert default_registry.tts_engine_names() == ["piper", "flite", "espeak-ng"]
    assert default_registry.voices()[0].id == "en_US-joe-medium"
    # Whisper tiny.en transcribes; pocketsphinx stays for live partials (and by name).
    assert default_registry.stt.name == "whisper"
    assert [e.name for e in default_registry.stt_engines()] == ["whisper", "pocketsphinx"]
    assert default_registry.stt_model_names() == ["tiny.en", "pocketsphinx"]
    assert default_registry.ready() == {
        "piper": True,
        "flite": True,
        "espeak-ng": True,
        "whisper": True,
        "pocketsphinx": True,
        "silero-vad": True,
    }
    assert default_registry.stt.sample_rate == default_registry.vad.sample_rate == 16000
    assert default_registry.problems() == []
    joe = default_registry.voice("en_US-joe-medium")[1]
    assert (joe.language, joe.sample_rate, joe.engine) == ("en-US", 22050, "piper")


def test_the_suite_can_choose_its_engines_through_settings() -> None:
    registry = build_default_registry(
        load_settings({}, stt_engine="pocketsphinx", stt_threads=1, models_dir="/nonexistent")
    )
    assert registry.stt.name == "pocketsphinx"
    assert [e.name for e in registry.stt_engines()] == ["pocketsphinx"]
    with pytest.raises(ModelNotInstalled):
        registry.translation_engine()


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
        registry = build_default_registry(
            load_settings({}, stt_threads=1, stt_engine="pocketsphinx")
        )
    assert registry.tts_engine_names() == ["piper", "flite"]
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

    def __init__(
        self, name: str = "fake-stt", *, multilingual: bool = False, broken: bool = False
    ) -> None:
        super().__init__()
        self.name = name
        self.multilingual = multilingual
        self.language = "multi" if multilingual else "en-US"
        self._broken = broken

    def warm_up(self) -> None:
        if self._broken:
            raise RuntimeError("model.bin is damaged")

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


def _stt_registry(*stt: _FakeSTT, optional: dict[str, str] | None = None) -> EngineRegistry:
    return EngineRegistry(
        [_FakeTTS("tts", ["a"])],
        stt[0],
        _FakeVAD(),
        more_stt=stt[1:],
        stt_aliases={"tiny.en": stt[0], "large-v3": stt[1]} if len(stt) > 1 else None,
        optional=optional,
    )


def test_stt_for_maps_any_model_name_to_an_installed_engine() -> None:
    tiny, large, sphinx = (
        _FakeSTT("whisper"),
        _FakeSTT("whisper-large-v3", multilingual=True),
        _FakeSTT("pocketsphinx"),
    )
    registry = _stt_registry(tiny, large, sphinx)
    assert registry.stt_engines() == (tiny, large, sphinx)
    # Compatibility names and names nobody registered: the default engine.
    for name in (
        None,
        "",
        "whisper-1",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "gpt-transcribe",
        "scribe_v1",
        "scribe_v2",
        "no-such-model",
    ):
        assert registry.stt_for(name) is tiny, name
    # Exact engine and model names pick that engine.
    assert registry.stt_for("large-v3") is large
    assert registry.stt_for("whisper-large-v3") is large
    assert registry.stt_for("pocketsphinx") is sphinx
    assert registry.stt_for("tiny.en") is tiny
    # A language the default cannot hear goes to the multilingual model; English stays.
    assert registry.stt_for("whisper-1", language="de") is large
    assert registry.stt_for("whisper-1", language="en") is tiny
    assert registry.stt_for("pocketsphinx", language="de") is sphinx  # asked by name


def test_translation_needs_a_multilingual_model() -> None:
    tiny, large = _FakeSTT("whisper"), _FakeSTT("whisper-large-v3", multilingual=True)
    assert _stt_registry(tiny, large).translation_engine() is large
    with pytest.raises(ModelNotInstalled) as info:
        _stt_registry(tiny).translation_engine()
    assert info.value.http_status == 400 and info.value.code == "model_not_installed"
    assert "multilingual" in info.value.message
    assert "VOICESTREAM_MODELS_DIR" in info.value.message


def test_a_models_dir_engine_that_fails_to_load_is_dropped_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tiny, broken = _FakeSTT("whisper"), _FakeSTT("whisper-large-v3", broken=True)
    registry = _stt_registry(tiny, broken, optional={"whisper-large-v3": "/models/large-v3"})
    with caplog.at_level(logging.WARNING):
        registry.warm_up()
    assert registry.stt_engines() == (tiny,)
    assert registry.stt_for("large-v3") is tiny
    assert all(registry.ready().values()) and "whisper-large-v3" not in registry.ready()
    (problem,) = registry.problems()
    assert problem.file == "/models/large-v3" and "model.bin is damaged" in problem.reason
    assert "/models/large-v3" in caplog.text and not any(
        r.levelno >= logging.ERROR for r in caplog.records
    )


def test_a_chosen_models_dir_engine_that_fails_leaves_the_next_one_serving() -> None:
    broken, tiny = _FakeSTT("whisper-large-v3", broken=True), _FakeSTT("whisper")
    registry = EngineRegistry(
        [_FakeTTS("tts", ["a"])],
        broken,
        _FakeVAD(),
        more_stt=[tiny],
        optional={"whisper-large-v3": "/models/large-v3"},
    )
    registry.warm_up()
    assert registry.stt is tiny and registry.stt_engines() == (tiny,)
    assert all(registry.ready().values())
    assert registry.problems() == [
        ModelProblem("/models/large-v3", "failed to load: model.bin is damaged")
    ]


def test_an_unknown_default_voice_is_a_startup_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="voicestream.engines.catalog"):
        registry = build_default_registry(
            load_settings({}, default_voice="marvin", stt_engine="pocketsphinx", stt_threads=1)
        )
    assert "'marvin'" in caplog.text and "VOICESTREAM_DEFAULT_VOICE" in caplog.text
    assert all(registry.ready().values())


def test_models_dir_voices_override_packaged_ones_but_not_other_engines(tmp_path: Path) -> None:
    add_voice(tmp_path, "en_US-joe-medium")  # an operator's copy of the packaged voice
    add_voice(tmp_path, "slt")  # flite's id
    registry = build_default_registry(
        load_settings({}, models_dir=tmp_path, stt_engine="pocketsphinx", stt_threads=1)
    )
    piper = registry.tts_for("en_US-joe-medium")
    info = piper.model_info()  # type: ignore[attr-defined]  # Piper's own catalog entry
    (joe,) = [i for i in info if i["id"] == "en_US-joe-medium"]
    assert joe["origin"].startswith("models dir") and joe["path"] == str(
        tmp_path / "en_US-joe-medium.onnx"
    )
    assert registry.tts_for("slt").name == "flite"
    (problem,) = registry.problems()
    assert problem.file == str(tmp_path / "slt.onnx") and "flite voice already" in problem.reason
    assert all(registry.ready().values())


def test_stt_engine_can_name_a_models_dir_whisper_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_whisper(tmp_path / "tiny-copy")
    settings = load_settings(
        {}, models_dir=tmp_path, stt_engine="tiny-copy", stt_partials="none", stt_threads=1
    )
    registry = build_default_registry(settings)
    assert registry.stt.name == "whisper-tiny-copy"
    assert registry.stt_for("whisper-1") is registry.stt
    assert registry.stt_for("tiny.en").name == "whisper"  # the packaged one stays, by name
    assert registry.stt_model_names() == ["tiny-copy", "tiny.en"]

    with caplog.at_level(logging.WARNING, logger="voicestream.engines.catalog"):
        fallback = build_default_registry(
            settings.model_copy(update={"stt_engine": "large-v3", "models_dir": tmp_path / "none"})
        )
    assert fallback.stt.name == "whisper"
    assert "VOICESTREAM_STT_ENGINE=large-v3" in caplog.text
