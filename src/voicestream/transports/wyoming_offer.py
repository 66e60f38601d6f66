"""What the Wyoming endpoint offers, and how a request's choice is matched against it: the
``info`` answer to ``describe`` (programs, voices, the speech-to-text model, attributions), a
voice chosen by name or language, and the checks on ``transcribe``."""

from __future__ import annotations

from .. import __version__
from ..engines.base import TTSEngine, Voice
from ..errors import UnknownVoice, ValidationFailed
from ..protocols import wyoming as wy
from .context import Runtime

__all__ = ["ASR_PROGRAM", "TTS_PROGRAM", "build_info", "check_transcribe", "resolve_voice"]

TTS_PROGRAM = "voicestream-tts"
ASR_PROGRAM = "voicestream-asr"
_ENGINE_ATTRIBUTION = {
    "flite": wy.Attribution("Carnegie Mellon University (Flite)", "http://cmuflite.org"),
    "espeak-ng": wy.Attribution("eSpeak NG", "https://github.com/espeak-ng/espeak-ng"),
    "pocketsphinx": wy.Attribution(
        "CMU Sphinx (PocketSphinx)", "https://github.com/cmusphinx/pocketsphinx"
    ),
}
_OURS = wy.Attribution("voicestream", "")


def build_info(rt: Runtime) -> wy.Event:
    voices = tuple(
        wy.TtsVoice(
            name=v.id,
            languages=(v.language,),
            attribution=_ENGINE_ATTRIBUTION.get(v.engine, _OURS),
            description=v.name,
        )
        for v in rt.registry.voices()
    )
    stt = rt.registry.stt
    languages = tuple(dict.fromkeys([stt.language, stt.language.split("-")[0]]))
    model = wy.AsrModel(
        name=stt.name,
        languages=languages,
        attribution=_ENGINE_ATTRIBUTION.get(stt.name, _OURS),
        description=f"{stt.name} ({stt.language})",
    )
    return wy.info(
        asr=[
            wy.AsrProgram(ASR_PROGRAM, _OURS, (model,), "voicestream speech-to-text", __version__)
        ],
        tts=[
            wy.TtsProgram(
                TTS_PROGRAM,
                _OURS,
                voices,
                f"voicestream text-to-speech ({', '.join(rt.registry.tts_engine_names())})",
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


def resolve_voice(rt: Runtime, req: wy.VoiceRequest | None) -> tuple[TTSEngine, Voice]:
    if req is not None and req.name is not None:
        engine, voice = rt.registry.voice(req.name)
    elif req is not None and req.language is not None:
        default = rt.registry.voice(rt.settings.default_voice)
        candidates = [default[1], *rt.registry.voices()]
        found = next((v for v in candidates if _lang(v.language) == _lang(req.language)), None)
        found = found or next(
            (v for v in candidates if _language_matches(req.language, v.language)), None
        )
        if found is None:
            raise UnknownVoice(
                f"no voice speaks {req.language!r}; describe lists the voices",
                details={"language": req.language},
            )
        engine, voice = rt.registry.voice(found.id)
    else:
        engine, voice = rt.registry.voice(rt.settings.default_voice)
    if req is not None and req.speaker is not None:
        raise UnknownVoice(
            f"voice {voice.id!r} has no speakers (asked for {req.speaker!r})",
            details={"voice": voice.id, "speaker": req.speaker},
        )
    return engine, voice


def check_transcribe(rt: Runtime, name: str | None, language: str | None) -> None:
    stt = rt.registry.stt
    if name is not None and name not in (stt.name, ASR_PROGRAM):
        raise ValidationFailed(
            f"unknown speech-to-text model {name!r}; describe lists {stt.name!r}",
            details={"model": name},
        )
    if language is not None and not _language_matches(language, stt.language):
        raise ValidationFailed(
            f"language {language!r} is not supported; speech-to-text here is {stt.language}",
            details={"language": language},
        )
