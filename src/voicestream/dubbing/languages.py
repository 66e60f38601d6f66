"""The languages a dub may be made in, and the installed voices that speak each.

The table is the set ElevenLabs' dubbing lists (so a client written for it asks for nothing we
refuse) plus a few more espeak-ng speaks. Codes are ISO 639-1 (``fil``, Filipino, has none);
a BCP-47 tag such as ``en-US`` or ``pt_BR`` is taken as its language.
"""

from __future__ import annotations

from typing import Final, Protocol

from ..engines.base import Voice
from ..errors import ValidationFailed

__all__ = ["LANGUAGES", "check_language", "language_name", "voices_for"]

LANGUAGES: Final[dict[str, str]] = {
    "ar": "Arabic",
    "bg": "Bulgarian",
    "ca": "Catalan",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fil": "Filipino",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hr": "Croatian",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "ms": "Malay",
    "nl": "Dutch",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sk": "Slovak",
    "sv": "Swedish",
    "ta": "Tamil",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
}

# Codes that name the same language as a table entry (Norwegian Bokmål is what voices say).
_ALIASES: Final = {"nb": "no", "iw": "he", "in": "id", "tl": "fil"}


class VoiceCatalog(Protocol):
    def voices(self) -> list[Voice]: ...


def check_language(code: str) -> str:
    """``code`` as the table's ISO 639-1 code (``"en-US"`` -> ``"en"``).

    Raises:
        ValidationFailed: not a language dubbing supports (the message names it).
    """
    primary = code.strip().replace("_", "-").split("-", 1)[0].lower()
    primary = _ALIASES.get(primary, primary)
    if primary not in LANGUAGES:
        raise ValidationFailed(
            f"unknown or unsupported language {code!r}: dubbing speaks ISO 639-1 codes such as "
            f"'en', 'es', 'de' ({len(LANGUAGES)} languages)",
            details={"language": code},
        )
    return primary


def language_name(code: str) -> str:
    """English name of a checked code ("de" -> "German")."""
    return LANGUAGES[check_language(code)]


def _voice_language(voice: Voice) -> str | None:
    try:
        return check_language(voice.language)
    except ValidationFailed:
        return None


def voices_for(registry: VoiceCatalog, language: str) -> list[Voice]:
    """The installed voices whose language is ``language``'s, sorted by id; [] when none."""
    wanted = check_language(language)
    found = [v for v in registry.voices() if _voice_language(v) == wanted]
    return sorted(found, key=lambda v: v.id)
