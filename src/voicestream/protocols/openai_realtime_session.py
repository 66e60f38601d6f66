"""OpenAI Realtime sessions, sans-I/O: what ``session.update`` says and the session it sets.

Two dialects share one flow and differ in names: the GA client (``client.realtime``) and the
beta client (``client.beta.realtime``, which sends ``OpenAI-Beta: realtime=v1``)::

    GA                                         beta
    session.audio.input.format {type, rate}    session.input_audio_format pcm16|g711_ulaw|…
    session.audio.output.{format, voice}       session.output_audio_format, session.voice
    session.audio.input.turn_detection         session.turn_detection
    session.output_modalities                  session.modalities

A session is a conversation (``"type": "realtime"``) or transcription only (``"type":
"transcription"``, what ``?intent=transcription`` opens: the input is transcribed and nothing
answers). The beta dialect configures the latter with ``transcription_session.update``, whose
session is flat (``input_audio_format``, ``input_audio_transcription``, ``turn_detection``).

Here: ``session_patch`` and ``transcription_session_patch`` read one update's ``session``
object, ``SessionConfig`` is the session those updates configure, and the field-checking kit
(``fields``, ``bad_request``) that the client events in ``openai_realtime`` share. A bad field
raises a ``VoiceStreamError`` whose ``details`` carry OpenAI's ``openai_code`` and ``param``.
Audio formats are named ``pcm16`` (24 kHz s16le), ``pcmu`` and ``pcma`` (G.711, 8 kHz).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from ..errors import BadRequest, InvalidAudio, VoiceStreamError
from .json_fields import Fault, FieldReader

__all__ = [
    "MAX_INSTRUCTIONS",
    "RAW_FORMATS",
    "UNSET",
    "AudioName",
    "Dialect",
    "Modality",
    "SessionConfig",
    "SessionKind",
    "SessionPatch",
    "TurnDetection",
    "Unset",
    "bad_request",
    "fields",
    "missing",
    "modalities",
    "session_patch",
    "transcription_session_patch",
    "unsupported",
    "wrong_type",
]

Dialect = Literal["ga", "beta"]
AudioName = Literal["pcm16", "pcmu", "pcma"]
Modality = Literal["audio", "text"]
SessionKind = Literal["realtime", "transcription"]

# Our raw formats (media.formats) for each Realtime audio format.
RAW_FORMATS: Final[dict[str, str]] = {
    "pcm16": "pcm_24000",
    "pcmu": "ulaw_8000",
    "pcma": "alaw_8000",
}
_GA_FORMATS: Final[dict[str, AudioName]] = {
    "audio/pcm": "pcm16",
    "audio/pcmu": "pcmu",
    "audio/pcma": "pcma",
}
_BETA_FORMATS: Final[dict[str, AudioName]] = {
    "pcm16": "pcm16",
    "g711_ulaw": "pcmu",
    "g711_alaw": "pcma",
}
MAX_INSTRUCTIONS: Final = 32_000
# Session fields accepted and echoed or ignored (they steer nothing this server runs); any other
# field is an unknown parameter, as OpenAI treats it.
_GA_FIELDS: Final = frozenset({"type", "instructions", "output_modalities", "audio", "tools"})
_GA_IGNORED: Final = frozenset(
    {"model", "tool_choice", "max_output_tokens", "tracing", "truncation", "prompt", "include"}
    | {"reasoning", "parallel_tool_calls"}
)
_BETA_FIELDS: Final = frozenset(
    {"instructions", "tools", "input_audio_format", "output_audio_format", "modalities", "voice"}
    | {"turn_detection", "input_audio_transcription"}
)
_BETA_IGNORED: Final = frozenset(
    {"model", "tool_choice", "temperature", "max_response_output_tokens", "speed", "tracing"}
    | {"input_audio_noise_reduction", "client_secret"}
)
_GA_MARKERS: Final = frozenset({"type", "audio", "output_modalities"})
_BETA_MARKERS: Final = _BETA_FIELDS - {"instructions", "tools"}
# A transcription session has input audio only: no voice, no instructions, no responses.
_GA_TRANSCRIPTION_FIELDS: Final = frozenset({"type", "audio", "include", "model"})
_BETA_TRANSCRIPTION_FIELDS: Final = frozenset(
    {"input_audio_format", "input_audio_transcription", "turn_detection", "include"}
    | {"input_audio_noise_reduction", "modalities", "client_secret"}
)
_TURN_FIELDS: Final = frozenset(
    {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "create_response"}
    | {"interrupt_response", "eagerness", "idle_timeout_ms"}
)


class Unset(enum.Enum):
    """A session field the update did not mention (``None`` is a value: turn detection off)."""

    UNSET = 0


UNSET: Final = Unset.UNSET


def bad_request(
    message: str, *, param: str | None = None, code: str = "invalid_value"
) -> BadRequest:
    """A client mistake as OpenAI reports it: ``code`` and ``param`` go into the error event."""
    details: dict[str, Any] = {"openai_code": code}
    if param is not None:
        details["param"] = param
    return BadRequest(message, details=details)


def missing(where: str) -> BadRequest:
    """A required field that is absent."""
    return bad_request(
        f"missing required parameter '{where}'", param=where, code="missing_required_parameter"
    )


def wrong_type(where: str, what: str) -> BadRequest:
    """A field of the wrong JSON type; ``what`` says the right one."""
    return bad_request(f"'{where}' must be {what}", param=where, code="invalid_type")


def unsupported(message: str, where: str) -> BadRequest:
    """A field OpenAI accepts that this server does not implement."""
    return bad_request(message, param=where, code="unsupported_parameter")


# ---- field readers -------------------------------------------------------------------------


def _complaint(fault: Fault) -> VoiceStreamError:
    where = fault.path
    match fault.problem, fault.expected:
        case "missing", _:
            return missing(where)
        case "unknown", _:
            return bad_request(
                f"unknown parameter '{where}'", param=where, code="unknown_parameter"
            )
        case "long", _:
            return bad_request(f"'{where}' is longer than {fault.high} characters", param=where)
        case _, "a number":  # a wrong type reads as a value out of range, as OpenAI words it
            return bad_request(
                f"'{where}' must be a number from {fault.low:g} to {fault.high:g}", param=where
            )
        case "range", _:
            return bad_request(f"'{where}' must be from {fault.low} to {fault.high}", param=where)
        case (("invalid" | "empty"), "a base64 string"):
            problem = "not valid base64" if fault.problem == "invalid" else "empty"
            details = {"param": where, "openai_code": "invalid_audio"}
            return InvalidAudio(f"'{where}' is {problem}", details=details)
        case _:
            return wrong_type(where, fault.expected)


fields = FieldReader(_complaint)


def modalities(value: Any, where: str) -> tuple[Modality, ...]:
    """``["audio"]`` or ``["text"]``; beta's ``["text", "audio"]`` means audio with transcript."""
    if not isinstance(value, list) or not value or not all(v in ("audio", "text") for v in value):
        raise bad_request(f'\'{where}\' must be ["audio"] or ["text"]', param=where)
    return ("audio",) if "audio" in value else ("text",)


