"""ElevenLabs' realtime speech-to-text socket, "Scribe realtime" (``/v1/speech-to-text/realtime``).

Pure: the query checked into a ``RealtimeConfig``, client messages read in order by a
``ChunkReader``, server messages built as ElevenLabs' SDK parses them (keyed by
``message_type``). The transport (``transports/elevenlabs_stt_realtime.py``) moves bytes.

Client: ``{"message_type": "input_audio_chunk", "audio_base_64", "commit", "sample_rate",
"previous_text"?}``; ``previous_text`` only on the first chunk, ``commit: true`` (usually with
empty audio) ends a segment. Server: ``session_started {session_id, config}`` first, then
``partial_transcript {text}``, ``committed_transcript {text}`` and, with ``include_timestamps``,
``committed_transcript_with_timestamps {text, language_code, words}``; errors are
``{"message_type": <kind>, "error": "<message>"}`` with kinds such as ``auth_error``,
``input_error``, ``chunk_size_exceeded``, ``session_time_limit_exceeded``,
``transcriber_error``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..errors import (
    AuthError,
    BadRequest,
    EngineError,
    InvalidAudio,
    Overloaded,
    PayloadTooLarge,
    ProtocolError,
    ValidationFailed,
    VoiceStreamError,
)
from .elevenlabs import language_code_3
from .json_messages import load_object

__all__ = [
    "AUDIO_FORMATS",
    "REALTIME_MODELS",
    "AudioChunk",
    "ChunkReader",
    "ChunkSizeExceeded",
    "RealtimeConfig",
    "SessionTimeLimitExceeded",
    "VadSettings",
    "committed_transcript",
    "committed_transcript_with_timestamps",
    "error_message",
    "error_type",
    "language_matches",
    "parse_realtime_query",
    "partial_transcript",
    "session_started",
    "vad_settings",
]

REALTIME_MODELS: Final = ("scribe_v2_realtime",)
AUDIO_FORMATS: Final = (
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_44100",
    "pcm_48000",
    "ulaw_8000",
)
COMMIT_STRATEGIES: Final = ("manual", "vad")
# Options whose results are separate events we do not produce: refused rather than ignored, so
# a client waiting for a redacted transcript learns why none comes.
_UNSUPPORTED: Final = ("entity_detection", "entity_redaction", "transcript_edit")
_MAX_KEYTERMS: Final = 50
_MAX_KEYTERM_CHARS: Final = 20


class ChunkSizeExceeded(PayloadTooLarge):
    code = "chunk_size_exceeded"


class SessionTimeLimitExceeded(VoiceStreamError):
    """The session passed the server's limit on audio per stream."""

    code = "session_time_limit_exceeded"
    http_status = 400
    ws_close_code = 1008


@dataclass(frozen=True, slots=True)
class RealtimeConfig:
    model_id: str
    audio_format: str
    sample_rate: int
    commit_strategy: str  # "manual" | "vad"
    vad_silence_threshold_secs: float | None
    vad_threshold: float | None
    min_speech_duration_ms: int | None
    min_silence_duration_ms: int | None
    language_code: str | None
    include_timestamps: bool
    include_language_detection: bool
    keyterms: tuple[str, ...]
    no_verbatim: bool
    enable_logging: bool


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}", details={"fields": [{"field": field, "message": message}]}
    )


def _bool(values: dict[str, str], name: str, default: bool) -> bool:
    raw = values.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise _invalid(name, f"must be true or false; got {raw!r}")


def _number(
    values: dict[str, str], name: str, low: float, high: float, *, integer: bool
) -> float | None:
    raw = values.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise _invalid(name, f"must be a number; got {raw!r}") from None
    if not low <= value <= high:
        raise _invalid(name, f"must be between {low:g} and {high:g}; got {raw}")
    return value


