"""Which engine answers for an agent, and agents as the sessions see them (``AgentConfig``).

``AgentResolver.engine_for``: an agent with its own ``llm`` settings, or any agent on a server
with ``VOICESTREAM_LLM_BASE_URL`` and ``VOICESTREAM_LLM_MODEL`` set, talks to a chat-completions
endpoint; every other agent is the embedded knowledge-base agent.

``AgentCatalog`` is the store's agent repository plus the two lookups sessions make, returning
the engine contract's ``AgentConfig`` (the store layer sits below the engines and does not
know that type).
"""

from __future__ import annotations

from voicestream.config import Settings
from voicestream.engines.agents.base import AgentConfig, AgentEngine
from voicestream.engines.agents.knowledge import KnowledgeAgent
from voicestream.engines.agents.openai_chat import LLMSettings, OpenAIChatAgent
from voicestream.engines.agents.retrieval import KnowledgeBase
from voicestream.store.agents import Agent, AgentRepository, Id

__all__ = ["AgentCatalog", "AgentResolver", "agent_config", "server_llm_settings"]


def agent_config(agent: Agent) -> AgentConfig:
    return AgentConfig(
        id=str(agent.id),
        workspace_id=str(agent.workspace_id),
        name=agent.name,
        instructions=agent.instructions,
        voice=agent.voice,
        language=agent.language,
        first_message=agent.first_message,
        llm=dict(agent.llm) if agent.llm is not None else None,
        public=agent.public,
    )


class AgentCatalog(AgentRepository):
    """``AgentRepository`` with lookups that return ``AgentConfig``."""

    async def get_config(self, workspace_id: Id, agent_id: Id) -> AgentConfig:
        """An agent of a workspace. Raises NotFound (unknown, malformed or another tenant's)."""
        return agent_config(await self.get(workspace_id, agent_id))

    async def get_public_config(self, agent_id: Id) -> AgentConfig:
        """A public agent by id alone (the widget). Raises NotFound unless it is public."""
        return agent_config(await self.get_public(agent_id))


def server_llm_settings(settings: Settings) -> LLMSettings | None:
    """The server-wide endpoint, when both its URL and model are configured."""
    if not settings.llm_base_url or not settings.llm_model:
        return None
    return LLMSettings(
        base_url=settings.llm_base_url, model=settings.llm_model, api_key=settings.llm_api_key
    )


class AgentResolver:
    """One engine of each kind per server; ``engine_for`` picks per agent."""

    def __init__(self, knowledge: KnowledgeAgent, llm: OpenAIChatAgent) -> None:
        self.knowledge = knowledge
        self.llm = llm

    @classmethod
    def build(cls, settings: Settings, kb: KnowledgeBase) -> AgentResolver:
        return cls(
            KnowledgeAgent(kb), OpenAIChatAgent(kb, server_llm=server_llm_settings(settings))
        )

    def engine_for(self, config: AgentConfig) -> AgentEngine:
        if config.llm or self.llm.server_llm is not None:
            return self.llm
        return self.knowledge

    async def aclose(self) -> None:
        await self.llm.aclose()