# ---- session.update ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnDetection:
    """Server-side turn detection. ``semantic_vad`` runs as VAD tuned by ``eagerness``."""

    kind: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool = True
    interrupt_response: bool = True
    eagerness: str | None = None
    idle_timeout_ms: int | None = None


@dataclass(frozen=True, slots=True)
class SessionPatch:
    """What one ``session.update`` sets; ``None``/``UNSET`` fields stay as they were."""

    dialect: Dialect | None = None  # None: the update's shape does not say
    kind: SessionKind | None = None  # None: the update does not say
    instructions: str | None = None
    input_format: AudioName | None = None
    output_format: AudioName | None = None
    voice: str | dict[str, Any] | None = None  # as sent; the transport resolves it
    turn_detection: TurnDetection | Unset | None = UNSET
    output_modalities: tuple[Modality, ...] | None = None
    transcription: dict[str, Any] | Unset | None = UNSET
    model: str | None = None


def session_patch(s: dict[str, Any]) -> SessionPatch:
    ga, beta = bool(_GA_MARKERS & s.keys()), bool(_BETA_MARKERS & s.keys())
    if ga and beta:
        both = ", ".join(sorted((_GA_MARKERS | _BETA_MARKERS) & s.keys()))
        raise bad_request(
            f"session mixes GA and beta fields ({both}); GA puts formats, voice and "
            "turn_detection under session.audio",
            param="session",
        )
    fields.only(
        s, (_BETA_FIELDS | _BETA_IGNORED) if beta else (_GA_FIELDS | _GA_IGNORED), where="session"
    )
    tools = s.get("tools")
    if tools is not None and (not isinstance(tools, list) or tools):
        raise unsupported(
            "tools (function calling) are not supported by this server; send an empty list",
            "session.tools",
        )
    patch = SessionPatch(
        instructions=fields.opt_text(s, "instructions", where="session", limit=MAX_INSTRUCTIONS),
        model=fields.opt_text(s, "model", where="session", limit=200),
    )
    return _beta_patch(s, patch) if beta else _ga_patch(s, patch, "ga" if ga else None)


