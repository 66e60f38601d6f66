"""What a transport handler needs from the running server, behind one typed app key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from ..config import Settings
from ..engines.catalog import EngineRegistry
from ..engines.executor import InferenceExecutor
from ..identity.request_principal import PRINCIPAL, optional_principal, principal_of
from ..observability.metrics import Metrics

if TYPE_CHECKING:
    import asyncpg
    import redis.asyncio

    from ..engines.agents.resolver import AgentCatalog, AgentResolver
    from ..engines.agents.retrieval import KnowledgeBase
    from ..store.conversations import ConversationRepository
    from ..store.history import HistoryRepository
    from ..store.keys import ApiKeyRepository
    from ..store.usage import UsageRepository

__all__ = ["PRINCIPAL", "RUNTIME", "Runtime", "optional_principal", "principal_of"]


@dataclass(slots=True)
class Runtime:
    settings: Settings
    registry: EngineRegistry
    tts_executors: dict[str, InferenceExecutor]  # by engine name
    stt_executor: InferenceExecutor
    media_executor: InferenceExecutor  # decoding uploads: CPU-bound, never on the loop
    metrics: Metrics
    pool: asyncpg.Pool
    redis: redis.asyncio.Redis
    keys: ApiKeyRepository
    usage: UsageRepository
    history: HistoryRepository  # ElevenLabs /v1/history: logged generations and their audio
    # Agents (rest/agents.py, convai sessions).
    agents: AgentCatalog
    conversations: ConversationRepository
    knowledge: KnowledgeBase  # embeddings + Qdrant: documents, search, long-term memory
    agent_resolver: AgentResolver
    secret_key: str  # signs conversation tickets


RUNTIME: web.AppKey[Runtime] = web.AppKey("voicestream_runtime", Runtime)
