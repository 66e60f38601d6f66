"""ElevenLabs' REST shapes (``/elevenlabs/v1/...``), as the official SDK sends and expects them.

Pure: request models and their validation, our alignment turned into ElevenLabs'
``{characters, character_start_times_seconds, character_end_times_seconds}`` (times absolute from
the start of the audio, in seconds), voices and models in their shapes, and error bodies. The
transport (``transports/elevenlabs_rest.py``) only moves bytes. The socket messages live in
``protocols/elevenlabs_ws.py`` (TTS) and ``protocols/elevenlabs_stt_realtime.py`` (Scribe).

Errors: ElevenLabs answers a validation failure with FastAPI's 422 list
``{"detail": [{"loc", "msg", "type"}]}`` and everything else with
``{"detail": {"status": "<code>", "message": "..."}}``; the SDK raises ``ApiError`` with the status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..engines.base import Alignment, Voice
from ..errors import EmptyText, TextTooLong, ValidationFailed, VoiceStreamError
from .json_messages import validate_model

__all__ = [
    "DEFAULT_OUTPUT_FORMAT",
    "DEFAULT_TTS_MODEL",
    "MODELS",
    "STT_MODELS",
    "TTS_MODELS",
    "AlignmentBuilder",
    "CharTiming",
    "SpeechToTextForm",
    "TTSBody",
    "VoiceSettings",
    "check_tts_body",
    "default_settings",
    "error_body",
    "language_code_3",
    "merge_timings",
    "model_list",
    "parse_stt_form",
    "parse_tts_body",
    "subscription",
    "transcript_response",
    "user",
    "voice_object",
    "voices_page",
]

DEFAULT_OUTPUT_FORMAT: Final = "mp3_44100_128"
DEFAULT_TTS_MODEL: Final = "eleven_multilingual_v2"

# Their model ids, each served by our engines: English ids by flite (plus espeak-ng voices),
# multilingual ids by every engine. The voice id still picks the engine.
_ENGLISH = [{"language_id": "en", "name": "English"}]
_MULTI = [
    {"language_id": code, "name": name}
    for code, name in (
        ("en", "English"),
        ("de", "German"),
        ("fr", "French"),
        ("es", "Spanish"),
        ("it", "Italian"),
        ("pt", "Portuguese"),
        ("nl", "Dutch"),
        ("pl", "Polish"),
    )
]


@dataclass(frozen=True, slots=True)
class _Model:
    model_id: str
    name: str
    description: str
    multilingual: bool
    max_chars: int


TTS_MODELS: Final[tuple[_Model, ...]] = (
    _Model(
        "eleven_flash_v2_5", "Eleven Flash v2.5", "Lowest latency (flite/espeak-ng).", True, 40000
    ),
    _Model("eleven_turbo_v2_5", "Eleven Turbo v2.5", "Low latency (flite/espeak-ng).", True, 40000),
    _Model("eleven_multilingual_v2", "Eleven Multilingual v2", "All engines.", True, 10000),
    _Model("eleven_v3", "Eleven v3", "All engines.", True, 5000),
    _Model("eleven_flash_v2", "Eleven Flash v2", "English, lowest latency (flite).", False, 30000),
    _Model("eleven_turbo_v2", "Eleven Turbo v2", "English, low latency (flite).", False, 30000),
    _Model("eleven_monolingual_v1", "Eleven English v1", "English (flite).", False, 10000),
    _Model("eleven_multilingual_v1", "Eleven Multilingual v1", "All engines.", True, 10000),
)
STT_MODELS: Final[tuple[str, ...]] = ("scribe_v1", "scribe_v1_experimental", "scribe_v2")
MODELS: Final[frozenset[str]] = frozenset(m.model_id for m in TTS_MODELS)

_M = TypeVar("_M", bound=BaseModel)

_STATUS_NAMES: Final[Mapping[str, str]] = {
    "unknown_voice": "voice_not_found",
    "unsupported_format": "invalid_output_format",
    "unauthorized": "invalid_api_key",
    # ElevenLabs says quota_exceeded when the credits cannot cover a request; SDK users test it.
    "insufficient_credits": "quota_exceeded",
}


def error_body(err: VoiceStreamError, *, status: int) -> dict[str, Any]:
    """The body ElevenLabs would send for ``err`` answered with HTTP ``status``."""
    if status == 422:
        fields = err.details.get("fields") if err.details else None
        if isinstance(fields, list) and fields:
            return {
                "detail": [
                    {
                        "loc": ["body", *str(f.get("field", "")).split(".")],
                        "msg": str(f.get("message", "")),
                        "type": err.code,
                    }
                    for f in fields
                    if isinstance(f, dict)
                ]
            }
        return {"detail": [{"loc": ["body"], "msg": err.message, "type": err.code}]}
    return {"detail": {"status": _STATUS_NAMES.get(err.code, err.code), "message": err.message}}


def _validate(model: type[_M], data: Any, where: str) -> _M:
    return validate_model(model, data, where)


class VoiceSettings(BaseModel):
    """``voice_settings`` as REST bodies and socket messages carry it. Only ``speed`` is used:
    the text-to-speech routes have Piper voices speak at it (other engines ignore it)."""

    model_config = ConfigDict(extra="allow")

    stability: float | None = Field(None, ge=0, le=1)
    similarity_boost: float | None = Field(None, ge=0, le=1)
    style: float | None = Field(None, ge=0, le=1)
    use_speaker_boost: bool | None = None
    speed: float | None = Field(None, ge=0.5, le=2.0)


class TTSBody(BaseModel):
    """``POST /v1/text-to-speech/{voice_id}[...]``: fields we do not use are accepted, ignored."""

    model_config = ConfigDict(extra="allow")

    text: str
    model_id: str | None = None
    language_code: str | None = None
    voice_settings: VoiceSettings | None = None
    seed: int | None = Field(None, ge=0, le=4294967295)
    previous_text: str | None = None
    next_text: str | None = None


def parse_tts_body(data: Any, *, max_text_chars: int) -> TTSBody:
    """Validate a TTS body.

    Raises:
        ValidationFailed: not an object, or a field has the wrong type or range (422).
        EmptyText: ``text`` has nothing in it but whitespace (400).
        TextTooLong: ``text`` exceeds ``max_text_chars`` (400).
    """
    return check_tts_body(_validate(TTSBody, data, "request body"), max_text_chars=max_text_chars)


def check_tts_body(body: TTSBody, *, max_text_chars: int) -> TTSBody:
    """The checks beyond the model's types: text present and within limits, model known."""
    if not body.text.strip():
        raise EmptyText("text is empty")
    if len(body.text) > max_text_chars:
        raise TextTooLong(f"text has {len(body.text)} characters; the limit is {max_text_chars}")
    if body.model_id is not None and body.model_id not in MODELS:
        raise ValidationFailed(
            f"unknown model_id {body.model_id!r}; GET /v1/models lists the models",
            details={"fields": [{"field": "model_id", "message": "unknown model"}]},
        )
    return body