def parse_realtime_query(params: Iterable[tuple[str, str]]) -> RealtimeConfig:
    """The session's settings from the query (``keyterms`` may repeat).

    Raises:
        ValidationFailed: a missing or unknown model, an unknown format or strategy, a value out
            of range, or an option this server does not support (422, before upgrading).
    """
    values: dict[str, str] = {}
    keyterms: list[str] = []
    for name, value in params:
        if name == "keyterms":
            keyterms.append(value)
        else:
            values[name] = value
    model = values.get("model_id")
    if not model:
        raise _invalid("model_id", "required (e.g. scribe_v2_realtime)")
    if model not in REALTIME_MODELS:
        raise _invalid("model_id", f"unknown model {model!r}; use {', '.join(REALTIME_MODELS)}")
    audio_format = values.get("audio_format") or "pcm_16000"
    if audio_format not in AUDIO_FORMATS:
        raise _invalid("audio_format", f"must be one of {', '.join(AUDIO_FORMATS)}")
    strategy = values.get("commit_strategy") or "manual"
    if strategy not in COMMIT_STRATEGIES:
        raise _invalid("commit_strategy", "must be manual or vad")
    for name in _UNSUPPORTED:
        if values.get(name):
            raise _invalid(name, "is not supported by this server")
    if len(keyterms) > _MAX_KEYTERMS or any(
        not t.strip() or len(t) > _MAX_KEYTERM_CHARS for t in keyterms
    ):
        raise _invalid(
            "keyterms",
            f"at most {_MAX_KEYTERMS} terms of 1 to {_MAX_KEYTERM_CHARS} characters each",
        )
    speech_ms = _number(values, "min_speech_duration_ms", 50, 2000, integer=True)
    silence_ms = _number(values, "min_silence_duration_ms", 50, 2000, integer=True)
    return RealtimeConfig(
        model_id=model,
        audio_format=audio_format,
        sample_rate=int(audio_format.split("_")[1]),
        commit_strategy=strategy,
        vad_silence_threshold_secs=_number(
            values, "vad_silence_threshold_secs", 0.3, 3.0, integer=False
        ),
        vad_threshold=_number(values, "vad_threshold", 0.1, 0.9, integer=False),
        min_speech_duration_ms=None if speech_ms is None else int(speech_ms),
        min_silence_duration_ms=None if silence_ms is None else int(silence_ms),
        language_code=values.get("language_code") or None,
        include_timestamps=_bool(values, "include_timestamps", False),
        include_language_detection=_bool(values, "include_language_detection", False),
        keyterms=tuple(keyterms),
        no_verbatim=_bool(values, "no_verbatim", False),
        enable_logging=_bool(values, "enable_logging", True),
    )


def language_matches(code: str, bcp47: str) -> bool:
    """Whether an ISO-639-1/3 ``code`` names the language of our ``bcp47`` tag."""
    return language_code_3(code) == language_code_3(bcp47)


@dataclass(frozen=True, slots=True)
class VadSettings:
    threshold: float
    min_silence_ms: int
    min_speech_ms: int


def vad_settings(
    config: RealtimeConfig, *, threshold: float, min_silence_ms: int, min_speech_ms: int
) -> VadSettings:
    """The VAD the session runs: the client's values where given, else the server's.

    Our VAD has one silence length, which both ends an utterance and (with the ``vad``
    strategy) commits it: ``vad_silence_threshold_secs`` if given, else
    ``min_silence_duration_ms``.
    """
    if config.vad_silence_threshold_secs is not None:
        min_silence_ms = round(config.vad_silence_threshold_secs * 1000)
    elif config.min_silence_duration_ms is not None:
        min_silence_ms = config.min_silence_duration_ms
    return VadSettings(
        threshold=config.vad_threshold if config.vad_threshold is not None else threshold,
        min_silence_ms=min_silence_ms,
        min_speech_ms=(
            config.min_speech_duration_ms
            if config.min_speech_duration_ms is not None
            else min_speech_ms
        ),
    )


# --- client messages ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioChunk:
    audio: bytes  # in the session's audio_format
    commit: bool
    previous_text: str | None


