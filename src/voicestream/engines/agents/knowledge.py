"""The embedded default agent: answers with the best-matching passage of the agent's documents.

No language model: the user's words are embedded, the agent's knowledge (and, for a known end
user, what they said in earlier conversations) is searched, and the best passage is spoken back
verbatim when it is similar enough; otherwise the agent says it does not know. Documents are
cut into one-to-three-sentence passages for exactly this (see ``chunking``).

The thresholds were tuned on all-MiniLM-L6-v2 cosine similarities: questions and the passages
that answer them score 0.4-0.8 (STT transcripts without punctuation included), unrelated
questions stay under 0.25.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Final

from voicestream.engines.agents.base import AgentEngine, AgentRequest
from voicestream.engines.agents.retrieval import KnowledgeBase, worth_remembering
from voicestream.store.vectors import KnowledgeHit, MemoryHit

__all__ = [
    "DONT_KNOW",
    "KNOWLEDGE_THRESHOLD",
    "MEMORY_THRESHOLD",
    "NOTED",
    "OPENING",
    "KnowledgeAgent",
    "clauses",
    "memory_answer",
]

DONT_KNOW: Final = "Sorry, I don't know that."
# Asked to speak with nothing said yet (a client's "say something first"): what to ask.
OPENING: Final = "Hello! What would you like to know?"
# A known end user stating something (which the session stores as a memory) is not asking:
# "I don't know that" would be the wrong reply.
NOTED: Final = "Thanks, I'll remember that."
KNOWLEDGE_THRESHOLD: Final = 0.35
# Higher than for knowledge: memories are arbitrary user statements, and recalling the wrong
# one ("Earlier you told me: ...") is more jarring than not knowing.
MEMORY_THRESHOLD: Final = 0.45
_MEMORY_PREFIX: Final = "Earlier you told me: "
# A clause boundary with the whitespace after it; splitting keeps that whitespace on the left
# piece, so the pieces join back to the exact passage.
_CLAUSE_END = re.compile(r"(?<=[,;:.!?…])\s+")


def clauses(text: str) -> list[str]:
    """``text`` in clause-sized pieces whose concatenation is ``text`` exactly."""
    pieces: list[str] = []
    start = 0
    for match in _CLAUSE_END.finditer(text):
        pieces.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def memory_answer(text: str) -> str:
    text = text.strip()
    return f"{_MEMORY_PREFIX}{text}{'' if text[-1:] in '.!?' else '.'}"


def _same_words(a: str, b: str) -> bool:
    def norm(s: str) -> list[str]:
        return re.findall(r"[\w']+", s.lower())

    return norm(a) == norm(b)


class KnowledgeAgent(AgentEngine):
    """Retrieval-only agent. The greeting (``first_message``) is the session's job, not this."""

    name = "knowledge"

    def __init__(
        self,
        knowledge: KnowledgeBase,
        *,
        threshold: float = KNOWLEDGE_THRESHOLD,
        memory_threshold: float = MEMORY_THRESHOLD,
    ) -> None:
        self._kb = knowledge
        self._threshold = threshold
        self._memory_threshold = memory_threshold

    async def answer(self, request: AgentRequest) -> str:
        """The whole reply at once (``respond`` streams this)."""
        text = request.user_text.strip()
        if not text:
            return OPENING
        agent = request.agent
        vector = (await self._kb.embed([text]))[0]
        vectors = self._kb.vectors
        if request.end_user_id:
            knowledge, memories = await asyncio.gather(
                vectors.search_knowledge(agent.workspace_id, agent.id, vector, 1),
                vectors.recall(agent.workspace_id, request.end_user_id, vector, 3),
            )
        else:
            knowledge = await vectors.search_knowledge(agent.workspace_id, agent.id, vector, 1)
            memories = []
        answer = self._choose(text, knowledge, memories)
        if answer is None:
            return NOTED if request.end_user_id and worth_remembering(text) else DONT_KNOW
        return answer

    def _choose(
        self, text: str, knowledge: list[KnowledgeHit], memories: list[MemoryHit]
    ) -> str | None:
        best_kb = knowledge[0] if knowledge and knowledge[0].score >= self._threshold else None
        # The utterance being answered may already be stored (the session remembers it as it
        # arrives): never answer a statement with itself.
        recalled = [
            m
            for m in memories
            if m.score >= self._memory_threshold and not _same_words(m.text, text)
        ]
        best_mem = recalled[0] if recalled else None
        if best_mem is not None and (best_kb is None or best_mem.score > best_kb.score):
            return memory_answer(best_mem.text)
        if best_kb is not None:
            return best_kb.text
        return None

    async def respond(self, request: AgentRequest) -> AsyncIterator[str]:
        """The answer clause by clause, so speech can start on the first one."""
        for piece in clauses(await self.answer(request)):
            yield piece
