"""The knowledge-base agent over real embeddings in a real local Qdrant folder."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest

from voicestream.engines.agents.base import AgentConfig, AgentRequest
from voicestream.engines.agents.chunking import chunk_document
from voicestream.engines.agents.knowledge import (
    DONT_KNOW,
    NOTED,
    OPENING,
    KnowledgeAgent,
    clauses,
)
from voicestream.engines.agents.retrieval import KnowledgeBase, worth_remembering
from voicestream.errors import EngineUnavailable

OPENING_HOURS = "Our office is open from nine in the morning to five in the evening on weekdays."
PARKING = "Parking is free in the garage behind the building for all visitors."
TOUR = (
    "The museum tour takes about two hours. It starts in the main hall, continues through the "
    "painting gallery and the sculpture garden, and ends at the gift shop near the entrance."
)
HANDBOOK = """# Visitor handbook

## Opening hours
We are open from 7 a.m. to 6 p.m. on weekdays. On Saturdays we open at 8 a.m.

## Returns
You can return any item within 30 days if you keep the receipt.
"""


async def _add(kb: KnowledgeBase, agent: AgentConfig, text: str, kind: str = "text/plain") -> int:
    passages = chunk_document(text, kind)
    vectors = await kb.embed_passages(passages)
    doc_id = str(uuid.uuid4())
    return await kb.store_passages(agent.workspace_id, agent.id, doc_id, passages, vectors)


async def _ask(
    engine: KnowledgeAgent, agent: AgentConfig, text: str, end_user_id: str | None = None
) -> tuple[str, list[str]]:
    deltas = [d async for d in engine.respond(AgentRequest(agent, text, end_user_id=end_user_id))]
    return "".join(deltas), deltas


@pytest.fixture
def engine(knowledge_base: KnowledgeBase) -> KnowledgeAgent:
    return KnowledgeAgent(knowledge_base)


async def test_answers_with_the_matching_passage(
    knowledge_base: KnowledgeBase, engine: KnowledgeAgent, agent: AgentConfig, no_blocking: object
) -> None:
    for text in (OPENING_HOURS, PARKING, TOUR):
        await _add(knowledge_base, agent, text)
    answer, _ = await _ask(engine, agent, "What time is the office open?")
    assert answer == OPENING_HOURS
    # STT output: no capitals, no punctuation.
    answer, _ = await _ask(engine, agent, "wait where can i park my car")
    assert answer == PARKING
    answer, deltas = await _ask(engine, agent, "How long does the museum tour take?")
    assert answer == TOUR
    assert len(deltas) > 2  # clause by clause, so speech can start on the first


async def test_answers_from_a_markdown_document(
    knowledge_base: KnowledgeBase, engine: KnowledgeAgent, agent: AgentConfig
) -> None:
    assert await _add(knowledge_base, agent, HANDBOOK, "text/markdown") == 2
    answer, _ = await _ask(engine, agent, "What are your opening hours?")
    assert answer == "We are open from 7 a.m. to 6 p.m. on weekdays. On Saturdays we open at 8 a.m."
    answer, _ = await _ask(engine, agent, "what is your refund policy")
    assert "30 days" in answer


@pytest.mark.parametrize(
    "question",
    ["What is the capital of France?", "Tell me a joke", "who won the football game yesterday"],
)
async def test_says_it_does_not_know_unrelated_things(
    knowledge_base: KnowledgeBase, engine: KnowledgeAgent, agent: AgentConfig, question: str
) -> None:
    for text in (OPENING_HOURS, PARKING, TOUR):
        await _add(knowledge_base, agent, text)
    answer, _ = await _ask(engine, agent, question)
    assert answer == DONT_KNOW


async def test_asked_to_speak_first_it_asks_what_the_user_wants(
    engine: KnowledgeAgent, agent: AgentConfig
) -> None:
    # No user text: a client's "say something first" (response.create with no input).
    assert (await _ask(engine, agent, ""))[0] == OPENING


async def test_an_agent_without_documents_does_not_know(
    engine: KnowledgeAgent, agent: AgentConfig
) -> None:
    assert (await _ask(engine, agent, "What time is the office open?"))[0] == DONT_KNOW


async def test_knowledge_is_isolated_by_workspace_and_agent(
    knowledge_base: KnowledgeBase, engine: KnowledgeAgent, agent: AgentConfig
) -> None:
    await _add(knowledge_base, agent, OPENING_HOURS)
    same_id_other_workspace = dataclasses.replace(agent, workspace_id=str(uuid.uuid4()))
    other_agent = dataclasses.replace(agent, id=str(uuid.uuid4()))
    for who in (same_id_other_workspace, other_agent):
        assert (await _ask(engine, who, "When is the office open?"))[0] == DONT_KNOW


async def test_deleting_a_document_or_agent_removes_its_passages(
    knowledge_base: KnowledgeBase, engine: KnowledgeAgent, agent: AgentConfig
) -> None:
    passages = chunk_document(PARKING)
    doc_id = str(uuid.uuid4())
    vectors = await knowledge_base.embed_passages(passages)
    await knowledge_base.store_passages(agent.workspace_id, agent.id, doc_id, passages, vectors)
    # Storing the same document again replaces its points instead of doubling them.
    await knowledge_base.store_passages(agent.workspace_id, agent.id, doc_id, passages, vectors)
    hits = await knowledge_base.search(agent.workspace_id, agent.id, "parking", 5)
    assert len(hits) == 1
    await knowledge_base.delete_document(agent.workspace_id, agent.id, doc_id)
    assert (await _ask(engine, agent, "Is parking free?"))[0] == DONT_KNOW
    await _add(knowledge_base, agent, PARKING)
    await knowledge_base.delete_agent(agent.workspace_id, agent.id)
    assert await knowledge_base.search(agent.workspace_id, agent.id, "parking") == []


async def test_memory_is_recalled_in_a_later_session_for_the_same_user_only(
    knowledge_base: KnowledgeBase, engine: KnowledgeAgent, agent: AgentConfig, no_blocking: object
) -> None:
    await _add(knowledge_base, agent, OPENING_HOURS)
    # Session one: the user states a fact; the session stores it as the turn arrives.
    assert await knowledge_base.remember(agent, "visitor-42", "My favourite colour is green.")
    # The statement is acknowledged, not answered with itself.
    answer, _ = await _ask(engine, agent, "My favourite colour is green.", "visitor-42")
    assert answer == NOTED
    # Session two, same end user: recalled.
    answer, _ = await _ask(engine, agent, "What is my favourite colour?", "visitor-42")
    assert answer == "Earlier you told me: My favourite colour is green."
    # Knowledge still wins where it matches better.
    answer, _ = await _ask(engine, agent, "When is the office open?", "visitor-42")
    assert answer == OPENING_HOURS
    # Another end user, an anonymous one, or the same user id in another workspace: nothing.
    assert (await _ask(engine, agent, "What is my favourite colour?", "visitor-7"))[0] == DONT_KNOW
    assert (await _ask(engine, agent, "What is my favourite colour?"))[0] == DONT_KNOW
    elsewhere = dataclasses.replace(agent, workspace_id=str(uuid.uuid4()))
    answer, _ = await _ask(engine, elsewhere, "What is my favourite colour?", "visitor-42")
    assert answer == DONT_KNOW


async def test_memory_keeps_statements_only(
    knowledge_base: KnowledgeBase, agent: AgentConfig
) -> None:
    for text in ("what is my name", "Where do you live?", "ok", "yes please", ""):
        assert not await knowledge_base.remember(agent, "u1", text)
    assert not await knowledge_base.remember(agent, "", "My name is Ada Lovelace.")
    assert worth_remembering("my name is ada")  # STT style
    assert await knowledge_base.remember(agent, "u1", "My name is Ada Lovelace.")
    # Saying it again refreshes the one memory instead of adding another.
    assert await knowledge_base.remember(agent, "u1", "my name is  Ada Lovelace")
    hits = await knowledge_base.recall(agent.workspace_id, "u1", "What is my name?", 5)
    assert [h.text for h in hits] == ["my name is Ada Lovelace"]  # the latest wording
    await knowledge_base.vectors.forget(agent.workspace_id, "u1")
    assert await knowledge_base.recall(agent.workspace_id, "u1", "What is my name?") == []


def test_clauses_join_back_exactly() -> None:
    text = "First, a clause; then another: and a sentence. Next one!  Done"
    pieces = clauses(text)
    assert "".join(pieces) == text
    assert pieces[0] == "First, "


async def test_without_an_embedding_model_it_is_unavailable(
    knowledge_base: KnowledgeBase, agent: AgentConfig
) -> None:
    kb = KnowledgeBase(None, knowledge_base.vectors, knowledge_base._executor)
    with pytest.raises(EngineUnavailable):
        await _ask(KnowledgeAgent(kb), agent, "hello there")


async def test_vectors_must_have_the_model_dimension(
    knowledge_base: KnowledgeBase, agent: AgentConfig
) -> None:
    from voicestream.errors import ValidationFailed

    with pytest.raises(ValidationFailed):
        await knowledge_base.vectors.search_knowledge(
            agent.workspace_id, agent.id, np.zeros(10, dtype=np.float32)
        )
