"""Monthly quotas and ``GET /v1/usage`` (issue 9 §5).

A server of its own with a small character quota: concurrent TTS requests never overshoot it
together, a workspace past it is refused on HTTP TTS, on the TTS socket (before the upgrade)
and on ElevenLabs' socket whose key comes inside (its error event, close 4402), and another
workspace is unaffected. The usage listing pages through a workspace's own records only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import aiohttp
import pytest

from fixtures_services import unique_name
from helpers import StartedServer, settings_for_test_server, start_test_server
from voicestream.engines.catalog import EngineRegistry
from voicestream.rest.resources import POOL, USAGE
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKeyRepository

QUOTA_CHARS = 20
TEXT = "Hello."  # 6 characters: three fit in the quota, a fourth does not


@dataclass(frozen=True)
class Metered:
    server: StartedServer

    async def key(self, workspace: str | None = None) -> tuple[UUID, UUID, str]:
        """(workspace id, key id, key) of a new owner key, in a fresh workspace by default."""
        repo = ApiKeyRepository(self.server.app[POOL])
        api_key, key = await repo.create(workspace=workspace or unique_name("usage"), role="owner")
        return api_key.workspace_id, api_key.id, key


@pytest.fixture(scope="module")
async def metered(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Metered]:
    settings = settings_for_test_server(
        embedded_services, tmp_path_factory.mktemp("usage"), quota_tts_characters=QUOTA_CHARS
    )
    async with start_test_server(settings, registry) as started:
        yield Metered(started)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _tts(s: aiohttp.ClientSession, url: str, key: str, text: str) -> tuple[int, Any]:
    body = {"text": text, "voice": "slt", "format": "pcm_16000"}
    async with s.post(f"{url}/v1/tts", json=body, headers=_auth(key)) as r:
        if r.status == 200:
            return 200, await r.read()
        return r.status, await r.json()


async def _usage(s: aiohttp.ClientSession, url: str, key: str, **query: Any) -> tuple[int, Any]:
    async with s.get(f"{url}/v1/usage", params=query, headers=_auth(key)) as r:
        return r.status, await r.json()


async def test_concurrent_tts_never_overshoots_the_character_quota(metered: Metered) -> None:
    url = metered.server.url
    _, _, key = await metered.key()
    _, _, other_key = await metered.key()
    async with aiohttp.ClientSession() as s:
        results = await asyncio.gather(*(_tts(s, url, key, TEXT) for _ in range(6)))
        statuses = sorted(status for status, _ in results)
        assert statuses == [200, 200, 200, 402, 402, 402], statuses
        for status, body in results:
            if status == 402:
                assert body["error"]["code"] == "quota_exceeded", body
                assert body["error"]["details"]["limit"] == QUOTA_CHARS
        assert all(audio for status, audio in results if status == 200)
        status, page = await _usage(s, url, key)
        assert status == 200, page
        assert [g["tts_characters"] for g in page["data"]] == [3 * len(TEXT)], page
        assert {"kind": "tts_characters", "limit": QUOTA_CHARS} in page["quotas"]

        # What still fits is served; then the quota is used up, everywhere.
        assert (await _tts(s, url, key, "Hi"))[0] == 200
        status, body = await _tts(s, url, key, "Hi")
        assert status == 402 and body["error"]["code"] == "quota_exceeded", body
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(f"{metered.server.ws_url}/v1/tts/stream", headers=_auth(key))
        assert refused.value.status == 402
        el_url = (
            f"{metered.server.ws_url}/elevenlabs/v1/text-to-speech/slt/stream-input"
            "?output_format=pcm_16000"
        )
        async with s.ws_connect(el_url) as ws:
            await ws.send_json({"text": " ", "xi_api_key": key})
            texts = [m.data async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
            assert ws.close_code == 4402, (ws.close_code, texts)
        assert [json.loads(t).get("error") for t in texts] == ["quota_exceeded"], texts

        # Another workspace has its own quota.
        assert (await _tts(s, url, other_key, TEXT))[0] == 200
        ws = await s.ws_connect(f"{metered.server.ws_url}/v1/tts/stream", headers=_auth(other_key))
        await ws.close()


async def test_usage_pages_by_key_and_by_day(metered: Metered) -> None:
    url = metered.server.url
    workspace = unique_name("usage-pages")
    workspace_id, first_id, key = await metered.key(workspace)
    _, second_id, _ = await metered.key(workspace)
    _, _, stranger = await metered.key()
    usage = metered.server.app[USAGE]
    await usage.record((workspace_id, first_id), "tts_characters", 100)
    await usage.record((workspace_id, first_id), "stt_seconds", 2.5)
    await usage.record((workspace_id, second_id), "conversation_seconds", 90)
    await usage.record((workspace_id, None), "tts_characters", 7)  # a session's, no key
    async with aiohttp.ClientSession() as s:
        status, first = await _usage(s, url, key, group_by="key", limit=2)
        assert status == 200, first
        assert first["group_by"] == "key" and first["workspace_id"] == str(workspace_id)
        assert len(first["data"]) == 2 and first["next_cursor"]
        status, second = await _usage(
            s, url, key, group_by="key", limit=2, cursor=first["next_cursor"]
        )
        assert status == 200, second
        assert len(second["data"]) == 1 and second["next_cursor"] is None
        groups = {g["key_id"]: g for g in first["data"] + second["data"]}
        assert groups.keys() == {None, str(first_id), str(second_id)}
        assert first["data"][0]["key_id"] is None  # usage of no key comes first
        assert groups[str(first_id)]["tts_characters"] == 100
        assert groups[str(first_id)]["stt_seconds"] == 2.5
        assert groups[str(second_id)]["conversation_seconds"] == 90
        assert groups[None]["tts_characters"] == 7

        status, by_day = await _usage(s, url, key, group_by="day")
        assert status == 200, by_day
        today = datetime.now(UTC).date().isoformat()
        assert [(g["day"], g["tts_characters"]) for g in by_day["data"]] == [(today, 107)]

        status, old = await _usage(s, url, key, since="2000-01-01", until="2000-02-01T00:00:00Z")
        assert status == 200 and old["data"] == [] and old["next_cursor"] is None, old
        # Another workspace sees none of it.
        status, theirs = await _usage(s, url, stranger, group_by="key")
        assert status == 200 and theirs["data"] == [], theirs


@pytest.mark.parametrize(
    "query",
    [
        {"group_by": "week"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"since": "yesterday"},
        {"since": "2024-05-01", "until": "2024-04-01"},
        {"cursor": "not-a-cursor!"},
        {"cursor": "Zm9v"},  # base64, but not a cursor this server made
        {"page": "2"},
    ],
    ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()),
)
async def test_bad_usage_parameters_are_422(metered: Metered, query: dict[str, str]) -> None:
    _, _, key = await metered.key()
    async with aiohttp.ClientSession() as s:
        status, body = await _usage(s, metered.server.url, key, **query)
    assert status == 422, body
    assert body["error"]["code"] == "invalid_request", body
