"""Agents, documents and conversations against the real session database."""

from __future__ import annotations

import asyncio
import uuid
from uuid import UUID

import pytest

from fixtures_services import unique_name
from voicestream.errors import NotFound, ValidationFailed
from voicestream.store import db
from voicestream.store.agents import AgentRepository, AgentSpec, NewDocument
from voicestream.store.conversations import ConversationRepository
from voicestream.store.secrets import SecretBox
from voicestream.store.workspaces import ensure_workspace


async def _workspace(pool: db.Pool) -> UUID:
    async with pool.acquire() as conn:
        return await ensure_workspace(conn, unique_name("agents"))


@pytest.fixture
def agents(db_pool: db.Pool) -> AgentRepository:
    return AgentRepository(db_pool, SecretBox("s" * 48))


@pytest.fixture
def conversations(db_pool: db.Pool) -> ConversationRepository:
    return ConversationRepository(db_pool)


SPEC = AgentSpec(
    name="front desk",
    voice="slt",
    instructions="Be brief.",
    first_message="Hello!",
    llm={"base_url": "http://llm/v1", "model": "m", "api_key": "sk-secret"},
)


async def test_create_get_list_update_delete(db_pool: db.Pool, agents: AgentRepository) -> None:
    ws = await _workspace(db_pool)
    docs = [NewDocument("faq", "text/plain", "Parking is free.", 1)]
    agent, stored = await agents.create(ws, SPEC, docs)
    assert agent.name == "front desk" and agent.llm == SPEC.llm and not agent.public
    assert [(d.name, d.chunks, d.characters) for d in stored] == [("faq", 1, 16)]
    assert await agents.get(ws, str(agent.id)) == agent
    assert [a.id for a in await agents.list(ws)] == [agent.id]

    body = agent.to_dict()
    assert "api_key" not in body["llm"] and body["llm"]["api_key_set"] is True
    assert "sk-secret" not in str(body)

    updated = await agents.update(ws, agent.id, {"name": "desk", "public": True, "llm": None})
    assert (updated.name, updated.public, updated.llm) == ("desk", True, None)
    assert updated.updated_at >= agent.updated_at
    assert (await agents.get_public(agent.id)).id == agent.id
    with pytest.raises(ValidationFailed):
        await agents.update(ws, agent.id, {"workspace_id": uuid.uuid4()})

    await agents.delete(ws, agent.id)
    with pytest.raises(NotFound):
        await agents.get(ws, agent.id)
    with pytest.raises(NotFound):
        await agents.delete(ws, agent.id)


