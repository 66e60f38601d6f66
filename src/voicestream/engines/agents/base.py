"""The agent contract: a user turn in, the reply streamed out as text deltas.

The session speaks the reply as soon as its first clause exists, so an agent should yield text
as early as it has it. Barge-in cancels the iteration: an agent must not hold resources past
cancellation (use ``async with``/``try``/``finally``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["AgentConfig", "AgentEngine", "AgentRequest", "ChatMessage"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """An agent as stored for a workspace (``/v1/agents``)."""

    id: str
    workspace_id: str
    name: str
    instructions: str = ""
    voice: str = "slt"
    language: str = "en"
    first_message: str | None = None
    # Per-agent chat-completions settings: {"base_url", "model", "api_key"?, "temperature"?,
    # "tools"?}; None means the server-wide LLM if one is configured, else the knowledge base.
    llm: dict[str, Any] | None = None
    public: bool = False  # reachable by the widget without a key or ticket


@dataclass(frozen=True, slots=True)
class AgentRequest:
    agent: AgentConfig
    user_text: str
    history: tuple[ChatMessage, ...] = field(default_factory=tuple)  # oldest first
    end_user_id: str | None = None  # for long-term memory; None: anonymous
    dtmf: str | None = None  # digits pressed on a phone, when the turn came from a keypad


class AgentEngine(ABC):
    name: str

    @abstractmethod
    def respond(self, request: AgentRequest) -> AsyncIterator[str]:
        """Stream the reply as text deltas (an async generator)."""
