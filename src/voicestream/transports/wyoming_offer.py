"""What the Wyoming endpoint offers, and how a request's choice is matched against it: the
``info`` answer to ``describe`` (programs, voices, the speech-to-text models, attributions), a
voice chosen by name or language, and the engine a ``transcribe`` asks for."""

from __future__ import annotations

from aiohttp import web

from .. import __version__
from ..engines.base import STTEngine, TTSEngine, Voice
from ..engines.whisper_stt import WhisperSTT
from ..errors import UnknownVoice, ValidationFailed
from ..protocols import wyoming as wy
from ..rest.resources import REGISTRY, SETTINGS

__all__ = ["ASR_PROGRAM", "TTS_PROGRAM", "build_info", "choose_stt", "resolve_voice"]

TTS_PROGRAM = "voicestream-tts"
ASR_PROGRAM = "voicestream-asr"
_ENGINE_ATTRIBUTION = {
    "piper": wy.Attribution("Piper (Rhasspy)", "https://github.com/rhasspy/piper"),
    "flite": wy.Attribution("Carnegie Mellon University (Flite)", "http://cmuflite.org"),
    "espeak-ng": wy.Attribution("eSpeak NG", "https://github.com/espeak-ng/espeak-ng"),
    "pocketsphinx": wy.Attribution(
        "CMU Sphinx (PocketSphinx)", "https://github.com/cmusphinx/pocketsphinx"
    ),
}
_WHISPER = wy.Attribution("OpenAI Whisper (faster-whisper)", "https://github.com/openai/whisper")
_OURS = wy.Attribution("voicestream", "")


def _asr_model(engine: STTEngine, name: str) -> wy.AsrModel:
    whisper = isinstance(engine, WhisperSTT)
    if isinstance(engine, WhisperSTT) and engine.multilingual:
        languages = engine.info.languages
    else:
        languages = tuple(dict.fromkeys([engine.language, engine.language.split("-")[0]]))
    label = engine.name if name == engine.name else f"{engine.name} {name}"
    return wy.AsrModel(
        name=name,
        languages=languages,
        attribution=_WHISPER if whisper else _ENGINE_ATTRIBUTION.get(engine.name, _OURS),
        description=f"{label} ({engine.language})",
    )


def build_info(rt: web.Application) -> wy.Event:
    voices = tuple(
        wy.TtsVoice(
            name=v.id,
            languages=(v.language,),
            attribution=_ENGINE_ATTRIBUTION.get(v.engine, _OURS),
            description=v.name,
        )
        for v in rt[REGISTRY].voices()
    )
    # Every installed engine, the default first, by the name ``transcribe`` may ask for.
    models = tuple(
        _asr_model(engine, name)
        for engine, name in zip(
            rt[REGISTRY].stt_engines(), rt[REGISTRY].stt_model_names(), strict=True
        )
    )
    return wy.info(
        asr=[wy.AsrProgram(ASR_PROGRAM, _OURS, models, "voicestream speech-to-text", __version__)],
        tts=[
            wy.TtsProgram(
                TTS_PROGRAM,
                _OURS,
                voices,
                f"voicestream text-to-speech ({', '.join(rt[REGISTRY].tts_engine_names())})",
                __version__,
            )
        ],
    )


def _lang(tag: str) -> str:
    return tag.replace("_", "-").lower()


def _language_matches(wanted: str, offered: str) -> bool:
    """Whether a requested language tag fits an offered one, ignoring case and ``_``/``-``.

    "en" fits "en-US" (and the other way round): Wyoming clients spell tags either way.
    """
    w, o = _lang(wanted), _lang(offered)
    return w == o or o.startswith(w + "-") or w.startswith(o + "-")


def resolve_voice(rt: web.Application, req: wy.VoiceRequest | None) -> tuple[TTSEngine, Voice]:
    if req is not None and req.name is not None:
        engine, voice = rt[REGISTRY].voice(req.name)
    elif req is not None and req.language is not None:
        default = rt[REGISTRY].voice(rt[SETTINGS].default_voice)
        candidates = [default[1], *rt[REGISTRY].voices()]
        found = next((v for v in candidates if _lang(v.language) == _lang(req.language)), None)
        found = found or next(
            (v for v in candidates if _language_matches(req.language, v.language)), None
        )
        if found is None:
            raise UnknownVoice(
                f"no voice speaks {req.language!r}; describe lists the voices",
                details={"language": req.language},
            )
        engine, voice = rt[REGISTRY].voice(found.id)
    else:
        engine, voice = rt[REGISTRY].voice(rt[SETTINGS].default_voice)
    if req is not None and req.speaker is not None:
        raise UnknownVoice(
            f"voice {voice.id!r} has no speakers (asked for {req.speaker!r})",
            details={"voice": voice.id, "speaker": req.speaker},
        )
    return engine, voice


def choose_stt(rt: web.Application, name: str | None, language: str | None) -> STTEngine:
    """The engine a ``transcribe`` event asks for: a model or engine name that ``describe``
    lists (``tiny.en``, ``pocketsphinx``, a models-dir model), else the default; a language
    the default cannot hear picks a multilingual model where one is installed.

    Raises:
        ValidationFailed: a name nothing here answers to, or a language the engine cannot hear.
    """
    registry = rt[REGISTRY]
    known = registry.stt_names()
    if name is not None and name != ASR_PROGRAM and name not in known and name.lower() not in known:
        raise ValidationFailed(
            f"unknown speech-to-text model {name!r}; describe lists "
            f"{', '.join(registry.stt_model_names())}",
            details={"model": name},
        )
    engine = registry.stt_for(None if name == ASR_PROGRAM else name, language=language)
    if not engine.hears(language):
        raise ValidationFailed(
            f"language {language!r} is not supported; speech-to-text here is {engine.language}",
            details={"language": language},
        )
    return engine
