"""Agent fixtures: the real embedding model, a real local Qdrant folder, the fake LLM server.

The model and the vector store load once per session. Each test isolates its data by using its
own workspace id (a fresh UUID), the same way the store tests use their own workspace names.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from blockbuster import BlockBuster, blockbuster_ctx

from voicestream.engines.agents.base import AgentConfig
from voicestream.engines.agents.retrieval import KnowledgeBase
from voicestream.engines.embedder import MiniLMEmbedder
from voicestream.engines.executor import InferenceExecutor
from voicestream.store.vectors import VectorStore

# fakes/ lives in tests/; keep it importable when this directory runs on its own.
_TESTS_DIR = str(Path(__file__).resolve().parents[2])
if _TESTS_DIR not in sys.path:
    sys.path.append(_TESTS_DIR)

from fakes.openai_server import FakeOpenAI  # noqa: E402  (needs the path above)


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def knowledge_base(
    embedder: MiniLMEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[KnowledgeBase]:
    vectors = VectorStore(path=tmp_path_factory.mktemp("qdrant"))
    executor = InferenceExecutor("embed-test", 2)
    try:
        yield KnowledgeBase(embedder, vectors, executor)
    finally:
        await vectors.aclose()
        await asyncio.to_thread(executor.shutdown)


@pytest_asyncio.fixture(loop_scope="session")
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def agent() -> AgentConfig:
    """A fresh agent in a fresh workspace: no other test's vectors are visible to it."""
    return AgentConfig(id=str(uuid.uuid4()), workspace_id=str(uuid.uuid4()), name="test agent")


@pytest.fixture
def no_blocking() -> Iterator[BlockBuster]:
    """Blocking calls made from voicestream code on the event loop fail the test."""
    with blockbuster_ctx("voicestream") as bb:
        yield bb
