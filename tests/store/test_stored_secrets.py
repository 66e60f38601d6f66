"""Third-party secrets (agents' LLM keys) are encrypted at rest, and old plaintext still reads."""

from __future__ import annotations

import base64
import json
from uuid import UUID

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

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


async def _raw_key(pool: db.Pool, agent_id: UUID) -> str:
    return str(await pool.fetchval("SELECT llm->>'api_key' FROM agents WHERE id = $1", agent_id))


async def test_a_sealed_key_copied_to_another_agent_of_the_workspace_does_not_open(
    db_pool: db.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    agents = AgentRepository(db_pool, SecretBox("a" * 48))
    ws = await _workspace(db_pool)
    owner, _ = await agents.create(ws, SPEC)
    other_llm = {**SPEC.llm, "api_key": "sk-the-other-agents-own-key"}  # type: ignore[dict-item]
    other, _ = await agents.create(ws, AgentSpec(name="other", voice="slt", llm=other_llm))
    await db_pool.execute(
        "UPDATE agents SET llm = jsonb_set(llm, '{api_key}', to_jsonb($2::text)) WHERE id = $1",
        other.id,
        await _raw_key(db_pool, owner.id),
    )
    read = await agents.get(ws, other.id)
    assert read.llm is not None and "api_key" not in read.llm, read.llm
    assert "cannot be decrypted" in caplog.text


async def test_a_client_sent_key_that_looks_sealed_is_sealed_like_any_other(
    db_pool: db.Pool,
) -> None:
    agents = AgentRepository(db_pool, SecretBox("a" * 48))
    ws = await _workspace(db_pool)
    owner, _ = await agents.create(ws, SPEC)
    # Someone who saw a sealed value (a dump, a backup) sends it as their agent's key: it is
    # their plaintext, not a way to make our key open in their agent.
    planted = await _raw_key(db_pool, owner.id)
    llm = {**SPEC.llm, "api_key": planted}  # type: ignore[dict-item]
    mine, _ = await agents.create(ws, AgentSpec(name="planted", voice="slt", llm=llm))
    assert await _raw_key(db_pool, mine.id) != planted
    read = await agents.get(ws, mine.id)
    assert read.llm is not None and read.llm["api_key"] == planted
    updated = await agents.update(ws, mine.id, {"llm": llm})
    assert updated.llm is not None and updated.llm["api_key"] == planted


def _sealed_v1(server_secret: str, plaintext: str, workspace_id: UUID) -> str:
    """A value as the first scheme wrote it: bound to the workspace alone (golden format)."""
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"voicestream stored third-party secrets v1",
    ).derive(server_secret.encode())
    nonce = bytes(range(12))
    body = AESGCM(key).encrypt(nonce, plaintext.encode(), str(workspace_id).encode())
    return "enc:v1:" + base64.urlsafe_b64encode(nonce + body).decode("ascii")


async def test_keys_sealed_the_old_way_still_read_and_are_resealed_bound_to_their_agent(
    db_pool: db.Pool,
) -> None:
    agents = AgentRepository(db_pool, SecretBox("a" * 48))
    ws = await _workspace(db_pool)
    agent, _ = await agents.create(ws, AgentSpec(name="v1", voice="slt"))
    legacy, _ = await agents.create(ws, AgentSpec(name="enc-looking", voice="slt"))
    old_llm = {**SPEC.llm, "api_key": _sealed_v1("a" * 48, LLM_KEY, ws)}  # type: ignore[dict-item]
    await db_pool.execute(
        "UPDATE agents SET llm = $2::jsonb WHERE id = $1", agent.id, json.dumps(old_llm)
    )
    # Plaintext from before sealing that merely starts like a sealed value.
    enc_looking = {**SPEC.llm, "api_key": "enc:plain-old-key"}  # type: ignore[dict-item]
    await db_pool.execute(
        "UPDATE agents SET llm = $2::jsonb WHERE id = $1", legacy.id, json.dumps(enc_looking)
    )
    assert (await agents.get(ws, agent.id)).llm == SPEC.llm
    assert await agents.seal_plaintext_secrets() >= 2
    assert (await _raw_key(db_pool, agent.id)).startswith("enc:v2:")
    assert (await _raw_key(db_pool, legacy.id)).startswith("enc:v2:")
    assert (await agents.get(ws, agent.id)).llm == SPEC.llm
    assert (await agents.get(ws, legacy.id)).llm == enc_looking
