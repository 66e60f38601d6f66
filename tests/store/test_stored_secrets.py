"""Third-party secrets (agents' LLM keys) are encrypted at rest, and old plaintext still reads."""

from __future__ import annotations

import json
from uuid import UUID

import pytest

from fixtures_services import unique_name
from voicestream.store import db
from voicestream.store.agents import AgentRepository, AgentSpec
from voicestream.store.secrets import SecretBox, SecretUnreadable
from voicestream.store.workspaces import ensure_workspace

LLM_KEY = "sk-proj-3xampleK3yThatMustNeverBeStoredInClear"
SPEC = AgentSpec(
    name="sealed", voice="slt", llm={"base_url": "http://llm/v1", "model": "m", "api_key": LLM_KEY}
)


async def _workspace(pool: db.Pool) -> UUID:
    async with pool.acquire() as conn:
        return await ensure_workspace(conn, unique_name("secrets"))


async def _raw_llm(pool: db.Pool, agent_id: UUID) -> str:
    return str(await pool.fetchval("SELECT llm::text FROM agents WHERE id = $1", agent_id))


def test_a_sealed_value_opens_only_with_the_same_secret_and_context() -> None:
    box = SecretBox("a" * 48)
    sealed = box.seal(LLM_KEY, context="workspace-1")
    assert LLM_KEY not in sealed and SecretBox.is_sealed(sealed)
    assert sealed != box.seal(LLM_KEY, context="workspace-1")  # a fresh nonce each time
    assert box.open(sealed, context="workspace-1") == LLM_KEY
    assert box.open("sk-legacy-plaintext", context="workspace-1") == "sk-legacy-plaintext"
    with pytest.raises(SecretUnreadable):
        box.open(sealed, context="workspace-2")  # copied into another tenant's row
    with pytest.raises(SecretUnreadable):
        SecretBox("b" * 48).open(sealed, context="workspace-1")
    with pytest.raises(SecretUnreadable):
        box.open(sealed[:-6] + "AAAAAA", context="workspace-1")


async def test_keys_are_written_sealed_and_read_back_in_clear(db_pool: db.Pool) -> None:
    agents = AgentRepository(db_pool, SecretBox("a" * 48))
    ws = await _workspace(db_pool)
    agent, _ = await agents.create(ws, SPEC)
    assert LLM_KEY not in await _raw_llm(db_pool, agent.id)
    assert (await agents.get(ws, agent.id)).llm == SPEC.llm
    body = agent.to_dict()["llm"]
    assert body["api_key_set"] is True and body["api_key_hint"] == "sk-…lear"
    assert LLM_KEY not in json.dumps(agent.to_dict())
    # Replacing the llm settings seals the new key too.
    new_llm = {**SPEC.llm, "api_key": "sk-second-key-also-secret"}  # type: ignore[dict-item]
    await agents.update(ws, agent.id, {"llm": new_llm})
    assert "sk-second-key-also-secret" not in await _raw_llm(db_pool, agent.id)
    assert (await agents.get(ws, agent.id)).llm == new_llm


async def test_plaintext_rows_from_before_still_read_and_get_sealed(db_pool: db.Pool) -> None:
    agents = AgentRepository(db_pool, SecretBox("a" * 48))
    ws = await _workspace(db_pool)
    agent, _ = await agents.create(ws, AgentSpec(name="legacy", voice="slt"))
    await db_pool.execute(
        "UPDATE agents SET llm = $2::jsonb WHERE id = $1", agent.id, json.dumps(SPEC.llm)
    )
    assert (await agents.get(ws, agent.id)).llm == SPEC.llm
    assert await agents.seal_plaintext_secrets() >= 1
    assert LLM_KEY not in await _raw_llm(db_pool, agent.id)
    assert (await agents.get(ws, agent.id)).llm == SPEC.llm
    assert await agents.seal_plaintext_secrets() == 0  # nothing left in clear


async def test_a_key_sealed_under_another_secret_is_dropped_not_fatal(
    db_pool: db.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    ws = await _workspace(db_pool)
    agent, _ = await AgentRepository(db_pool, SecretBox("a" * 48)).create(ws, SPEC)
    other = AgentRepository(db_pool, SecretBox("b" * 48))
    read = await other.get(ws, agent.id)
    assert read.llm is not None and "api_key" not in read.llm
    assert read.to_dict()["llm"]["api_key_set"] is False
    assert "cannot be decrypted" in caplog.text