@dataclass(frozen=True, slots=True)
class SpeechToTextForm:
    model_id: str
    language_code: str | None
    timestamps_granularity: str


def _form_value(form: Mapping[str, str], name: str) -> str | None:
    """A form field, with the SDK's literal ``"null"`` (and empty) meaning absent."""
    value = form.get(name)
    if value is None or value == "null" or not value.strip():
        return None
    return value.strip()


def parse_stt_form(form: Mapping[str, str], installed: Sequence[str] = ()) -> SpeechToTextForm:
    """Validate the non-file fields of ``POST /v1/speech-to-text``.

    ``model_id`` is one of ElevenLabs' Scribe ids (served by the default engine) or the name
    of an installed STT model (``installed``: ``tiny.en``, a models-dir Whisper model, …).

    Raises:
        ValidationFailed: model_id missing or unknown, a bad granularity (422).
    """
    model_id = _form_value(form, "model_id")
    if model_id is None:
        raise ValidationFailed(
            "model_id is required",
            details={"fields": [{"field": "model_id", "message": "field required"}]},
        )
    if model_id not in STT_MODELS and model_id not in installed:
        raise ValidationFailed(
            f"unknown model_id {model_id!r}; use one of {', '.join((*STT_MODELS, *installed))}",
            details={"fields": [{"field": "model_id", "message": "unknown model"}]},
        )
    granularity = _form_value(form, "timestamps_granularity") or "word"
    if granularity not in ("none", "word", "character"):
        raise ValidationFailed(
            f"timestamps_granularity must be none, word or character; got {granularity!r}",
            details={"fields": [{"field": "timestamps_granularity", "message": "bad value"}]},
        )
    return SpeechToTextForm(model_id, _form_value(form, "language_code"), granularity)


