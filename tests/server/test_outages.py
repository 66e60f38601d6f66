"""Outages of the embedded PostgreSQL and Redis, for real: ``kill -9`` of the very processes.

A server of its own (its own data dir, so its own embedded services; the session's services
are never touched) is killed under. While a service is down every request that needs it gets
503 JSON with ``Retry-After``; the supervisor restarts it and the server recovers by itself;
conversation turns written meanwhile are stored once it is back, in order. Holding the data
dir's lock keeps the supervisor from restarting a service, which makes an outage last exactly
as long as a test needs it to.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from aiohttp import web

from fakes.openai_server import FakeOpenAI
from fixtures_services import make_data_dir
from helpers import start_test_server
from server.convai_client import ConvaiClient
from server.waiting import eventually
from voicestream.config import load_settings
from voicestream.engines.catalog import EngineRegistry
from voicestream.rest.resources import POOL
from voicestream.store import db
from voicestream.store._leases import DirLock
from voicestream.store._proc import pid_alive

HEARTBEAT_S = 0.5


@dataclass(frozen=True)
class OutageServer:
    url: str
    ws_url: str
    app: web.Application
    data_dir: Path
    api_key: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def pool(self) -> db.Pool:
        return self.app[POOL]

    def restarts_held(self) -> DirLock:
        """While held, the supervisor cannot restart anything: the outage lasts."""
        return DirLock(self.data_dir / "run" / "lock")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def outage_server(registry: EngineRegistry) -> AsyncIterator[OutageServer]:
    data_dir = await asyncio.to_thread(make_data_dir, "voicestream-outage-")
    settings = load_settings(
        {},
        data_dir=data_dir,
        port=0,
        convai_silence_timeout_seconds=0,
        conversation_heartbeat_seconds=HEARTBEAT_S,
        webrtc_host_addresses="127.0.0.1",
    )
    try:
        async with start_test_server(settings, registry, key_workspace="outages") as started:
            yield OutageServer(started.url, started.ws_url, started.app, data_dir, started.api_key)
    finally:
        postgres = data_dir / "postgres"
        if postgres.is_symlink():  # as root the cluster may live outside the data dir
            await asyncio.to_thread(shutil.rmtree, postgres.resolve(), True)
        await asyncio.to_thread(shutil.rmtree, data_dir, True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def _service_pid(server: OutageServer, service: str) -> int:
    path = {
        "postgres": server.data_dir / "postgres" / "postmaster.pid",
        "redis": server.data_dir / "redis" / "redis.pid",
    }[service]
    pid = await asyncio.to_thread(_read_pid, path)
    assert pid is not None and await asyncio.to_thread(pid_alive, pid), f"{service} not running"
    return pid


async def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)

    async def gone() -> bool:
        return not await asyncio.to_thread(pid_alive, pid)

    await eventually(gone, within=10, what=f"process {pid} gone after SIGKILL")


async def _restarted(server: OutageServer, service: str, old_pid: int) -> None:
    async def new_pid() -> bool:
        path = {
            "postgres": server.data_dir / "postgres" / "postmaster.pid",
            "redis": server.data_dir / "redis" / "redis.pid",
        }[service]
        pid = await asyncio.to_thread(_read_pid, path)
        return pid not in (None, old_pid) and await asyncio.to_thread(pid_alive, pid)

    await eventually(new_pid, within=60, every=0.1, what=f"{service} restarted")


async def _status(
    s: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    async with s.get(url, headers=headers or {}) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, dict(r.headers), body


def _assert_unavailable(status: int, headers: dict[str, str], body: Any) -> None:
    assert status == 503, (status, body)
    assert headers["Content-Type"].startswith("application/json"), headers
    assert body["error"]["code"] == "service_unavailable", body
    assert int(headers["Retry-After"]) > 0


async def _ready(server: OutageServer, s: aiohttp.ClientSession) -> bool:
    status, _, _ = await _status(s, f"{server.url}/readyz")
    return status == 200


async def _agent(server: OutageServer, s: aiohttp.ClientSession, fake: FakeOpenAI) -> str:
    # The fake LLM echoes the user: short, predictable replies to store.
    body = {
        "name": "echo",
        "instructions": "Repeat what you hear.",
        "voice": "slt",
        "llm": {"base_url": fake.base_url, "model": "fake-model", "api_key": "sk-test"},
    }
    async with s.post(f"{server.url}/v1/agents", json=body, headers=server.headers()) as r:
        assert r.status == 201, await r.text()
        agent_id: str = (await r.json())["id"]
        return agent_id


async def _converse(
    server: OutageServer, s: aiohttp.ClientSession, fake: FakeOpenAI
) -> tuple[ConvaiClient, dict[str, Any]]:
    """A keyed conversation with a new echo agent, and its ``session`` event."""
    agent_id = await _agent(server, s, fake)
    client = ConvaiClient(
        await s.ws_connect(
            f"{server.ws_url}/v1/convai/stream",
            params={"agent_id": agent_id},
            headers=server.headers(),
        )
    )
    return client, await client.wait_event("session")


async def test_database_down_is_503_json_with_retry_after_until_restarted(
    outage_server: OutageServer,
) -> None:
    server = outage_server
    voices = f"{server.url}/v1/voices"
    async with aiohttp.ClientSession() as s:
        assert (await _status(s, voices, server.headers()))[0] == 200
        pid = await _service_pid(server, "postgres")
        async with server.restarts_held():
            await _kill(pid)
            # Every keyed request looks its key up in the database: the first one after the
            # kill already finds it gone.
            _assert_unavailable(*await _status(s, voices, server.headers()))
            status, _, body = await _status(s, f"{server.url}/readyz")
            assert status == 503 and body["checks"]["database"] is False, body
            assert (await _status(s, f"{server.url}/healthz"))[0] == 200
            # A socket is refused before its upgrade, the same way.
            try:
                await s.ws_connect(f"{server.ws_url}/v1/tts/stream", headers=server.headers())
                raise AssertionError("socket opened while the database was down")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 503
        await _restarted(server, "postgres", pid)
        await eventually(lambda: _ready(server, s), within=30, what="ready again")
        assert (await _status(s, voices, server.headers()))[0] == 200


async def test_redis_down_is_503_then_restarted(outage_server: OutageServer) -> None:
    server = outage_server
    async with FakeOpenAI() as fake, aiohttp.ClientSession() as s:
        agent_id = await _agent(server, s, fake)
        stream = f"{server.ws_url}/v1/convai/stream?agent_id={agent_id}"
        pid = await _service_pid(server, "redis")
        async with server.restarts_held():
            await _kill(pid)
            status, _, body = await _status(s, f"{server.url}/readyz")
            assert status == 503 and body["checks"]["redis"] is False, body
            # A conversation keeps its live state in Redis: it cannot start now, and says so.
            try:
                await s.ws_connect(stream, headers=server.headers())
                raise AssertionError("conversation opened while Redis was down")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 503
                assert exc.headers is not None and "Retry-After" in exc.headers
        await _restarted(server, "redis", pid)
        await eventually(lambda: _ready(server, s), within=30, what="ready again")
        client = ConvaiClient(await s.ws_connect(stream, headers=server.headers()))
        await client.wait_event("session")
        await client.close()


async def test_turns_during_a_database_outage_are_all_stored_in_order(
    outage_server: OutageServer,
) -> None:
    server = outage_server
    words = ["apple", "banana", "cherry", "damson", "elder", "fig", "grape", "hazel"]
    async with FakeOpenAI() as fake, aiohttp.ClientSession() as s:
        client, session = await _converse(server, s, fake)
        conversation_id = session["conversation_id"]

        async def say(i: int) -> None:
            await client.ws.send_json({"type": "text", "text": words[i]})
            # The agent's turn is recorded when its audio has played out ("turn end").
            await client.wait_for(
                lambda: len([e for e in client.of_type("turn") if e["state"] == "end"]) > i
            )

        await say(0)
        await say(1)
        pid = await _service_pid(server, "postgres")
        async with server.restarts_held():
            await _kill(pid)
            for i in range(2, 6):
                await say(i)
        # The database comes back while the conversation goes on: later turns queue
        # behind the earlier ones until those are stored.
        await say(6)
        await _restarted(server, "postgres", pid)
        await say(7)
        await client.ws.send_json({"type": "end"})
        await client.closed()
        assert not client.of_type("error"), client.events

        async def stored() -> list[Any]:
            try:
                rows = await server.pool.fetch(
                    "SELECT t.seq, t.role, t.text FROM conversation_turns t "
                    "JOIN conversations c ON c.id = t.conversation_id "
                    "WHERE t.conversation_id = $1 AND c.status = 'ended' ORDER BY t.seq",
                    conversation_id,
                )
            except Exception:  # still recovering
                return []
            return rows if len(rows) == 2 * len(words) else []

        rows = await eventually(stored, within=30, every=0.2, what="every turn stored")
    assert [r["seq"] for r in rows] == list(range(1, 2 * len(words) + 1))
    assert [r["role"] for r in rows] == ["user", "agent"] * len(words)
    assert [r["text"] for r in rows[::2]] == words
    assert all(word in r["text"].lower() for word, r in zip(words, rows[1::2], strict=True))


def _block_outbox(data_dir: Path) -> None:
    outbox = data_dir / "outbox"
    if outbox.exists():
        os.replace(outbox, data_dir / "outbox.moved")
    outbox.write_text("not a directory: every outbox write fails")


def _unblock_outbox(data_dir: Path) -> None:
    outbox = data_dir / "outbox"
    outbox.unlink(missing_ok=True)
    if (data_dir / "outbox.moved").exists():
        os.replace(data_dir / "outbox.moved", outbox)


async def test_a_turn_that_cannot_be_kept_anywhere_is_reported_to_the_client(
    outage_server: OutageServer,
) -> None:
    server = outage_server
    async with FakeOpenAI() as fake, aiohttp.ClientSession() as s:
        client, _ = await _converse(server, s, fake)
        pid = await _service_pid(server, "postgres")
        async with server.restarts_held():
            await _kill(pid)
            await asyncio.to_thread(_block_outbox, server.data_dir)
            try:
                await client.ws.send_json({"type": "text", "text": "lost"})
                error = await client.wait_event("error")
            finally:
                await asyncio.to_thread(_unblock_outbox, server.data_dir)
        assert error["code"] == "service_unavailable", error
        await _restarted(server, "postgres", pid)
        await client.close()
        await eventually(lambda: _ready(server, s), within=30, what="ready again")


async def test_stale_active_conversations_are_swept_live_ones_kept(
    outage_server: OutageServer,
) -> None:
    server = outage_server
    pool = server.pool
    workspace = await pool.fetchval("SELECT id FROM workspaces WHERE name = 'outages'")
    # What a server killed mid-conversation leaves behind: active, last seen long ago.
    stale = await pool.fetchval(
        "INSERT INTO conversations (workspace_id, transport, started_at, last_seen_at) "
        "VALUES ($1, 'websocket', now() - interval '2 hours', now() - interval '1 hour') "
        "RETURNING id",
        workspace,
    )
    async with FakeOpenAI() as fake, aiohttp.ClientSession() as s:
        client, session = await _converse(server, s, fake)
        live = session["conversation_id"]
        first_seen = await pool.fetchval(
            "SELECT last_seen_at FROM conversations WHERE id = $1", live
        )

        async def swept() -> Any:
            row = await pool.fetchrow(
                "SELECT status, ended_at, last_seen_at FROM conversations WHERE id = $1", stale
            )
            return row if row["status"] != "active" else None

        row = await eventually(swept, within=10, what="stale conversation closed")
        assert row["status"] == "abandoned" and row["ended_at"] == row["last_seen_at"]

        async def heartbeat_seen() -> bool:
            seen = await pool.fetchval("SELECT last_seen_at FROM conversations WHERE id = $1", live)
            return bool(seen > first_seen)

        # The open conversation is kept fresh, so no sweep ever takes it for dead.
        await eventually(heartbeat_seen, within=10, what="live conversation heartbeat")
        assert await pool.fetchval("SELECT status FROM conversations WHERE id = $1", live) == (
            "active"
        )
        await client.close()
