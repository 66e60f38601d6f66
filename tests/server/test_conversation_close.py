"""Closing a conversation: every step runs, whichever one fails."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import redis.asyncio
from aiohttp import web

from server.waiting import eventually
from voicestream.rest.resources import AGENTS, CONVERSATIONS, REDIS


async def _nothing(*_: Any) -> None:
    """A session hook for a session that never speaks."""


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_closing_a_conversation_ends_it_even_with_redis_down(server, http) -> None:
    """The conversation row is ended first: a Redis that is gone when the client leaves must
    not leave it ``active`` forever."""
    from voicestream.pipeline.session import ConversationHooks, ConversationSession
    from voicestream.transports.convai_common import ConversationLease, session_deps

    app = server.app
    body = {"name": "desk", "voice": "slt"}
    async with http.post(f"{server.url}/v1/agents", json=body, headers=server.headers()) as r:
        assert r.status == 201, await r.text()
        created = await r.json()
    agent = await app[AGENTS].get_config(created["workspace_id"], created["id"])
    conversation_id = await app[CONVERSATIONS].create(
        agent.workspace_id, agent.id, None, "websocket"
    )
    down = redis.asyncio.Redis(port=_closed_port(), socket_connect_timeout=1)
    session = ConversationSession(
        session_deps(app, agent, silence_timeout_s=60),
        agent,
        ConversationHooks(add_turn=_nothing, remember=_nothing, save_state=_nothing),
        session_id=uuid.uuid4().hex,
        conversation_id=conversation_id,
    )
    # The server's resources, but a Redis that is gone.
    without_redis = web.Application()
    without_redis.update(app)
    without_redis[REDIS] = down
    lease = ConversationLease(without_redis, session, False, "websocket")
    try:
        await lease.close(ended=True)
    finally:
        await down.aclose()

    async def ended() -> bool:
        row = await app[CONVERSATIONS].get(agent.workspace_id, conversation_id)
        return row.status == "ended"

    await eventually(ended, what="the conversation to be ended")