# ISO 639-1 → 639-3 for the languages Whisper models commonly serve; others pass through as given.
_ISO639_3: Final[Mapping[str, str]] = {
    "en": "eng",
    "de": "deu",
    "fr": "fra",
    "es": "spa",
    "it": "ita",
    "pt": "por",
    "nl": "nld",
    "pl": "pol",
    "ru": "rus",
    "uk": "ukr",
    "cs": "ces",
    "sv": "swe",
    "da": "dan",
    "fi": "fin",
    "no": "nor",
    "el": "ell",
    "tr": "tur",
    "ro": "ron",
    "hu": "hun",
    "ar": "ara",
    "he": "heb",
    "hi": "hin",
    "ja": "jpn",
    "ko": "kor",
    "zh": "zho",
    "vi": "vie",
    "th": "tha",
    "id": "ind",
}
_ISO639_1: Final[Mapping[str, str]] = {three: two for two, three in _ISO639_3.items()}


def language_code_3(bcp47: str) -> str:
    """ElevenLabs reports ISO-639-3 codes ("eng"); ours are BCP-47 ("en-US")."""
    primary = bcp47.split("-")[0].lower()
    return _ISO639_3.get(primary, primary)


def language_tag(code: str) -> str:
    """A client's ``language_code`` as our engines read it: ElevenLabs sends ISO 639-3
    ("eng") or ISO 639-1 ("en"); the three-letter codes we know become two-letter ones."""
    code = code.strip()
    return _ISO639_1.get(code.lower(), code)


def transcript_response(
    text: str,
    words: Sequence[tuple[str, float, float]],
    *,
    language_code: str,
    granularity: str,
    duration: float,
) -> dict[str, Any]:
    """``SpeechToTextChunkResponseModel``: words with ``spacing`` entries between them."""
    out: list[dict[str, Any]] = []
    if granularity != "none":
        for i, (word, start, end) in enumerate(words):
            if i:
                prev_end = words[i - 1][2]
                out.append(_word(" ", prev_end, max(prev_end, start), "spacing"))
            entry = _word(word, start, end, "word")
            if granularity == "character":
                entry["characters"] = _spread_chars(word, start, end)
            out.append(entry)
    return {
        "language_code": language_code,
        "language_probability": 1.0,
        "text": text,
        "words": out,
        "audio_duration_secs": round(duration, 3),
    }


def _word(text: str, start: float, end: float, kind: str) -> dict[str, Any]:
    return {
        "text": text,
        "start": round(start, 3),
        "end": round(end, 3),
        "type": kind,
        "speaker_id": "speaker_0",
        "logprob": 0.0,
    }


def _spread_chars(word: str, start: float, end: float) -> list[dict[str, Any]]:
    step = (end - start) / max(len(word), 1)
    return [
        {"text": c, "start": round(start + i * step, 3), "end": round(start + (i + 1) * step, 3)}
        for i, c in enumerate(word)
    ]


@dataclass(frozen=True, slots=True)
class CharTiming:
    """Characters with absolute start and end times in seconds (ElevenLabs' ``alignment``)."""

    characters: tuple[str, ...]
    starts: tuple[float, ...]
    ends: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "characters": list(self.characters),
            "character_start_times_seconds": [round(t, 3) for t in self.starts],
            "character_end_times_seconds": [round(t, 3) for t in self.ends],
        }


