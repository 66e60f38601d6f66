"""OpenAI Realtime server events, sans-I/O: what one connection tells its client.

``ServerEvents`` builds each event in the connection's dialect (GA or beta, see
``openai_realtime``) with a fresh ``event_id``; ``ResponseState`` is one streamed response, whose
ids every ``response.*`` event repeats. A response runs::

    response.created → response.output_item.added → conversation.item.added (beta: .created)
    → response.content_part.added → (response.output_audio.delta | …_transcript.delta)*
    → response.output_audio.done → response.output_audio_transcript.done
    → response.content_part.done → response.output_item.done → conversation.item.done (GA)
    → response.done {status: completed | cancelled | failed}

A text-only response has ``response.output_text.*`` (beta ``response.text.*``) instead.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..errors import AuthError, BadRequest, NotFound, ProtocolError, VoiceStreamError
from .openai_realtime import AudioName, Dialect, Modality, SessionConfig, TurnDetection, new_id

__all__ = ["ResponseState", "ServerEvents", "dump"]

_GA_FORMATS: Final[dict[str, dict[str, Any]]] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "pcmu": {"type": "audio/pcmu"},
    "pcma": {"type": "audio/pcma"},
}
_BETA_FORMATS: Final[dict[str, str]] = {"pcm16": "pcm16", "pcmu": "g711_ulaw", "pcma": "g711_alaw"}
# What OpenAI reports for VAD settings the client left out.
_VAD_DEFAULTS: Final[dict[str, Any]] = {
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
}


def dump(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class ResponseState:
    """One response being streamed: the ids its events name and what it has said so far."""

    id: str
    item_id: str
    conversation_id: str
    modality: Modality
    output_format: AudioName
    voice: str
    transcript: str = ""
    audio_started: bool = False
    text_done: bool = False


def _turn_detection(td: TurnDetection | None) -> dict[str, Any] | None:
    if td is None:
        return None
    body: dict[str, Any] = {
        "type": td.kind,
        "create_response": td.create_response,
        "interrupt_response": td.interrupt_response,
    }
    if td.kind == "semantic_vad":
        body["eagerness"] = td.eagerness or "auto"
        return body
    for name, default in _VAD_DEFAULTS.items():
        value = getattr(td, name)
        body[name] = default if value is None else value
    return body


def _input_audio(cfg: SessionConfig) -> dict[str, Any]:
    """GA ``session.audio.input``: the same in a conversation and a transcription session."""
    return {
        "format": dict(_GA_FORMATS[cfg.input_format]),
        "transcription": cfg.transcription,
        "noise_reduction": None,
        "turn_detection": _turn_detection(cfg.turn_detection),
    }


class ServerEvents:
    """Builds one connection's server events in its dialect, each with a unique ``event_id``."""

    def __init__(self, dialect: Dialect = "ga", ids: Callable[[str], str] = new_id) -> None:
        self.dialect: Dialect = dialect
        self.new_id = ids

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": self.new_id("event"), **fields}

    def _name(self, ga: str, beta: str) -> str:
        return beta if self.dialect == "beta" else ga

    # -- session ------------------------------------------------------------------------------

    def session_object(self, cfg: SessionConfig, session_id: str) -> dict[str, Any]:
        if cfg.kind == "transcription":
            return self._transcription_session(cfg, session_id)
        if self.dialect == "beta":
            return {
                "id": session_id,
                "object": "realtime.session",
                "model": cfg.model,
                "modalities": ["text", "audio"]
                if cfg.output_modalities == ("audio",)
                else ["text"],
                "instructions": cfg.instructions,
                "voice": cfg.voice,
                "input_audio_format": _BETA_FORMATS[cfg.input_format],
                "output_audio_format": _BETA_FORMATS[cfg.output_format],
                "input_audio_transcription": cfg.transcription,
                "turn_detection": _turn_detection(cfg.turn_detection),
                "tools": [],
                "tool_choice": "auto",
                "temperature": 0.8,
                "max_response_output_tokens": "inf",
            }
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": cfg.model,
            "output_modalities": list(cfg.output_modalities),
            "instructions": cfg.instructions,
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
            "prompt": None,
            "expires_at": 0,
            "include": None,
            "audio": {
                "input": _input_audio(cfg),
                "output": {
                    "format": dict(_GA_FORMATS[cfg.output_format]),
                    "voice": cfg.voice,
                    "speed": 1.0,
                },
            },
        }

    def _transcription_session(self, cfg: SessionConfig, session_id: str) -> dict[str, Any]:
        if self.dialect == "beta":
            return {
                "id": session_id,
                "object": "realtime.transcription_session",
                "modalities": ["text"],
                "input_audio_format": _BETA_FORMATS[cfg.input_format],
                "input_audio_transcription": cfg.transcription,
                "input_audio_noise_reduction": None,
                "turn_detection": _turn_detection(cfg.turn_detection),
                "include": None,
            }
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": session_id,
            "expires_at": 0,
            "include": None,
            "audio": {"input": _input_audio(cfg)},
        }

    def session_created(self, cfg: SessionConfig, session_id: str) -> dict[str, Any]:
        return self._event("session.created", session=self.session_object(cfg, session_id))

    def session_updated(
        self, cfg: SessionConfig, session_id: str, *, transcription_event: bool = False
    ) -> dict[str, Any]:
        """``session.updated``, or ``transcription_session.updated`` for the beta event that
        configures a transcription session."""
        kind = "transcription_session.updated" if transcription_event else "session.updated"
        return self._event(kind, session=self.session_object(cfg, session_id))

    def conversation_created(self, conversation_id: str) -> dict[str, Any]:
        conversation = {"id": conversation_id, "object": "realtime.conversation"}
        return self._event("conversation.created", conversation=conversation)

    # -- input audio --------------------------------------------------------------------------

    def speech_started(self, item_id: str, audio_start_ms: int) -> dict[str, Any]:
        return self._event(
            "input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id
        )

    def speech_stopped(self, item_id: str, audio_end_ms: int) -> dict[str, Any]:
        return self._event(
            "input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id
        )

    def committed(self, item_id: str, previous_item_id: str | None) -> dict[str, Any]:
        return self._event(
            "input_audio_buffer.committed", previous_item_id=previous_item_id, item_id=item_id
        )

    def cleared(self) -> dict[str, Any]:
        return self._event("input_audio_buffer.cleared")

    def transcription_delta(self, item_id: str, delta: str) -> dict[str, Any]:
        return self._event(
            "conversation.item.input_audio_transcription.delta",
            item_id=item_id,
            content_index=0,
            delta=delta,
        )

    def transcription_completed(
        self, item_id: str, transcript: str, seconds: float
    ) -> dict[str, Any]:
        return self._event(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
            usage={"type": "duration", "seconds": round(seconds, 3)},
        )

    # -- conversation items -------------------------------------------------------------------

    @staticmethod
    def _item(item_id: str, role: str, status: str, content: list[Any]) -> dict[str, Any]:
        return {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": role,
            "status": status,
            "content": content,
        }

    def user_audio_item(self, item_id: str, transcript: str | None) -> dict[str, Any]:
        content = [{"type": "input_audio", "transcript": transcript}]
        return self._item(item_id, "user", "completed", content)

    def text_item(self, item_id: str, role: str, text: str) -> dict[str, Any]:
        kind = self._name("output_text", "text") if role == "assistant" else "input_text"
        return self._item(item_id, role, "completed", [{"type": kind, "text": text}])

    def item_added(self, item: dict[str, Any], previous_item_id: str | None) -> dict[str, Any]:
        """``conversation.item.added`` (GA) or ``conversation.item.created`` (beta)."""
        kind = self._name("conversation.item.added", "conversation.item.created")
        return self._event(kind, previous_item_id=previous_item_id, item=item)

    def item_done(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        """``conversation.item.done``; the beta API has no such event."""
        if self.dialect == "beta":
            return []
        return [self._event("conversation.item.done", item=item)]

    def item_truncated(self, item_id: str, content_index: int, audio_end_ms: int) -> dict[str, Any]:
        return self._event(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=content_index,
            audio_end_ms=audio_end_ms,
        )

    # -- responses ----------------------------------------------------------------------------

    @staticmethod
    def _part(r: ResponseState) -> dict[str, Any]:
        if r.modality == "audio":
            return {"type": "audio", "transcript": r.transcript}
        return {"type": "text", "text": r.transcript}

    def _content(self, r: ResponseState) -> dict[str, Any]:
        if r.modality == "audio":
            return {"type": self._name("output_audio", "audio"), "transcript": r.transcript}
        return {"type": self._name("output_text", "text"), "text": r.transcript}

    def _response(
        self,
        r: ResponseState,
        status: str,
        output: list[dict[str, Any]],
        status_details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "object": "realtime.response",
            "id": r.id,
            "status": status,
            "status_details": status_details,
            "output": output,
            "conversation_id": r.conversation_id,
            "max_output_tokens": "inf",
            "usage": None,
            "metadata": None,
        }
        if self.dialect == "beta":
            body["modalities"] = ["text", "audio"] if r.modality == "audio" else ["text"]
            body["voice"] = r.voice
            body["output_audio_format"] = _BETA_FORMATS[r.output_format]
        else:
            body["output_modalities"] = [r.modality]
            body["audio"] = {
                "output": {"format": dict(_GA_FORMATS[r.output_format]), "voice": r.voice}
            }
        return body

    @staticmethod
    def _where(r: ResponseState) -> dict[str, Any]:
        return {"response_id": r.id, "item_id": r.item_id, "output_index": 0, "content_index": 0}

    def response_started(
        self, r: ResponseState, previous_item_id: str | None
    ) -> list[dict[str, Any]]:
        """``response.created`` up to the first content part, ready for deltas."""
        item = self._item(r.item_id, "assistant", "in_progress", [])
        return [
            self._event("response.created", response=self._response(r, "in_progress", [])),
            self._event("response.output_item.added", response_id=r.id, output_index=0, item=item),
            self.item_added(item, previous_item_id),
            self._event("response.content_part.added", **self._where(r), part=self._part(r)),
        ]

    def audio_delta(self, r: ResponseState, audio: bytes) -> dict[str, Any]:
        kind = self._name("response.output_audio.delta", "response.audio.delta")
        return self._event(kind, **self._where(r), delta=base64.b64encode(audio).decode("ascii"))

    def text_delta(self, r: ResponseState, delta: str) -> dict[str, Any]:
        """The agent's words: the audio's transcript, or the text of a text-only response."""
        if r.modality == "audio":
            kind = self._name(
                "response.output_audio_transcript.delta", "response.audio_transcript.delta"
            )
        else:
            kind = self._name("response.output_text.delta", "response.text.delta")
        return self._event(kind, **self._where(r), delta=delta)

    def response_finished(
        self,
        r: ResponseState,
        status: Literal["completed", "cancelled", "failed"],
        *,
        reason: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Every ``…done`` event of the response, ``response.done`` last."""
        where = self._where(r)
        out: list[dict[str, Any]] = []
        if r.modality == "audio":
            kind = self._name("response.output_audio.done", "response.audio.done")
            out.append(self._event(kind, **where))
            kind = self._name(
                "response.output_audio_transcript.done", "response.audio_transcript.done"
            )
            out.append(self._event(kind, **where, transcript=r.transcript))
        else:
            kind = self._name("response.output_text.done", "response.text.done")
            out.append(self._event(kind, **where, text=r.transcript))
        out.append(self._event("response.content_part.done", **where, part=self._part(r)))
        item_status = "completed" if status == "completed" else "incomplete"
        item = self._item(r.item_id, "assistant", item_status, [self._content(r)])
        out.append(
            self._event("response.output_item.done", response_id=r.id, output_index=0, item=item)
        )
        out.extend(self.item_done(item))
        details: dict[str, Any] | None = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": reason or "client_cancelled"}
        elif status == "failed":
            details = {"type": "failed", "error": error}
        out.append(
            self._event("response.done", response=self._response(r, status, [item], details))
        )
        return out

    # -- errors -------------------------------------------------------------------------------

    def error(self, err: VoiceStreamError, event_id: str | None = None) -> dict[str, Any]:
        """OpenAI's ``error`` event for ``err``; ``event_id`` names the client event at fault."""
        client_fault = isinstance(err, BadRequest | ProtocolError | NotFound | AuthError)
        body = {
            "type": "invalid_request_error" if client_fault else "server_error",
            "code": err.details.get("openai_code", err.code),
            "message": err.message,
            "param": err.details.get("param"),
            "event_id": event_id or err.details.get("event_id"),
        }
        return self._event("error", error=body)