def _ga_patch(s: dict[str, Any], patch: SessionPatch, dialect: Dialect | None) -> SessionPatch:
    kind = s.get("type")
    if kind not in (None, "realtime", "transcription"):
        raise bad_request(
            "'session.type' must be 'realtime' or 'transcription'", param="session.type"
        )
    changes: dict[str, Any] = {"dialect": dialect, "kind": kind}
    if kind == "transcription":
        fields.only(s, _GA_TRANSCRIPTION_FIELDS, where="session")
        fields.only(
            fields.opt_obj(s, "audio", where="session") or {}, {"input"}, where="session.audio"
        )
    if s.get("output_modalities") is not None:
        changes["output_modalities"] = modalities(
            s["output_modalities"], "session.output_modalities"
        )
    audio = fields.opt_obj(s, "audio", where="session")
    if audio is not None:
        fields.only(audio, {"input", "output"}, where="session.audio")
        inp = fields.opt_obj(audio, "input", where="session.audio") or {}
        out = fields.opt_obj(audio, "output", where="session.audio") or {}
        inputfields = frozenset({"format", "transcription", "noise_reduction", "turn_detection"})
        fields.only(inp, inputfields, where="session.audio.input")
        fields.only(out, {"format", "voice", "speed"}, where="session.audio.output")
        changes["input_format"] = _ga_format(inp, "session.audio.input")
        changes["output_format"] = _ga_format(out, "session.audio.output")
        changes["voice"] = _voice(out, "session.audio.output.voice")
        if "turn_detection" in inp:
            where = "session.audio.input.turn_detection"
            changes["turn_detection"] = _turn_detection(inp["turn_detection"], where)
        if "transcription" in inp:
            where = "session.audio.input"
            changes["transcription"] = fields.opt_obj(inp, "transcription", where=where)
        fields.opt_number(out, "speed", 0.25, 1.5, where="session.audio.output")
    return replace(patch, **changes)


def _beta_patch(s: dict[str, Any], patch: SessionPatch) -> SessionPatch:
    changes: dict[str, Any] = {
        "dialect": "beta",
        "input_format": _beta_format(s, "input_audio_format"),
        "output_format": _beta_format(s, "output_audio_format"),
        "voice": _voice(s, "session.voice"),
    }
    if s.get("modalities") is not None:
        changes["output_modalities"] = modalities(s["modalities"], "session.modalities")
    if "turn_detection" in s:
        changes["turn_detection"] = _turn_detection(s["turn_detection"], "session.turn_detection")
    if "input_audio_transcription" in s:
        transcription = fields.opt_obj(s, "input_audio_transcription", where="session")
        changes["transcription"] = transcription
    return replace(patch, **changes)


def transcription_session_patch(s: dict[str, Any]) -> SessionPatch:
    fields.only(s, _BETA_TRANSCRIPTION_FIELDS, where="session")
    changes: dict[str, Any] = {
        "dialect": "beta",
        "kind": "transcription",
        "input_format": _beta_format(s, "input_audio_format"),
    }
    if "turn_detection" in s:
        changes["turn_detection"] = _turn_detection(s["turn_detection"], "session.turn_detection")
    if "input_audio_transcription" in s:
        transcription = fields.opt_obj(s, "input_audio_transcription", where="session")
        changes["transcription"] = transcription
    return SessionPatch(**changes)


