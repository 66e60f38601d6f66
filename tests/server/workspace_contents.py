"""A workspace holding one of each kind of data (for the retention, export and deletion tests):
an agent with a knowledge document (its passages in the vectors), a conversation with turns and
a memory made in it, a TTS history item with audio, an uploaded file, a job with an output
file, and an API key. Written through the stores the server itself uses (no audio to make), and
``age`` moves an item's creation into the past, as the retention tests need."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from voicestream.rest.files import FILES
from voicestream.rest.resources import AGENTS, CONVERSATIONS, KNOWLEDGE, POOL
from voicestream.store import jobs as job_store
from voicestream.store.agents import NewDocument
from voicestream.store.history import HistoryRepository, NewHistoryItem
from voicestream.store.keys import ApiKeyRepository
from voicestream.store.vectors import VectorStore

__all__ = ["Contents", "age", "fill_workspace", "unit_vector"]


def unit_vector(seed: str) -> np.ndarray[Any, np.dtype[np.float32]]:
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    vector = rng.standard_normal(384).astype(np.float32)
    return vector / np.linalg.norm(vector)


@dataclass
class Contents:
    workspace_id: str
    agent_id: str
    document_id: str
    conversation_id: str
    end_user_id: str
    memory_text: str
    history_item_id: str
    upload_id: str
    upload_bytes: bytes
    job_id: str
    output_id: str
    key_secret: str


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def fill_workspace(server: Any, workspace_id: str, tag: str) -> Contents:
    app = server.app
    pool = app[POOL]
    ws = uuid.UUID(workspace_id)
    agent_id = await pool.fetchval(
        "INSERT INTO agents (workspace_id, name, voice) VALUES ($1, $2, 'slt') RETURNING id",
        ws,
        f"agent {tag}",
    )
    document = await app[AGENTS].add_document(
        workspace_id, agent_id, NewDocument("d.txt", "text/plain", f"Doc {tag}.", 2)
    )
    vectors: VectorStore = app[KNOWLEDGE].vectors
    texts = [f"passage one of {tag}", f"passage two of {tag}"]
    await vectors.add_chunks(
        workspace_id,
        agent_id,
        document.id,
        texts,
        np.stack([unit_vector(text) for text in texts]),
    )
    conversations = app[CONVERSATIONS]
    conversation_id = await conversations.create(workspace_id, agent_id, f"user-{tag}", "websocket")
    await conversations.add_turn(conversation_id, "user", f"hello from {tag}")
    await conversations.add_turn(conversation_id, "agent", f"hello back, {tag}")
    await conversations.end(conversation_id)
    memory_text = f"my name is {tag}"
    await vectors.remember(
        workspace_id,
        f"user-{tag}",
        agent_id,
        memory_text,
        unit_vector(memory_text),
        conversation_id=conversation_id,
    )
    item = await HistoryRepository(pool).add(
        (ws, None),
        NewHistoryItem("slt", f"Spoken for {tag}.", "pcm_16000", "audio/pcm"),
        bytes(640),
    )
    upload_bytes = f"upload of {tag}".encode()
    upload = await app[FILES].upload(
        workspace_id, name="notes.txt", content_type="text/plain", chunks=_chunks(upload_bytes)
    )
    job_id = uuid.uuid4()
    async with pool.acquire() as conn:
        await job_store.insert_job(
            conn,
            job_store.NewJob(
                id=job_id,
                workspace_id=ws,
                type="test.lifecycle",
                input={},
                max_attempts=1,
                idempotency_key=None,
                request_hash=None,
                created_by_user=None,
                created_by_key=None,
            ),
        )
        # Done already: no worker picks up a job of a type it does not know.
        await conn.execute(
            "UPDATE jobs SET status = 'completed', finished_at = now() WHERE id = $1", job_id
        )
    output = await app[FILES].save_output(
        workspace_id, job_id, "out.txt", "text/plain", _chunks(f"output of {tag}".encode())
    )
    _, secret = await ApiKeyRepository(pool).create(workspace_id=ws, role="viewer")
    return Contents(
        workspace_id=workspace_id,
        agent_id=str(agent_id),
        document_id=str(document.id),
        conversation_id=str(conversation_id),
        end_user_id=f"user-{tag}",
        memory_text=memory_text,
        history_item_id=item.id,
        upload_id=str(upload.id),
        upload_bytes=upload_bytes,
        job_id=str(job_id),
        output_id=str(output.id),
        key_secret=secret,
    )


async def age(server: Any, contents: Contents, days: int) -> None:
    """Move every dated item of ``contents`` ``days`` into the past."""
    pool = server.app[POOL]
    ws = uuid.UUID(contents.workspace_id)
    past = timedelta(days=days)
    await pool.execute(
        "UPDATE history_items SET created_at = now() - $2::interval "
        "WHERE workspace_id = $1 AND id = $3",
        ws,
        past,
        contents.history_item_id,
    )
    await pool.execute(
        "UPDATE conversations SET started_at = now() - $2::interval, "
        "ended_at = now() - $2::interval WHERE workspace_id = $1 AND id = $3",
        ws,
        past,
        uuid.UUID(contents.conversation_id),
    )
    await pool.execute(
        "UPDATE files SET created_at = now() - $2::interval "
        "WHERE workspace_id = $1 AND id = ANY($3::uuid[])",
        ws,
        past,
        [uuid.UUID(contents.upload_id), uuid.UUID(contents.output_id)],
    )
