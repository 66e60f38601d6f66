"""OpenAI's audio REST API (``/v1/audio/speech``, ``/v1/audio/transcriptions``,
``/v1/audio/translations``, ``/v1/models``)
as pure codecs: request parsing, voice/format/model mapping, SSE events, response shapes.

Voices. OpenAI's voice names map onto the server's natural voices: the Piper voices in the
catalog, English ones first and, where several are installed, those of the gender OpenAI's voice
is usually described with (``OPENAI_VOICE_GENDERS``), spread over them in a fixed order. With the
packaged voice alone every name is ``en_US-joe-medium``. Without any Piper voice the name maps to
the server's default voice, and without that to the flite voice ``VOICE_MAP`` names::

    female → slt     alloy, coral, nova, sage, shimmer, marin
    male   → rms     ash, echo, cedar
    male   → awb     ballad, fable        (fable is OpenAI's British voice: the Scottish one)
    male   → kal16   onyx, verse          (the deeper diphone voice)

Our own voice ids (``slt``, ``en_US-joe-medium``, an espeak voice…) are accepted as they are,
and so is OpenAI's custom-voice object ``{"id": "<our voice id>"}``.

Formats. OpenAI's ``pcm`` is raw 24 kHz s16le mono; the others are served at the nearest rate
our encoders offer (MP3 and FLAC and WAV at 24 kHz, Opus in Ogg at 48 kHz, AAC (ADTS) at
44.1 kHz).

Models. Any model name is accepted on speech, transcriptions and translations (clients send
their own defaults); the server maps it onto the best engine it has. ``/models`` lists the
names OpenAI documents.

Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}`` so the official
SDK raises its own exception classes (``BadRequestError`` and so on). Every client error is a
400 there, as on OpenAI; only auth, not-found and payload-too-large keep their own status.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import (
    AuthError,
    BadRequest,
    EmptyText,
    Forbidden,
    InvalidAudio,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    TextTooLong,
    UnknownVoice,
    UnsupportedFormat,
    VoiceStreamError,
)

__all__ = [
    "DEFAULT_SPEECH_FORMAT",
    "LANGUAGE_NAMES",
    "MODELS_CREATED",
    "OPENAI_VOICE_GENDERS",
    "SPEECH_FORMATS",
    "SPEECH_MODELS",
    "TRANSCRIPTION_FORMATS",
    "TRANSCRIPTION_MODELS",
    "VOICE_MAP",
    "CatalogVoice",
    "SpeechRequest",
    "TranscriptSegment",
    "TranscriptionOptions",
    "TranslationOptions",
    "error_body",
    "error_status",
    "model_list",
    "model_object",
    "parse_speech_request",
    "parse_transcription_options",
    "parse_translation_options",
    "resolve_voice",
    "speech_delta_event",
    "speech_done_event",
    "speech_usage",
    "sse",
    "transcript_delta_event",
    "transcript_done_event",
    "transcription_json",
    "transcription_usage",
    "verbose_transcription",
]


class CatalogVoice(Protocol):
    """What the voice mapping reads of a catalog entry (``engines.base.Voice`` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def gender(self) -> str: ...
    @property
    def engine(self) -> str: ...


# The flite voice for each OpenAI name, for servers without Piper voices.
VOICE_MAP: dict[str, str] = {
    "alloy": "slt",
    "coral": "slt",
    "nova": "slt",
    "sage": "slt",
    "shimmer": "slt",
    "marin": "slt",
    "ash": "rms",
    "echo": "rms",
    "cedar": "rms",
    "ballad": "awb",
    "fable": "awb",
    "onyx": "kal16",
    "verse": "kal16",
}
# How OpenAI's voices are usually described (the flite choice above follows it too).
OPENAI_VOICE_GENDERS: dict[str, str] = {
    name: "female" if flite == "slt" else "male" for name, flite in VOICE_MAP.items()
}

# OpenAI response_format → one of our output formats (media.formats.SUPPORTED_FORMATS).
SPEECH_FORMATS: dict[str, str] = {
    "mp3": "mp3_24000_48",
    "opus": "opus_48000_64",
    "aac": "aac_44100_128",
    "flac": "flac_24000",
    "wav": "wav_24000",
    "pcm": "pcm_24000",
}
DEFAULT_SPEECH_FORMAT = "mp3"

SPEECH_MODELS: tuple[str, ...] = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
TRANSCRIPTION_MODELS: tuple[str, ...] = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
TRANSCRIPTION_FORMATS: tuple[str, ...] = ("json", "text", "srt", "vtt", "verbose_json")
_GRANULARITIES = frozenset({"word", "segment"})
# Model names are free-form (see _check_model); this only bounds what an error message echoes.
MAX_MODEL_NAME_CHARS = 256
# Fixed so the model objects are stable across restarts (2024-01-01T00:00:00Z).
MODELS_CREATED = 1_704_067_200

# verbose_json names the language in English words, as Whisper does.
LANGUAGE_NAMES: dict[str, str] = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
}

