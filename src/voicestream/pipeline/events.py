"""What a conversation tells its client, independent of the wire (JSON, data channel, …)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "agent_response",
    "agent_response_correction",
    "error",
    "interruption",
    "session_info",
    "turn",
    "user_transcript",
]

Event = dict[str, Any]


def session_info(
    *, session_id: str, conversation_id: str, agent_id: str, resumed: bool, sample_rate: int
) -> Event:
    return {
        "type": "session",
        "session_id": session_id,
        "conversation_id": conversation_id,
        "agent_id": agent_id,
        "resumed": resumed,
        "audio": {"format": f"pcm_{sample_rate}", "sample_rate": sample_rate},
    }


def user_transcript(text: str, *, final: bool) -> Event:
    return {"type": "user_transcript", "text": text, "final": final}


def agent_response(text: str) -> Event:
    return {"type": "agent_response", "text": text}


def agent_response_correction(original: str, corrected: str) -> Event:
    """An answer cut short: ``corrected`` is what the user heard of ``original`` (empty:
    none of it); the history and the stored transcript keep the corrected text."""
    return {"type": "agent_response_correction", "original": original, "corrected": corrected}


def interruption(*, dropped_ms: int) -> Event:
    return {"type": "interruption", "dropped_ms": dropped_ms}


def turn(speaker: str, state: str) -> Event:
    """``speaker`` is "user" or "agent"; ``state`` is "start" or "end"."""
    return {"type": "turn", "speaker": speaker, "state": state}


def error(code: str, message: str) -> Event:
    return {"type": "error", "code": code, "message": message}
