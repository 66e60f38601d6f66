"""The engines a server runs with: TTS engines by voice, one STT engine, one VAD model."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from voicestream.config import Settings
from voicestream.engines.base import STTEngine, TTSEngine, VADModel, Voice
from voicestream.errors import EngineUnavailable, UnknownVoice

__all__ = ["EngineRegistry", "build_default_registry"]

log = logging.getLogger(__name__)


def _vad_name(vad: VADModel) -> str:
    name = getattr(vad, "name", None)  # VADModel's contract has no name; ours set one
    return name if isinstance(name, str) else type(vad).__name__


class EngineRegistry:
    """Resolves voice ids to engines and tracks which engines are warmed up and ready.

    Raises:
        ValueError: (from the constructor) two engines offer the same voice id.
    """

    def __init__(self, tts: Sequence[TTSEngine], stt: STTEngine, vad: VADModel) -> None:
        self._tts = tuple(tts)
        self._stt = stt
        self._vad = vad
        self._voices: dict[str, tuple[TTSEngine, Voice]] = {}
        for engine in self._tts:
            for voice in engine.voices():
                if voice.id in self._voices:
                    other = self._voices[voice.id][0].name
                    raise ValueError(f"voice id {voice.id!r} offered by {other} and {engine.name}")
                self._voices[voice.id] = (engine, voice)
        self._ready: dict[str, bool] = {name: False for name in self._engine_names()}

    @property
    def stt(self) -> STTEngine:
        return self._stt

    @property
    def vad(self) -> VADModel:
        return self._vad

    @property
    def tts_engines(self) -> tuple[TTSEngine, ...]:
        return self._tts

    def tts_engine_names(self) -> list[str]:
        """Names of the TTS engines, in catalog order (one executor per engine)."""
        return [engine.name for engine in self._tts]

    def voices(self) -> list[Voice]:
        return [voice for _, voice in self._voices.values()]

    def voice(self, voice_id: str) -> tuple[TTSEngine, Voice]:
        """The engine and catalog entry for ``voice_id``.

        Raises:
            UnknownVoice: no engine offers that id.
        """
        found = self._voices.get(voice_id)
        if found is None:
            raise UnknownVoice(
                f"unknown voice {voice_id!r}; GET /v1/voices lists the available voices",
                details={"voice": voice_id},
            )
        return found

    def tts_for(self, voice_id: str) -> TTSEngine:
        return self.voice(voice_id)[0]

    def warm_up(self) -> None:
        """Blocking: warm every engine; one that fails is logged and stays not ready."""
        for name, warm in self._warmers():
            try:
                warm()
            except Exception:
                log.exception("warming up %s failed", name)
                self._ready[name] = False
            else:
                self._ready[name] = True

    def ready(self) -> dict[str, bool]:
        """Per engine name: warmed up successfully (all False until ``warm_up`` ran)."""
        return dict(self._ready)

    def _engine_names(self) -> list[str]:
        return [e.name for e in self._tts] + [self._stt.name, _vad_name(self._vad)]

    def _warmers(self) -> list[tuple[str, Callable[[], None]]]:
        warmers: list[tuple[str, Callable[[], None]]] = [(e.name, e.warm_up) for e in self._tts]
        warmers.append((self._stt.name, self._stt.warm_up))
        vad_warm = getattr(self._vad, "warm_up", None)  # optional: not part of VADModel
        warmers.append((_vad_name(self._vad), vad_warm if callable(vad_warm) else _nothing))
        return warmers


def _nothing() -> None:
    return None


def build_default_registry(settings: Settings) -> EngineRegistry:
    """flite, espeak-ng (optional), pocketsphinx and Silero VAD, loaded and warmed up.

    Blocking (about a second, mostly pocketsphinx model loads): call it off the event loop. The
    registry comes back warmed, so ``ready()`` reports each engine's real state at once.

    Raises:
        EngineUnavailable: flite, pocketsphinx or the VAD model cannot be loaded.
    """
    # Imported here so importing the catalog stays cheap and ctypes loading happens on demand.
    from voicestream.engines.espeak_tts import EspeakTTS
    from voicestream.engines.flite_tts import FliteTTS
    from voicestream.engines.pocketsphinx_stt import PocketsphinxSTT
    from voicestream.engines.silero_vad import SileroVAD

    tts: list[TTSEngine] = [FliteTTS()]
    try:
        tts.append(EspeakTTS())
    except EngineUnavailable as exc:
        log.warning("espeak-ng voices disabled: %s", exc)
    registry = EngineRegistry(
        tts,
        # A decoder ready per STT worker thread (at most 4: each holds ~95 MB of models), so
        # concurrent first requests do not each wait a quarter second for a model load.
        PocketsphinxSTT(
            min_decoders=min(settings.stt_threads, 4, settings.max_stt_streams),
            max_streams=settings.max_stt_streams,
            idle_release_seconds=settings.stt_idle_release_seconds,
            options={"fwdflat": settings.stt_second_pass},
        ),
        # Providers as configured (auto: TensorRT → CUDA → CPU, TensorRT plans cached under
        # trt_cache_dir). A 32 ms window costs ~0.1 ms of CPU, about one host-to-GPU round
        # trip, so VOICESTREAM_ONNX_PROVIDERS=cpu is a fair choice on GPU hosts too.
        SileroVAD(preference=settings.onnx_providers, cache_dir=settings.trt_cache_dir),
    )
    if settings.default_voice not in {v.id for v in registry.voices()}:
        log.warning("default voice %r is not in the catalog", settings.default_voice)
    registry.warm_up()
    return registry
