"""The server's shared resources that REST handlers read: one typed app key each.

Here rather than in ``server/`` so that ``rest/`` (and ``transports/`` above it) can read them
without importing upwards; ``server/app.py`` sets each one when the app starts, beside the
transports' ``RUNTIME``, from the same objects. Handlers read them through
``request.config_dict``, which also finds them from inside a sub-app.
"""

from __future__ import annotations

from aiohttp import web

from ..config import Settings
from ..engines.agents.resolver import AgentCatalog
from ..engines.agents.retrieval import KnowledgeBase
from ..engines.catalog import EngineRegistry
from ..engines.executor import InferenceExecutor
from ..store.conversations import ConversationRepository
from ..store.usage import UsageRepository

__all__ = [
    "AGENTS",
    "CONVERSATIONS",
    "KNOWLEDGE",
    "MEDIA_EXECUTOR",
    "REGISTRY",
    "SETTINGS",
    "USAGE",
]

SETTINGS: web.AppKey[Settings] = web.AppKey("voicestream_settings", Settings)
REGISTRY: web.AppKey[EngineRegistry] = web.AppKey("voicestream_engine_registry", EngineRegistry)
# Decoding uploads and chunking documents: CPU-bound, never on the loop.
MEDIA_EXECUTOR: web.AppKey[InferenceExecutor] = web.AppKey(
    "voicestream_media_executor", InferenceExecutor
)
USAGE: web.AppKey[UsageRepository] = web.AppKey("voicestream_usage", UsageRepository)
AGENTS: web.AppKey[AgentCatalog] = web.AppKey("voicestream_agents", AgentCatalog)
CONVERSATIONS: web.AppKey[ConversationRepository] = web.AppKey(
    "voicestream_conversations", ConversationRepository
)
# Embeddings and vectors: documents, search, long-term memory.
KNOWLEDGE: web.AppKey[KnowledgeBase] = web.AppKey("voicestream_knowledge", KnowledgeBase)
