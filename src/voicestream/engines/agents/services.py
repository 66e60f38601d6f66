"""Everything agents need at run time, opened and closed as one unit by the app factory."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from voicestream.config import Settings
from voicestream.engines.agents.resolver import AgentCatalog, AgentResolver
from voicestream.engines.agents.retrieval import KnowledgeBase
from voicestream.engines.executor import InferenceExecutor
from voicestream.errors import EngineUnavailable
from voicestream.store.conversations import ConversationRepository
from voicestream.store.secrets import SecretBox
from voicestream.store.vectors import VectorStore

if TYPE_CHECKING:
    from voicestream.engines.embedder import MiniLMEmbedder
    from voicestream.store import db

__all__ = ["AgentServices", "open_agent_services"]

log = logging.getLogger(__name__)

# numpy's BLAS already spreads one embedding over the cores; two jobs at once keep a long
# ingestion from holding up every live lookup.
_EMBED_THREADS: Final = min(2, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class AgentServices:
    agents: AgentCatalog
    conversations: ConversationRepository
    knowledge: KnowledgeBase
    resolver: AgentResolver


# Imported lazily by the modules that use them, and slow to import (0.3-0.5 s each): loading
# them here, on a worker thread at start-up, keeps that first import off the event loop.
_HEAVY_IMPORTS: Final = ("qdrant_client", "qdrant_client.http.models", "openai", "pypdf")


def _preload() -> None:
    for name in _HEAVY_IMPORTS:
        importlib.import_module(name)


def _load_embedder() -> MiniLMEmbedder:
    from voicestream.engines.embedder import MiniLMEmbedder

    return MiniLMEmbedder()


@contextlib.asynccontextmanager
async def open_agent_services(
    settings: Settings, pool: db.Pool, secret_key: str
) -> AsyncIterator[AgentServices]:
    """Repositories, the embedding model (loaded off the loop), Qdrant and the engines.

    ``secret_key`` (the server's) encrypts the agents' stored LLM keys; any still stored in
    clear from before are encrypted here.

    A missing embedding model does not stop the server: agents that need it answer with
    ``EngineUnavailable``, LLM agents without documents work.
    """
    await asyncio.to_thread(_preload)
    agents = AgentCatalog(pool, SecretBox(secret_key))
    if sealed := await agents.seal_plaintext_secrets():
        log.info("encrypted %d agent LLM key(s) stored in clear", sealed)
    embedder: MiniLMEmbedder | None = None
    reason = ""
    try:
        embedder = await asyncio.to_thread(_load_embedder)
    except EngineUnavailable as exc:
        reason = exc.message
        log.warning("knowledge and memory disabled: %s", reason)
    if settings.qdrant_url:
        vectors = VectorStore(url=settings.qdrant_url, api_key=settings.qdrant_api_key)
    else:
        vectors = VectorStore(path=settings.data_dir / "qdrant")
    executor = InferenceExecutor("embed", _EMBED_THREADS)
    knowledge = KnowledgeBase(embedder, vectors, executor, unavailable_reason=reason)
    resolver = AgentResolver.build(settings, knowledge)
    try:
        yield AgentServices(
            agents=agents,
            conversations=ConversationRepository(pool),
            knowledge=knowledge,
            resolver=resolver,
        )
    finally:
        await resolver.aclose()
        await vectors.aclose()
        await asyncio.to_thread(executor.shutdown)