class AlignmentBuilder:
    """Turns per-clause alignments into ElevenLabs alignments covering the whole input text.

    Clauses arrive in order with their offset in the text; characters no clause covered
    (whitespace between clauses, clauses with nothing speakable) go in with zero length at the
    time where they fall, so that every character of the text appears exactly once.
    """

    def __init__(self, text: str = "") -> None:
        self._text = text
        self._covered = 0  # characters of the text handed out so far
        self._time = 0.0  # end of the audio handed out so far, seconds

    def extend(self, text: str) -> None:
        """More input text (a stream's text arrives in pieces)."""
        self._text += text

    def seal(self) -> str:
        """End a generation (a flush or the end of input): returns the text to add to it.

        ElevenLabs' alignment of a generation always ends on a space, even when the text sent
        did not; Pipecat closes a word only on the space after it, so without it the last word
        of the stream is never timed. The space is added here and must go to the synthesizer
        too, so the text offsets of both stay the same.
        """
        if not self._text or self._text[-1].isspace():
            return ""
        self._text += " "
        return " "

    def clause(
        self,
        clause_text: str,
        text_offset: int,
        audio_offset: float,
        duration: float,
        alignment: Alignment | None,
    ) -> CharTiming:
        """The timing for the text up to and including this clause's."""
        chars: list[str] = []
        starts: list[float] = []
        ends: list[float] = []
        gap_end = max(self._covered, min(text_offset, len(self._text)))
        self._gap(chars, starts, ends, gap_end, audio_offset)
        if alignment is not None and "".join(alignment.chars) == clause_text:
            for c, s_ms, d_ms in zip(
                alignment.chars, alignment.char_start_ms, alignment.char_duration_ms, strict=True
            ):
                start = audio_offset + min(s_ms / 1000, duration)
                end = audio_offset + min((s_ms + d_ms) / 1000, duration)
                chars.append(c)
                starts.append(start)
                ends.append(max(start, end))
        else:
            step = duration / max(len(clause_text), 1)
            for i, c in enumerate(clause_text):
                chars.append(c)
                starts.append(audio_offset + i * step)
                ends.append(audio_offset + (i + 1) * step)
        self._covered = max(self._covered, gap_end + len(clause_text))
        self._time = max(self._time, audio_offset + duration)
        return CharTiming(tuple(chars), tuple(starts), tuple(ends))

    def rest(self) -> CharTiming | None:
        """Whatever text no clause covered, at the end of the audio; None if nothing is left."""
        chars: list[str] = []
        starts: list[float] = []
        ends: list[float] = []
        self._gap(chars, starts, ends, len(self._text), self._time)
        return CharTiming(tuple(chars), tuple(starts), tuple(ends)) if chars else None

    def _gap(
        self, chars: list[str], starts: list[float], ends: list[float], upto: int, at: float
    ) -> None:
        for c in self._text[self._covered : upto]:
            chars.append(c)
            starts.append(at)
            ends.append(at)
        self._covered = max(self._covered, upto)


def merge_timings(parts: Iterable[CharTiming]) -> CharTiming:
    chars: list[str] = []
    starts: list[float] = []
    ends: list[float] = []
    for p in parts:
        chars.extend(p.characters)
        starts.extend(p.starts)
        ends.extend(p.ends)
    return CharTiming(tuple(chars), tuple(starts), tuple(ends))


_DEFAULT_SETTINGS: Final = {
    "stability": 0.5,
    "similarity_boost": 0.75,
    "style": 0.0,
    "use_speaker_boost": True,
    "speed": 1.0,
}


def default_settings() -> dict[str, Any]:
    """``VoiceSettings``: every catalog voice uses these (our engines take none of them)."""
    return dict(_DEFAULT_SETTINGS)


def voice_object(voice: Voice) -> dict[str, Any]:
    """A catalog voice as ElevenLabs' ``Voice``: premade, labelled with language and engine."""
    language = voice.language.split("-")[0].lower()
    models = [m.model_id for m in TTS_MODELS if m.multilingual or language == "en"]
    return {
        "voice_id": voice.id,
        "name": voice.name,
        "category": "premade",
        "description": f"{voice.name} ({voice.engine}, {voice.language})",
        "labels": {
            "language": language,
            "locale": voice.language,
            "gender": voice.gender,
            "engine": voice.engine,
            "use_case": "conversational",
        },
        "samples": None,
        "fine_tuning": None,
        "preview_url": None,
        "available_for_tiers": [],
        "settings": dict(_DEFAULT_SETTINGS),
        "sharing": None,
        "high_quality_base_model_ids": models,
        "verified_languages": [
            {"language": language, "model_id": m, "locale": voice.language} for m in models
        ],
        "is_owner": False,
        "is_legacy": False,
        "is_mixed": False,
        "created_at_unix": None,
    }