async def test_other_workspaces_and_bad_ids_are_not_found(
    db_pool: db.Pool, agents: AgentRepository
) -> None:
    ws, other = await _workspace(db_pool), await _workspace(db_pool)
    agent, _ = await agents.create(ws, SPEC)
    doc = await agents.add_document(ws, agent.id, NewDocument("d", "text/plain", "x", 1))
    calls = [
        agents.get(other, agent.id),
        agents.update(other, agent.id, {"name": "stolen"}),
        agents.delete(other, agent.id),
        agents.list_documents(other, agent.id),
        agents.add_document(other, agent.id, NewDocument("d", "text/plain", "x", 1)),
        agents.delete_document(other, agent.id, doc.id),
        agents.document_text(other, agent.id, doc.id),
        agents.get(ws, "not-a-uuid"),
        agents.get_public(agent.id),  # not public
        agents.get_public("nope"),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            await call
    assert await agents.list(other) == []
    assert (await agents.get(ws, agent.id)).name == "front desk"  # untouched


async def test_a_failed_before_commit_leaves_nothing(
    db_pool: db.Pool, agents: AgentRepository
) -> None:
    ws = await _workspace(db_pool)

    async def fail(*_args: object) -> None:
        raise RuntimeError("vector store down")

    with pytest.raises(RuntimeError):
        await agents.create(ws, SPEC, [NewDocument("d", "text/plain", "x", 1)], before_commit=fail)
    assert await agents.list(ws) == []

    agent, _ = await agents.create(ws, SPEC)
    with pytest.raises(RuntimeError):
        await agents.add_document(
            ws, agent.id, NewDocument("d", "text/plain", "x", 1), before_commit=fail
        )
    assert await agents.list_documents(ws, agent.id) == []
    doc = await agents.add_document(ws, agent.id, NewDocument("d", "text/plain", "x", 1))
    with pytest.raises(RuntimeError):
        await agents.delete_document(ws, agent.id, doc.id, before_commit=fail)
    with pytest.raises(RuntimeError):
        await agents.delete(ws, agent.id, before_commit=fail)
    assert [d.id for d in await agents.list_documents(ws, agent.id)] == [doc.id]


async def test_documents_keep_their_text_and_go_with_the_agent(
    db_pool: db.Pool, agents: AgentRepository
) -> None:
    ws = await _workspace(db_pool)
    agent, _ = await agents.create(ws, SPEC)
    doc = await agents.add_document(
        ws, agent.id, NewDocument("handbook.md", "text/markdown", "# T\n\nNUL\x00 gone", 2)
    )
    assert await agents.document_text(ws, agent.id, doc.id) == "# T\n\nNUL gone"
    assert doc.to_dict()["content_type"] == "text/markdown"
    await agents.delete_document(ws, agent.id, doc.id)
    assert await agents.list_documents(ws, agent.id) == []
    await agents.add_document(ws, agent.id, NewDocument("d", "text/plain", "x", 1))
    await agents.delete(ws, agent.id)
    count = await db_pool.fetchval(
        "SELECT count(*) FROM agent_documents WHERE agent_id = $1", agent.id
    )
    assert count == 0


async def test_conversations_record_turns_in_order(
    db_pool: db.Pool, agents: AgentRepository, conversations: ConversationRepository
) -> None:
    ws = await _workspace(db_pool)
    agent, _ = await agents.create(ws, SPEC)
    cid = await conversations.create(str(ws), str(agent.id), "visitor-1", "websocket")
    assert isinstance(cid, str)
    # Concurrent writers (user and agent turns from different tasks) never collide.
    seqs = await asyncio.gather(
        *(conversations.add_turn(cid, "user" if i % 2 else "agent", f"turn {i}") for i in range(20))
    )
    assert sorted(seqs) == list(range(1, 21))
    await conversations.add_turn(cid, "agent", "cut off", interrupted=True)
    await conversations.end(cid, "disconnected")

    got = await conversations.get(ws, cid)
    assert got.status == "disconnected" and got.ended_at is not None
    assert [t.seq for t in got.turns] == list(range(1, 22))
    assert got.turns[-1].interrupted and got.turn_count == 21
    body = got.to_dict()
    assert body["agent_id"] == str(agent.id) and body["turns"][-1]["text"] == "cut off"

    await conversations.reopen(cid)
    assert (await conversations.get(ws, cid)).status == "active"
    await conversations.end(cid)
    assert (await conversations.get(ws, cid)).status == "ended"

    with pytest.raises(ValidationFailed):
        await conversations.add_turn(cid, "system", "no")
    with pytest.raises(NotFound):
        await conversations.add_turn(str(uuid.uuid4()), "user", "nobody's")


async def test_conversations_are_listed_filtered_and_tenant_scoped(
    db_pool: db.Pool, agents: AgentRepository, conversations: ConversationRepository
) -> None:
    ws, other = await _workspace(db_pool), await _workspace(db_pool)
    a1, _ = await agents.create(ws, SPEC)
    a2, _ = await agents.create(ws, SPEC)
    c1 = await conversations.create(ws, a1.id, None, "websocket")
    c2 = await conversations.create(ws, a2.id, "u2", "webrtc")
    c3 = await conversations.create(ws, a1.id, "u3", "websocket")
    listed = await conversations.list(ws)
    assert [str(c.id) for c in listed] == [c3, c2, c1]
    assert listed[0].turns == () and "turns" not in listed[0].to_dict(with_turns=False)
    assert [str(c.id) for c in await conversations.list(ws, agent_id=a1.id)] == [c3, c1]
    assert [str(c.id) for c in await conversations.list(ws, end_user_id="u2")] == [c2]
    assert [str(c.id) for c in await conversations.list(ws, limit=1)] == [c3]
    older = await conversations.list(ws, before=listed[0].started_at)
    assert str(listed[0].id) not in [str(c.id) for c in older]

    assert await conversations.list(other) == []
    with pytest.raises(NotFound):
        await conversations.get(other, c1)
    with pytest.raises(NotFound):
        await conversations.get(ws, "not-a-uuid")

    # Deleting the agent keeps its transcripts.
    await agents.delete(ws, a1.id)
    kept = await conversations.get(ws, c1)
    assert kept.agent_id is None
