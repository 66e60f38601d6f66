"""Retrieval: text to vectors off the event loop, and the agents' knowledge and memory in Qdrant.

One ``KnowledgeBase`` per server serves the knowledge agent, the LLM agents' ``search_knowledge``
tool, document ingestion and long-term memory, so they share one embedding model (90 MB) and
one embedding executor.

A user's question is embedded with deadline "now" on the deadline-ordered executor, a document
being ingested in batches with a deadline a little later: a live conversation's lookup never
waits behind someone's 200-page upload.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from voicestream.engines.executor import InferenceExecutor
from voicestream.errors import EngineUnavailable
from voicestream.store.vectors import KnowledgeHit, MemoryHit, VectorStore

if TYPE_CHECKING:
    from voicestream.engines.agents.base import AgentConfig
    from voicestream.engines.agents.chunking import Passage
    from voicestream.engines.embedder import MiniLMEmbedder

__all__ = ["KnowledgeBase", "is_question", "worth_remembering"]

F32 = npt.NDArray[np.float32]

_BULK_BATCH: Final = 32  # passages per executor job while ingesting
_BULK_DELAY_S: Final = 2.0  # ingestion's deadline offset: live lookups go first
# STT transcripts carry no "?": a question shows in its first word.
_QUESTION_WORDS: Final = frozenset(
    "what who whom whose where when why how which do does did is are was were am can could "
    "would will shall should may might have has tell please".split()
)
_MIN_MEMORY_WORDS: Final = 3
_MAX_MEMORY_CHARS: Final = 1000


def is_question(text: str) -> bool:
    words = re.findall(r"[\w']+", text.lower())
    return text.rstrip().endswith("?") or bool(words and words[0] in _QUESTION_WORDS)


def worth_remembering(text: str) -> bool:
    """A statement of at least three words: a question is not a fact about the user."""
    words = re.findall(r"[\w']+", text)
    return len(words) >= _MIN_MEMORY_WORDS and not is_question(text)


class KnowledgeBase:
    """Embeddings plus vectors: ingest passages, search an agent's knowledge, user memory.

    ``embedder`` None (the model package is missing) leaves the server running: anything that
    needs an embedding raises ``EngineUnavailable``.
    """

    def __init__(
        self,
        embedder: MiniLMEmbedder | None,
        vectors: VectorStore,
        executor: InferenceExecutor,
        *,
        unavailable_reason: str = "the embedding model is not installed",
    ) -> None:
        self._embedder = embedder
        self.vectors = vectors
        self._executor = executor
        self._unavailable = unavailable_reason

    @property
    def available(self) -> bool:
        return self._embedder is not None

    async def embed(self, texts: Sequence[str], *, bulk: bool = False) -> F32:
        """One unit vector per text, computed on the embedding executor.

        Raises:
            EngineUnavailable: no embedding model.
        """
        embedder = self._embedder
        if embedder is None:
            raise EngineUnavailable(self._unavailable)
        if not bulk:
            items = list(texts)
            return await self._executor.run(lambda: embedder.embed(items))
        parts: list[F32] = []
        for start in range(0, len(texts), _BULK_BATCH):
            batch = list(texts[start : start + _BULK_BATCH])
            deadline = time.monotonic() + _BULK_DELAY_S
            job = functools.partial(embedder.embed, batch)
            parts.append(await self._executor.run(job, deadline=deadline))
        if not parts:
            return np.zeros((0, embedder.dimension), dtype=np.float32)
        return np.concatenate(parts)

    # -- knowledge ---------------------------------------------------------------------------

    async def embed_passages(self, passages: Sequence[Passage]) -> F32:
        """Vectors for passages to ingest (heading included: it says what a passage is about)."""
        return await self.embed([p.embed_text for p in passages], bulk=True)

    async def store_passages(
        self,
        workspace_id: str,
        agent_id: str,
        document_id: str,
        passages: Sequence[Passage],
        vectors: F32,
    ) -> int:
        return await self.vectors.add_chunks(
            workspace_id, agent_id, document_id, [p.text for p in passages], vectors
        )

    async def search(
        self, workspace_id: str, agent_id: str, query: str, limit: int = 3
    ) -> list[KnowledgeHit]:
        """The agent's passages nearest to ``query``, best first."""
        vector = (await self.embed([query]))[0]
        return await self.vectors.search_knowledge(workspace_id, agent_id, vector, limit)

    async def delete_document(self, workspace_id: str, agent_id: str, document_id: str) -> None:
        await self.vectors.delete_document(workspace_id, agent_id, document_id)

    async def delete_agent(self, workspace_id: str, agent_id: str) -> None:
        await self.vectors.delete_agent(workspace_id, agent_id)

    # -- memory ------------------------------------------------------------------------------

    async def remember(
        self,
        agent: AgentConfig,
        end_user_id: str,
        text: str,
        *,
        conversation_id: str | None = None,
    ) -> bool:
        """Keep a user's statement for later conversations; False if it was not kept.

        Questions and utterances under three words are skipped (see ``worth_remembering``).
        """
        text = " ".join(text.split())[:_MAX_MEMORY_CHARS]
        if not end_user_id or not worth_remembering(text):
            return False
        vector = (await self.embed([text], bulk=True))[0]
        await self.vectors.remember(
            agent.workspace_id,
            end_user_id,
            agent.id,
            text,
            vector,
            conversation_id=conversation_id,
        )
        return True

    async def recall(
        self, workspace_id: str, end_user_id: str, query: str, limit: int = 3
    ) -> list[MemoryHit]:
        """What this end user said in earlier conversations nearest to ``query``."""
        vector = (await self.embed([query]))[0]
        return await self.vectors.recall(workspace_id, end_user_id, vector, limit)
