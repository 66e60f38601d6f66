"""Which installed voice speaks a speaker's lines in a language.

The caller's choice wins; otherwise a voice of the target language whose gender matches the
source speaker's pitch (a median F0 under ``MALE_BELOW_HZ`` reads as a male voice), the
better engines first and then by id, so the same plan always gets the same voice.
"""

from __future__ import annotations

from typing import Final

from ..engines.base import Voice
from ..errors import UnsupportedLanguage
from .languages import VoiceCatalog, check_language, language_name, voices_for

__all__ = ["MALE_BELOW_HZ", "choose_voice"]

MALE_BELOW_HZ: Final = 165.0
# Natural-sounding engines before the formant and diphone ones.
_ENGINE_RANK: Final = {"piper": 0, "flite": 1, "espeak-ng": 2}


def choose_voice(registry: VoiceCatalog, language: str, pitch_hz: float | None) -> Voice:
    """A voice for ``language`` that suits a speaker of ``pitch_hz`` (None: not measured).

    Raises:
        UnsupportedLanguage: no installed voice speaks ``language``.
    """
    code = check_language(language)
    voices = voices_for(registry, code)
    if not voices:
        raise UnsupportedLanguage(
            f"no installed voice speaks {language_name(code)} ({code}): install one, or "
            "dub into another language",
            details={"language": code},
        )
    voices.sort(key=lambda v: (_ENGINE_RANK.get(v.engine, len(_ENGINE_RANK)), v.id))
    if pitch_hz is not None:
        gender = "male" if pitch_hz < MALE_BELOW_HZ else "female"
        matching = [v for v in voices if v.gender == gender]
        if matching:
            return matching[0]
    return voices[0]