def voices_page(
    voices: Sequence[Voice],
    *,
    search: str | None = None,
    voice_ids: Sequence[str] = (),
    category: str | None = None,
    voice_type: str | None = None,
    sort: str | None = None,
    sort_direction: str | None = None,
    page_size: int = 10,
    next_page_token: str | None = None,
    include_total_count: bool = True,
) -> dict[str, Any]:
    """``GET /v2/voices``: filtered, sorted, one page; the page token is an offset.

    Raises:
        ValidationFailed: page_size outside 1..100, or a page token that is not ours.
    """
    if not 1 <= page_size <= 100:
        raise ValidationFailed(f"page_size must be between 1 and 100; got {page_size}")
    start = 0
    if next_page_token:
        if not next_page_token.isdigit():
            raise ValidationFailed(f"next_page_token {next_page_token!r} is not valid")
        start = int(next_page_token)
    found = list(voices)
    if voice_ids:
        wanted = set(voice_ids)
        found = [v for v in found if v.id in wanted]
    if search:
        needle = search.lower()
        found = [
            v
            for v in found
            if any(needle in s.lower() for s in (v.id, v.name, v.language, v.gender, v.engine))
        ]
    # Every catalog voice is built in: category "premade", voice type "default".
    if category not in (None, "premade") or voice_type not in (None, "default"):
        found = []
    if sort == "name":
        found.sort(key=lambda v: v.name.lower(), reverse=sort_direction == "desc")
    page = found[start : start + page_size]
    more = start + page_size < len(found)
    return {
        "voices": [voice_object(v) for v in page],
        "has_more": more,
        "total_count": len(found) if include_total_count else None,
        "next_page_token": str(start + page_size) if more else None,
    }


def model_list(max_text_chars: int) -> list[dict[str, Any]]:
    """``GET /v1/models``: a bare array of ``Model``."""
    return [
        {
            "model_id": m.model_id,
            "name": m.name,
            "description": m.description,
            "can_be_finetuned": False,
            "can_do_text_to_speech": True,
            "can_do_voice_conversion": False,
            "can_use_style": False,
            "can_use_speaker_boost": False,
            "serves_pro_voices": False,
            "token_cost_factor": 1.0,
            "requires_alpha_access": False,
            "max_characters_request_free_user": min(m.max_chars, max_text_chars),
            "max_characters_request_subscribed_user": min(m.max_chars, max_text_chars),
            "maximum_text_length_per_request": min(m.max_chars, max_text_chars),
            "languages": _MULTI if m.multilingual else _ENGLISH,
            "model_rates": {"character_cost_multiplier": 1.0},
            "concurrency_group": "standard",
        }
        for m in TTS_MODELS
    ]


# Self-hosted: no quota to speak of, but the SDK's users read these numbers.
_CHARACTER_LIMIT: Final = 1_000_000_000


def subscription(
    *,
    characters: int,
    voices: int,
    tier: str = "self-hosted",
    character_limit: int = _CHARACTER_LIMIT,
    next_reset_unix: int | None = None,
    status: str = "active",
    currency: str | None = None,
) -> dict[str, Any]:
    """``GET /v1/user/subscription`` from our usage totals, and the billing plan when there
    is billing (``billing/subscription_view.py``)."""
    return {
        "tier": tier,
        "character_count": characters,
        "character_limit": character_limit,
        "max_character_limit_extension": None,
        "can_extend_character_limit": False,
        "allowed_to_extend_character_limit": False,
        "next_character_count_reset_unix": next_reset_unix,
        "voice_slots_used": 0,
        "professional_voice_slots_used": 0,
        "voice_limit": voices,
        "voice_add_edit_counter": 0,
        "professional_voice_limit": 0,
        "can_extend_voice_limit": False,
        "can_use_instant_voice_cloning": False,
        "can_use_professional_voice_cloning": False,
        "currency": currency,
        "current_overage": None,
        "status": status,
        "billing_period": None,
        "character_refresh_period": None,
        "next_invoice": None,
        "open_invoices": [],
        "has_open_invoices": False,
    }


def user(*, user_id: str, name: str, characters: int, voices: int) -> dict[str, Any]:
    """``GET /v1/user``: the key's workspace as the user; the key itself is never echoed."""
    return {
        "user_id": user_id,
        "subscription": subscription(characters=characters, voices=voices),
        "is_new_user": False,
        "xi_api_key": None,
        "can_use_delayed_payment_methods": False,
        "is_onboarding_completed": True,
        "is_onboarding_checklist_completed": True,
        "first_name": name,
        "is_api_key_hashed": True,
        "xi_api_key_preview": None,
        "created_at": None,
        "seat_type": "workspace_admin",
    }
