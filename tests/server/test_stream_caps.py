"""The cap on concurrent streams per workspace (issue 9 §5), counted in Redis across processes:
exactly the cap admitted from a simultaneous rush, the rest refused in their transport's way
(429 before the upgrade; ElevenLabs' error event and 1013 where the key comes inside the
socket), a closed stream's slot free again, and a dead holder's slots lapsing by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

import aiohttp
import pytest

from fixtures_services import unique_name
from helpers import StartedServer, settings_for_test_server, start_test_server
from server.waiting import eventually
from voicestream.engines.catalog import EngineRegistry
from voicestream.rest.resources import POOL, REDIS
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKeyRepository
from voicestream.store.stream_leases import StreamLeases

CAP = 2
LEASE_S = 1.0


@dataclass(frozen=True)
class Capped:
    server: StartedServer

    async def new_workspace_key(self) -> tuple[UUID, str]:
        """(workspace id, owner key) of a fresh workspace: all its slots free."""
        repo = ApiKeyRepository(self.server.app[POOL])
        api_key, key = await repo.create(workspace=unique_name("streams"), role="owner")
        return api_key.workspace_id, key


@pytest.fixture(scope="module")
async def capped(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Capped]:
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("streams"),
        max_streams_per_workspace=CAP,
        stream_lease_seconds=LEASE_S,
    )
    async with start_test_server(settings, registry) as started:
        yield Capped(started)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _tts_socket(
    s: aiohttp.ClientSession, server: StartedServer, key: str
) -> aiohttp.ClientWebSocketResponse:
    return await s.ws_connect(
        f"{server.ws_url}/v1/tts/stream", params={"voice": "slt"}, headers=_auth(key)
    )


async def _close_all(sockets: list[aiohttp.ClientWebSocketResponse]) -> None:
    for ws in sockets:
        await ws.close()


async def test_a_rush_of_sockets_admits_exactly_the_cap(capped: Capped) -> None:
    _, key = await capped.new_workspace_key()
    _, other_key = await capped.new_workspace_key()
    async with aiohttp.ClientSession() as s:
        results = await asyncio.gather(
            *(_tts_socket(s, capped.server, key) for _ in range(CAP + 3)),
            return_exceptions=True,
        )
        opened = [r for r in results if isinstance(r, aiohttp.ClientWebSocketResponse)]
        refused = [r for r in results if isinstance(r, aiohttp.WSServerHandshakeError)]
        try:
            assert len(opened) == CAP and len(refused) == 3, results
            for err in refused:
                assert err.status == 429
                assert err.headers is not None and int(err.headers["Retry-After"]) >= 1
            # Streaming HTTP of the same workspace is refused too, before any audio.
            async with s.post(
                f"{capped.server.url}/v1/tts",
                json={"text": "Hello there.", "voice": "slt", "format": "pcm_16000"},
                headers=_auth(key),
            ) as r:
                assert r.status == 429, await r.text()
                assert (await r.json())["error"]["code"] == "rate_limited"
                assert int(r.headers["Retry-After"]) >= 1
            # Another workspace is not affected.
            other = await _tts_socket(s, capped.server, other_key)
            await other.close()
            # Closing one frees its slot for the next.
            await opened.pop().close()

            async def admitted() -> bool:
                try:
                    opened.append(await _tts_socket(s, capped.server, key))
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 429
                    return False
                return True

            await eventually(admitted, within=10, every=0.1, what="a slot freed by a close")
        finally:
            await _close_all(opened)


async def test_a_key_inside_the_socket_is_refused_in_its_protocol(capped: Capped) -> None:
    """ElevenLabs' stream-input learns its key from the first message, after the upgrade: the
    refusal is its error event and close 1013 (try again later)."""
    _, key = await capped.new_workspace_key()
    async with aiohttp.ClientSession() as s:
        held = [await _tts_socket(s, capped.server, key) for _ in range(CAP)]
        try:
            url = (
                f"{capped.server.ws_url}/elevenlabs/v1/text-to-speech/slt/stream-input"
                "?output_format=pcm_16000"
            )
            async with s.ws_connect(url) as ws:
                await ws.send_json({"text": " ", "xi_api_key": key})
                messages = [
                    json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT
                ]
                assert ws.close_code == 1013, (ws.close_code, messages)
            assert [m.get("error") for m in messages] == ["rate_limited"], messages
        finally:
            await _close_all(held)


async def test_the_slots_of_a_dead_holder_lapse(capped: Capped) -> None:
    """A process that dies holding slots stops renewing them; they lapse within a lease time
    and the workspace can stream again, without anyone releasing them."""
    workspace_id, key = await capped.new_workspace_key()
    rt = capped.server.app
    # Another process's leases, as its crash leaves them: held, never renewed or released.
    dead = StreamLeases(rt[REDIS], lease_s=LEASE_S)
    for _ in range(CAP):
        assert await dead.acquire(workspace_id, CAP) is not None
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await _tts_socket(s, capped.server, key)
        assert refused.value.status == 429
        opened: list[aiohttp.ClientWebSocketResponse] = []

        async def admitted() -> bool:
            with contextlib.suppress(aiohttp.WSServerHandshakeError):
                opened.append(await _tts_socket(s, capped.server, key))
            return bool(opened)

        try:
            await eventually(admitted, within=LEASE_S + 10, every=0.2, what="dead slots lapsed")
        finally:
            await _close_all(opened)


async def test_a_live_holder_keeps_its_slot_past_the_lease_time(capped: Capped) -> None:
    """Renewal: a socket open for several lease times still holds its slot."""
    workspace_id, key = await capped.new_workspace_key()
    leases = StreamLeases(capped.server.app[REDIS], lease_s=LEASE_S)
    async with aiohttp.ClientSession() as s:
        ws = await _tts_socket(s, capped.server, key)
        try:
            await eventually(
                lambda: leases.count(workspace_id),
                what="the socket's lease",
            )
            checks = 0

            async def still_held_after_three_lease_times() -> bool:
                nonlocal checks
                checks += 1
                assert await leases.count(workspace_id) == 1
                return checks * 0.25 > 3 * LEASE_S

            await eventually(still_held_after_three_lease_times, within=10, every=0.25)
        finally:
            await ws.close()
        await eventually(lambda: _is_zero(leases, workspace_id), what="the slot released on close")


async def _is_zero(leases: StreamLeases, workspace_id: UUID) -> bool:
    return await leases.count(workspace_id) == 0
