"""The conversation upkeep loops (outbox replay, heartbeat and sweep) outlive their failures:
one that ended would leave queued turns unstored, or live conversations swept as abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import pytest
import pytest_asyncio

from fixtures_services import make_data_dir, unique_name
from server.waiting import eventually
from voicestream.store import db
from voicestream.store._proc import free_port
from voicestream.store.conversation_upkeep import open_conversations
from voicestream.store.embedded import ServiceURLs
from voicestream.store.workspaces import ensure_workspace


@pytest_asyncio.fixture(loop_scope="session")
async def outbox_dir() -> AsyncIterator[Path]:
    path = await asyncio.to_thread(make_data_dir, "voicestream-upkeep-")
    yield path / "outbox"
    await asyncio.to_thread(shutil.rmtree, path, True)


def _task(name: str) -> asyncio.Task[object]:
    return next(t for t in asyncio.all_tasks() if t.get_name() == name)


def _errors(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and r.levelno >= logging.ERROR]


async def test_replay_goes_on_after_the_outbox_rewrite_fails(
    embedded_services: ServiceURLs, outbox_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A database nobody answers on: every write is queued, every replay attempt fails.
    parts = urlsplit(embedded_services.database_url)
    dead = parts._replace(netloc=f"{parts.username}@127.0.0.1:{free_port()}")
    pool = await db.create_pool(urlunsplit(dead), min_size=0, connect_timeout_s=2)
    # The replay rewrites the outbox through this temporary file: a directory there makes
    # that rewrite fail with an OSError, like a full or read-only disk would.
    (outbox_dir / f".conversations-{os.getpid()}.jsonl.tmp").mkdir(parents=True)
    try:
        async with open_conversations(pool, outbox_dir=outbox_dir, heartbeat_s=60) as repo:
            assert await repo.add_turn(uuid4(), "user", "queued while down") is None
            logger = "voicestream.store.conversation_upkeep"
            await eventually(lambda: _errors(caplog, logger), within=10, what="replay failure")
            assert not _task("conversation-outbox").done()
            failures = len(_errors(caplog, logger))
            # It backs off and tries again rather than giving up on the queued write.
            await eventually(
                lambda: len(_errors(caplog, logger)) > failures, within=10, what="a retry"
            )
    finally:
        await db.close_pool(pool)
    caplog.clear()


async def test_heartbeat_goes_on_after_a_database_error(
    embedded_services: ServiceURLs,
    db_pool: db.Pool,
    outbox_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A short statement timeout turns a heartbeat blocked on a locked row into an error.
    pool = await db.create_pool(embedded_services.database_url, statement_timeout_s=0.2)
    async with db_pool.acquire() as conn:
        workspace = await ensure_workspace(conn, unique_name("upkeep"))
    try:
        async with open_conversations(pool, outbox_dir=outbox_dir, heartbeat_s=0.1) as repo:
            cid = await repo.create(workspace, None, None, "websocket")

            async def seen() -> object:
                return await db_pool.fetchval(
                    "SELECT last_seen_at FROM conversations WHERE id = $1", cid
                )

            async with db_pool.acquire() as locker, locker.transaction():
                await locker.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", cid)
                logger = "voicestream.store.conversation_upkeep"
                await eventually(lambda: _errors(caplog, logger), within=10, what="a timeout")
                before = await seen()
            assert not _task("conversation-upkeep").done()

            async def beaten() -> bool:
                return bool(await seen() > before)

            await eventually(beaten, within=10, what="a heartbeat after the errors")
    finally:
        await db.close_pool(pool)
    caplog.clear()