class ChunkReader:
    """The client's messages of one session, in order."""

    def __init__(self, *, sample_rate: int, max_previous_text_chars: int) -> None:
        self._sample_rate = sample_rate
        self._max_previous = max_previous_text_chars
        self._first = True

    def parse(self, raw: str) -> AudioChunk:
        """One ``input_audio_chunk``.

        Raises:
            InvalidJSON: not JSON. ProtocolError: not an object, or another message_type.
            ValidationFailed: a field of the wrong type, a sample_rate that is not the
                session's, previous_text after the first chunk. InvalidAudio: bad base64.
        """
        msg = load_object(raw)
        kind = msg.get("message_type")
        if kind != "input_audio_chunk":
            raise ProtocolError(
                f"unknown message_type {kind!r}; the client sends input_audio_chunk messages"
            )
        data = msg.get("audio_base_64")
        if not isinstance(data, str):
            raise ValidationFailed('"audio_base_64" must be a base64 string ("" for none)')
        commit = msg.get("commit", False)
        if not isinstance(commit, bool):
            raise ValidationFailed(f'"commit" must be true or false; got {commit!r}')
        rate = msg.get("sample_rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int)):
            raise ValidationFailed(f'"sample_rate" must be an integer; got {rate!r}')
        if rate is not None and rate != self._sample_rate:
            raise ValidationFailed(
                f"sample_rate {rate} does not match the session's audio_format "
                f"({self._sample_rate} Hz); reconnect with another audio_format"
            )
        previous = msg.get("previous_text")
        if previous is not None:
            if not isinstance(previous, str):
                raise ValidationFailed('"previous_text" must be a string')
            if not self._first:
                raise ValidationFailed("previous_text is only allowed on the first audio chunk")
            if len(previous) > self._max_previous:
                raise ValidationFailed(
                    f"previous_text has {len(previous)} characters; limit {self._max_previous}"
                )
        try:
            audio = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidAudio("audio_base_64 is not valid base64") from None
        self._first = False
        return AudioChunk(audio, commit, previous)


# --- server messages ------------------------------------------------------------------------


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def session_started(
    session_id: str, config: RealtimeConfig, *, vad: VadSettings, language_code: str
) -> str:
    """The first server message: the settings the session actually runs with."""
    return _dump(
        {
            "message_type": "session_started",
            "session_id": session_id,
            "config": {
                "sample_rate": config.sample_rate,
                "audio_format": config.audio_format,
                "language_code": language_code,
                "commit_strategy": config.commit_strategy,
                "vad_silence_threshold_secs": vad.min_silence_ms / 1000,
                "vad_threshold": vad.threshold,
                "min_speech_duration_ms": vad.min_speech_ms,
                "min_silence_duration_ms": vad.min_silence_ms,
                "model_id": config.model_id,
                "enable_logging": config.enable_logging,
                "include_timestamps": config.include_timestamps,
                "include_language_detection": config.include_language_detection,
                "keyterms": list(config.keyterms),
                "no_verbatim": config.no_verbatim,
            },
        }
    )


def partial_transcript(text: str) -> str:
    return _dump({"message_type": "partial_transcript", "text": text})


def committed_transcript(text: str) -> str:
    return _dump({"message_type": "committed_transcript", "text": text})


def committed_transcript_with_timestamps(
    text: str, words: Sequence[tuple[str, float, float]], *, language_code: str
) -> str:
    """Words with ``spacing`` entries between them; times in seconds from the session's start."""
    out: list[dict[str, Any]] = []
    for i, (word, start, end) in enumerate(words):
        if i:
            gap_start = words[i - 1][2]
            out.append(_word(" ", gap_start, max(gap_start, start), "spacing"))
        out.append(_word(word, start, end, "word"))
    return _dump(
        {
            "message_type": "committed_transcript_with_timestamps",
            "text": text,
            "language_code": language_code,
            "words": out,
        }
    )


def _word(text: str, start: float, end: float, kind: str) -> dict[str, Any]:
    return {
        "text": text,
        "start": round(start, 3),
        "end": round(end, 3),
        "type": kind,
        "logprob": 0.0,
    }


_OWN_TYPES: Final = frozenset({ChunkSizeExceeded.code, SessionTimeLimitExceeded.code})


def error_type(err: VoiceStreamError) -> str:
    """The ``message_type`` Scribe uses for this kind of error."""
    if isinstance(err, AuthError):
        return "auth_error"
    if err.code in _OWN_TYPES:
        return err.code
    if isinstance(err, BadRequest | ProtocolError):
        return "input_error"
    if isinstance(err, Overloaded):
        return "resource_exhausted"
    if isinstance(err, EngineError):
        return "transcriber_error"
    return "error"


def error_message(err: VoiceStreamError) -> str:
    return _dump({"message_type": error_type(err), "error": err.message})