_MIN_SPEED, _MAX_SPEED = 0.25, 4.0


def _bad(message: str, param: str | None, cls: type[BadRequest] = BadRequest) -> BadRequest:
    return cls(message, details={"param": param} if param else None)


# ---------------------------------------------------------------------------- errors


def error_status(err: VoiceStreamError) -> int:
    """The HTTP status OpenAI would answer with: client errors are 400 there."""
    if isinstance(err, PayloadTooLarge | AuthError | NotFound):
        return err.http_status
    if isinstance(err, BadRequest):
        return 400
    return err.http_status


_PARAMS: tuple[tuple[type[VoiceStreamError], str], ...] = (
    (UnknownVoice, "voice"),
    (UnsupportedFormat, "response_format"),
    (EmptyText, "input"),
    (TextTooLong, "input"),
    (InvalidAudio, "file"),
    (PayloadTooLarge, "file"),
)


def error_body(err: VoiceStreamError) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` for ``err``."""
    param = err.details.get("param")
    if param is None:
        param = next((p for cls, p in _PARAMS if isinstance(err, cls)), None)
    if isinstance(err, Forbidden):
        kind = "permission_error"
    elif isinstance(err, AuthError):
        kind = "authentication_error"
    elif isinstance(err, NotFound):
        kind = "not_found_error"
    elif isinstance(err, BadRequest):
        kind = "invalid_request_error"
    elif isinstance(err, QuotaExceeded):
        kind = "insufficient_quota"  # OpenAI's type for a used-up quota or balance
    else:
        kind = "server_error"
    return {"error": {"message": err.message, "type": kind, "param": param, "code": err.code}}


# ---------------------------------------------------------------------------- models


def _served(installed: Sequence[str]) -> list[str]:
    return list(dict.fromkeys((*SPEECH_MODELS, *TRANSCRIPTION_MODELS, *installed)))


def model_object(model_id: str, installed: Sequence[str] = ()) -> dict[str, Any]:
    """One model: OpenAI's names, or one of the ``installed`` models' own names (a Whisper
    model from the models directory, say); raises NotFound for any other."""
    if model_id not in _served(installed):
        raise NotFound(f"the model {model_id!r} does not exist", details={"param": "model"})
    return {"id": model_id, "object": "model", "created": MODELS_CREATED, "owned_by": "voicestream"}


def model_list(installed: Sequence[str] = ()) -> dict[str, Any]:
    """OpenAI's model names, then the installed speech models by their own names."""
    return {"object": "list", "data": [model_object(m, installed) for m in _served(installed)]}


def _check_model(model: object) -> str:
    """Any model name: clients send their own defaults (Pipecat's ``gpt-transcribe``, future
    OpenAI names), and the server maps every name onto the best engine it has."""
    if not isinstance(model, str) or not model.strip():
        raise _bad("'model' is required and must be a string", "model")
    if len(model) > MAX_MODEL_NAME_CHARS or not model.isprintable():
        raise _bad(
            f"'model' must be a printable name of at most {MAX_MODEL_NAME_CHARS} characters",
            "model",
        )
    return model


# ---------------------------------------------------------------------------- speech


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    model: str
    input: str
    voice: str  # one of our voice ids (OpenAI names already mapped)
    response_format: str  # OpenAI's name: mp3, opus, …
    output_format: str  # ours: mp3_24000_48, …
    speed: float
    instructions: str | None
    sse: bool


def resolve_voice(
    voice: object, catalog: Sequence[CatalogVoice] = (), default_voice: str | None = None
) -> str:
    """Our voice id for an OpenAI voice name, one of our ids, or ``{"id": "<our id>"}``.

    OpenAI names go to a Piper voice of ``catalog`` (see the module doc), else to
    ``default_voice`` when the catalog has it, else to a flite voice.
    """
    if isinstance(voice, dict):
        voice = voice.get("id")
    if not isinstance(voice, str) or not voice:
        raise _bad("'voice' must be a voice name or an object with an 'id'", "voice", UnknownVoice)
    name = voice.lower()
    if name not in VOICE_MAP:
        return voice
    piper = sorted((v for v in catalog if v.engine == "piper"), key=lambda v: v.id)
    english = [v for v in piper if v.language.lower().startswith("en")]
    gender = OPENAI_VOICE_GENDERS[name]
    for choices in ([v for v in english if v.gender == gender], english, piper):
        if choices:
            # Spread the OpenAI names sharing a gender over the voices that fit, in a fixed
            # order, so two names a client uses for two speakers sound different if they can.
            same = [n for n, g in OPENAI_VOICE_GENDERS.items() if g == gender]
            return choices[same.index(name) % len(choices)].id
    if default_voice is not None and any(v.id == default_voice for v in catalog):
        return default_voice
    return VOICE_MAP[name]


def parse_speech_request(
    data: Mapping[str, Any],
    *,
    max_chars: int,
    catalog: Sequence[CatalogVoice] = (),
    default_voice: str | None = None,
) -> SpeechRequest:
    """Validate a ``POST /audio/speech`` JSON body (``catalog`` and ``default_voice``: see
    ``resolve_voice``).

    Raises:
        BadRequest (and subclasses): with ``details["param"]`` naming the offending field.
    """
    unknown = set(data) - {
        "model",
        "input",
        "voice",
        "response_format",
        "speed",
        "instructions",
        "stream_format",
    }
    if unknown:
        raise _bad(f"unrecognized request argument: {', '.join(sorted(unknown))}", min(unknown))
    model = _check_model(data.get("model"))
    text = data.get("input")
    if not isinstance(text, str):
        raise _bad("'input' is required and must be a string", "input")
    if not text.strip():
        raise _bad("'input' is empty", "input", EmptyText)
    if len(text) > max_chars:
        raise _bad(
            f"'input' has {len(text)} characters; the limit is {max_chars}", "input", TextTooLong
        )
    if "voice" not in data:
        raise _bad("'voice' is required", "voice", UnknownVoice)
    voice = resolve_voice(data["voice"], catalog, default_voice)
    fmt = data.get("response_format") or DEFAULT_SPEECH_FORMAT
    if fmt not in SPEECH_FORMATS:
        raise _bad(
            f"unsupported response_format {fmt!r}; use one of {', '.join(SPEECH_FORMATS)}",
            "response_format",
            UnsupportedFormat,
        )
    speed = data.get("speed", 1.0)
    if speed is None:
        speed = 1.0
    if (
        isinstance(speed, bool)
        or not isinstance(speed, int | float)
        or not math.isfinite(speed)
        or not _MIN_SPEED <= speed <= _MAX_SPEED
    ):
        raise _bad(f"'speed' must be a number from {_MIN_SPEED} to {_MAX_SPEED}", "speed")
    instructions = data.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _bad("'instructions' must be a string", "instructions")
    stream_format = data.get("stream_format") or "audio"
    if stream_format not in ("audio", "sse"):
        raise _bad("'stream_format' must be 'audio' or 'sse'", "stream_format")
    return SpeechRequest(
        model=model,
        input=text,
        voice=voice,
        response_format=fmt,
        output_format=SPEECH_FORMATS[fmt],
        speed=float(speed),
        instructions=instructions,
        sse=stream_format == "sse",
    )


def sse(event: Mapping[str, Any]) -> bytes:
    """One data-only server-sent event, as OpenAI sends them."""
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def speech_usage(characters: int, audio_seconds: float) -> dict[str, int]:
    """We do not tokenize: input counts characters, output one token per 20 ms of audio."""
    out = round(audio_seconds * 50)
    return {"input_tokens": characters, "output_tokens": out, "total_tokens": characters + out}


def speech_delta_event(audio: bytes) -> dict[str, Any]:
    return {"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode("ascii")}


def speech_done_event(usage: Mapping[str, int]) -> dict[str, Any]:
    return {"type": "speech.audio.done", "usage": dict(usage)}


# ---------------------------------------------------------------------------- transcriptions


@dataclass(frozen=True, slots=True)
class TranscriptionOptions:
    model: str
    response_format: str
    language: str | None
    prompt: str | None
    temperature: float
    granularities: frozenset[str]
    stream: bool


def _one(fields: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[-1] if values else None


def _response_format(fields: Mapping[str, Sequence[str]]) -> str:
    fmt = _one(fields, "response_format") or "json"
    if fmt not in TRANSCRIPTION_FORMATS:
        raise _bad(
            f"unsupported response_format {fmt!r}; use one of {', '.join(TRANSCRIPTION_FORMATS)}",
            "response_format",
            UnsupportedFormat,
        )
    return fmt


def _temperature(fields: Mapping[str, Sequence[str]]) -> float:
    raw = _one(fields, "temperature")
    try:
        temperature = float(raw) if raw else 0.0
    except ValueError:
        raise _bad("'temperature' must be a number", "temperature") from None
    if not 0.0 <= temperature <= 1.0:
        raise _bad("'temperature' must be between 0 and 1", "temperature")
    return temperature


def parse_transcription_options(fields: Mapping[str, Sequence[str]]) -> TranscriptionOptions:
    """Validate the non-file multipart fields of ``POST /audio/transcriptions``.

    ``fields`` maps each form field name to its values in order (``timestamp_granularities[]``
    arrives as repeated parts).
    """
    model = _check_model(_one(fields, "model"))
    fmt = _response_format(fields)
    temperature = _temperature(fields)
    granularities = frozenset(
        [*fields.get("timestamp_granularities[]", ()), *fields.get("timestamp_granularities", ())]
    )
    if granularities - _GRANULARITIES:
        raise _bad(
            "'timestamp_granularities[]' takes 'word' and/or 'segment'", "timestamp_granularities"
        )
    if granularities and fmt != "verbose_json":
        raise _bad(
            "timestamp_granularities needs response_format 'verbose_json'",
            "timestamp_granularities",
        )
    stream_raw = (_one(fields, "stream") or "false").lower()
    if stream_raw not in ("true", "false"):
        raise _bad("'stream' must be true or false", "stream")
    stream = stream_raw == "true"
    if stream and fmt not in ("json", "text"):
        raise _bad("streaming needs response_format 'json' or 'text'", "stream")
    language = _one(fields, "language") or None
    if language is not None and not language.isascii():
        raise _bad("'language' must be an ISO-639-1 code such as 'en'", "language")
    return TranscriptionOptions(
        model=model,
        response_format=fmt,
        language=language,
        prompt=_one(fields, "prompt") or None,
        temperature=temperature,
        granularities=granularities or frozenset({"segment"}),
        stream=stream,
    )


@dataclass(frozen=True, slots=True)
class TranslationOptions:
    model: str
    response_format: str
    prompt: str | None
    temperature: float


def parse_translation_options(fields: Mapping[str, Sequence[str]]) -> TranslationOptions:
    """Validate the non-file multipart fields of ``POST /audio/translations``: OpenAI's
    transcription fields less ``language`` (the output is always English), timestamp
    granularities and streaming, none of which the translations API has."""
    model = _check_model(_one(fields, "model"))
    fmt = _response_format(fields)
    return TranslationOptions(
        model=model,
        response_format=fmt,
        prompt=_one(fields, "prompt") or None,
        temperature=_temperature(fields),
    )


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    """One utterance (a VAD segment) of a transcript, with its words' timings."""

    start: float
    end: float
    text: str
    words: tuple[tuple[str, float, float], ...] = ()


def transcription_usage(duration: float) -> dict[str, Any]:
    """Whisper-style usage: billed by whole seconds of audio."""
    return {"type": "duration", "seconds": math.ceil(duration)}


def transcription_json(text: str, duration: float) -> dict[str, Any]:
    return {"text": text, "usage": transcription_usage(duration)}


def verbose_transcription(
    segments: Sequence[TranscriptSegment],
    *,
    language: str,
    duration: float,
    granularities: frozenset[str],
    task: str = "transcribe",
) -> dict[str, Any]:
    """The ``verbose_json`` body: ``segments`` and, when asked for, ``words``.

    A translation (``task="translate"``) names the language it was translated into: English.
    """
    body: dict[str, Any] = {
        "task": task,
        "language": LANGUAGE_NAMES.get(language.split("-")[0].lower(), language),
        "duration": round(duration, 3),
        "text": " ".join(s.text for s in segments),
    }
    if "segment" in granularities:
        body["segments"] = [
            {
                "id": i,
                "seek": 0,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": s.text,
                # We have no token ids or log-probabilities; neutral values keep the shape.
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": 0.0,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
            for i, s in enumerate(segments)
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w, "start": round(start, 3), "end": round(end, 3)}
            for s in segments
            for w, start, end in s.words
        ]
    body["usage"] = transcription_usage(duration)
    return body


def transcript_delta_event(delta: str) -> dict[str, Any]:
    return {"type": "transcript.text.delta", "delta": delta}


def transcript_done_event(text: str, duration: float) -> dict[str, Any]:
    return {"type": "transcript.text.done", "text": text, "usage": transcription_usage(duration)}