def _ga_format(io: dict[str, Any], io_where: str) -> AudioName | None:
    fmt = fields.opt_obj(io, "format", where=io_where)
    if fmt is None:
        return None
    where = f"{io_where}.format"
    kind = fmt.get("type")
    name = _GA_FORMATS.get(kind) if isinstance(kind, str) else None
    if name is None:
        choices = ", ".join(_GA_FORMATS)
        raise bad_request(f"'{where}.type' must be one of {choices}", param=f"{where}.type")
    fields.only(fmt, {"type", "rate"}, where=where)
    if name == "pcm16" and fmt.get("rate", 24000) != 24000:
        raise bad_request(f"'{where}.rate' must be 24000 for audio/pcm", param=f"{where}.rate")
    return name


def _beta_format(s: dict[str, Any], key: str) -> AudioName | None:
    value = s.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value not in _BETA_FORMATS:
        choices = ", ".join(_BETA_FORMATS)
        raise bad_request(f"'session.{key}' must be one of {choices}", param=f"session.{key}")
    return _BETA_FORMATS[value]


def _voice(obj: dict[str, Any], where: str) -> str | dict[str, Any] | None:
    value = obj.get("voice")
    if value is None:
        return None
    if isinstance(value, str) and 0 < len(value) <= 200:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        return {"id": value["id"]}
    raise wrong_type(where, "a voice name or an object with an 'id'")


def _turn_detection(value: Any, where: str) -> TurnDetection | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise wrong_type(where, "an object or null")
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise bad_request(
            f"'{where}.type' must be 'server_vad' or 'semantic_vad'", param=f"{where}.type"
        )
    fields.only(value, _TURN_FIELDS, where=where)
    eagerness = value.get("eagerness")
    if eagerness is not None and eagerness not in ("low", "medium", "high", "auto"):
        raise bad_request(
            f"'{where}.eagerness' must be low, medium, high or auto", param=f"{where}.eagerness"
        )
    return TurnDetection(
        kind=kind,
        threshold=fields.opt_number(value, "threshold", 0, 1, where=where),
        prefix_padding_ms=fields.opt_integer(value, "prefix_padding_ms", 0, 10_000, where=where),
        silence_duration_ms=fields.opt_integer(
            value, "silence_duration_ms", 0, 10_000, where=where
        ),
        create_response=fields.flag(value, "create_response", where=where, default=True),
        interrupt_response=fields.flag(value, "interrupt_response", where=where, default=True),
        eagerness=eagerness,
        idle_timeout_ms=fields.opt_integer(value, "idle_timeout_ms", 0, 3_600_000, where=where),
    )


# ---- session state -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """A connection's session as the client configured it (defaults as OpenAI's)."""

    dialect: Dialect = "ga"
    kind: SessionKind = "realtime"
    model: str = "gpt-realtime"
    instructions: str = ""
    input_format: AudioName = "pcm16"
    output_format: AudioName = "pcm16"
    voice: str = "alloy"  # as the client named it: an OpenAI name, or one of our voice ids
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    output_modalities: tuple[Modality, ...] = ("audio",)
    transcription: dict[str, Any] | None = None

    def updated(self, patch: SessionPatch, voice: str | None = None) -> SessionConfig:
        """This session with ``patch`` applied; ``voice`` is the patch's voice as a name."""
        changes: dict[str, Any] = {}
        for name in ("dialect", "kind", "model", "instructions", "input_format", "output_format"):
            if (value := getattr(patch, name)) is not None:
                changes[name] = value
        if voice is not None:
            changes["voice"] = voice
        if patch.output_modalities is not None:
            changes["output_modalities"] = patch.output_modalities
        if patch.turn_detection is not UNSET:
            changes["turn_detection"] = patch.turn_detection
        if patch.transcription is not UNSET:
            changes["transcription"] = patch.transcription
        return replace(self, **changes)
