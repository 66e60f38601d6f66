"""Conversation writes are stored in the order they were made, across a database outage,
and the outbox never writes what a user said into the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from fixtures_services import make_data_dir, unique_name
from server.waiting import eventually
from voicestream.store import db
from voicestream.store.conversation_outbox import PendingWrite
from voicestream.store.conversation_upkeep import open_conversations
from voicestream.store.workspaces import ensure_workspace

SECRET = "my bank PIN is 4921"


@pytest_asyncio.fixture(loop_scope="session")
async def outbox_dir() -> AsyncIterator[Path]:
    path = await asyncio.to_thread(make_data_dir, "voicestream-order-")
    yield path / "outbox"
    await asyncio.to_thread(shutil.rmtree, path, True)


async def _backend_waiting_on_a_lock(pool: db.Pool) -> int | None:
    pid: int | None = await pool.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%conversation_turns%' AND pid <> pg_backend_pid()"
    )
    return pid


async def test_a_write_being_queued_is_not_overtaken_by_the_next_one(
    db_pool: db.Pool, outbox_dir: Path
) -> None:
    async with db_pool.acquire() as conn:
        workspace = await ensure_workspace(conn, unique_name("order"))
    loop = asyncio.get_running_loop()
    gate = threading.Event()
    async with open_conversations(db_pool, outbox_dir=outbox_dir, heartbeat_s=60) as repo:
        cid = await repo.create(workspace, None, None, "websocket")
        async with db_pool.acquire() as locker:
            async with locker.transaction():
                await locker.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", cid)
                first = asyncio.create_task(repo.add_turn(cid, "user", "first"))
                backend = await eventually(
                    lambda: _backend_waiting_on_a_lock(db_pool), what="first write blocked"
                )
                # Every worker thread busy: the first write's outbox append, which runs in
                # one, waits until the gate opens, as a slow disk would make it.
                busy = [
                    loop.run_in_executor(None, gate.wait, 30)
                    for _ in range(min(32, (os.cpu_count() or 1) + 4))
                ]
                # Its connection lost mid-write: the first write goes to the outbox.
                await locker.execute("SELECT pg_terminate_backend($1)", backend)
            # The database is fine again for the second write, made while the first is
            # still on its way into the outbox.
            second = asyncio.create_task(repo.add_turn(cid, "agent", "second"))
            await asyncio.wait({second}, timeout=2)  # time to overtake, if it could
            gate.set()
            await asyncio.gather(*busy)
        assert await first is None

        async def stored() -> list[str]:
            rows = await db_pool.fetch(
                "SELECT text FROM conversation_turns WHERE conversation_id = $1 ORDER BY seq",
                cid,
            )
            return [r["text"] for r in rows] if len(rows) == 2 else []

        assert await eventually(stored, what="both turns stored") == ["first", "second"]
        await second


async def test_a_write_the_outbox_drops_is_logged_without_its_text(
    db_pool: db.Pool, outbox_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Left behind by a process that died (pid 0 never runs): adopted and replayed at start.
    unstorable = PendingWrite.new("turn", "not-a-conversation-id", role="user", text=SECRET)
    await asyncio.to_thread(outbox_dir.mkdir, parents=True)
    await asyncio.to_thread((outbox_dir / "conversations-0.jsonl").write_text, unstorable.to_line())

    def dropped() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "dropping" in r.getMessage()]

    async with open_conversations(db_pool, outbox_dir=outbox_dir, heartbeat_s=60):
        records = await eventually(dropped, what="the unstorable write dropped")
    message = records[0].getMessage()
    assert unstorable.write_id in message and SECRET not in message, message
    caplog.clear()
