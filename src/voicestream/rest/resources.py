"""The server's shared resources: one typed app key each.

Here rather than in ``server/`` so that ``rest/`` and ``transports/`` above it can read them
without importing upwards; ``server/app.py`` sets each one when the app starts, in its
runtime's cleanup context. REST handlers read them through ``request.config_dict``, which also
finds them from inside a sub-app; transports and middlewares, mounted on the root app, through
``request.app``.
"""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from ..config import Settings
from ..engines.agents.resolver import AgentCatalog, AgentResolver
from ..engines.agents.retrieval import KnowledgeBase
from ..engines.catalog import EngineRegistry
from ..engines.executor import InferenceExecutor
from ..observability.metrics import Metrics
from ..store import db
from ..store.conversations import ConversationRepository
from ..store.history import HistoryRepository
from ..store.keys import ApiKeyRepository
from ..store.usage import UsageRepository

__all__ = [
    "AGENTS",
    "AGENT_RESOLVER",
    "API_KEYS",
    "CONVERSATIONS",
    "HISTORY",
    "KNOWLEDGE",
    "MEDIA_EXECUTOR",
    "METRICS",
    "POOL",
    "REDIS",
    "REGISTRY",
    "SECRET_KEY",
    "SETTINGS",
    "STT_EXECUTOR",
    "TTS_EXECUTORS",
    "USAGE",
]

SETTINGS: web.AppKey[Settings] = web.AppKey("voicestream_settings", Settings)
REGISTRY: web.AppKey[EngineRegistry] = web.AppKey("voicestream_engine_registry", EngineRegistry)
# One executor per TTS engine, by engine name: a slow voice never queues behind another.
TTS_EXECUTORS: web.AppKey[dict[str, InferenceExecutor]] = web.AppKey("voicestream_tts_executors")
STT_EXECUTOR: web.AppKey[InferenceExecutor] = web.AppKey(
    "voicestream_stt_executor", InferenceExecutor
)
# Decoding uploads, encoding compressed output, chunking documents: CPU-bound, never on the loop.
MEDIA_EXECUTOR: web.AppKey[InferenceExecutor] = web.AppKey(
    "voicestream_media_executor", InferenceExecutor
)
METRICS: web.AppKey[Metrics] = web.AppKey("voicestream_metrics", Metrics)
POOL: web.AppKey[db.Pool] = web.AppKey("voicestream_pool")
REDIS: web.AppKey[Redis] = web.AppKey("voicestream_redis", Redis)
API_KEYS: web.AppKey[ApiKeyRepository] = web.AppKey("voicestream_api_keys", ApiKeyRepository)
USAGE: web.AppKey[UsageRepository] = web.AppKey("voicestream_usage", UsageRepository)
# ElevenLabs /v1/history: logged generations and their audio.
HISTORY: web.AppKey[HistoryRepository] = web.AppKey("voicestream_history", HistoryRepository)
AGENTS: web.AppKey[AgentCatalog] = web.AppKey("voicestream_agents", AgentCatalog)
AGENT_RESOLVER: web.AppKey[AgentResolver] = web.AppKey("voicestream_agent_resolver", AgentResolver)
# Durable: outbox, heartbeat, sweep.
CONVERSATIONS: web.AppKey[ConversationRepository] = web.AppKey(
    "voicestream_conversations", ConversationRepository
)
# Embeddings and vectors: documents, search, long-term memory.
KNOWLEDGE: web.AppKey[KnowledgeBase] = web.AppKey("voicestream_knowledge", KnowledgeBase)
# Signs conversation tickets and call tickets; agents' stored LLM keys are encrypted under it.
SECRET_KEY: web.AppKey[str] = web.AppKey("voicestream_secret_key", str)
