"""Every endpoint but health and metrics needs a valid, unrevoked key."""

from __future__ import annotations

import aiohttp
import pytest

from voicestream.rest.resources import POOL
from voicestream.store.keys import ApiKeyRepository


async def _status(s: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[int, dict]:
    async with s.get(url, headers=headers) as r:
        return r.status, await r.json()


async def test_missing_key_is_401_with_json_error(server) -> None:
    async with aiohttp.ClientSession() as s:
        status, body = await _status(s, f"{server.url}/v1/voices", {})
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert "Authorization" in body["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer vs_notarealkeyatall000000000000000000000000"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"xi-api-key": "garbage"},
    ],
)
async def test_invalid_keys_are_401(server, headers: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as s:
        status, body = await _status(s, f"{server.url}/v1/voices", headers)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"


async def test_bearer_and_xi_api_key_both_work(server) -> None:
    async with aiohttp.ClientSession() as s:
        status, body = await _status(s, f"{server.url}/v1/voices", server.headers())
        assert status == 200 and body["voices"]
        status, _ = await _status(s, f"{server.url}/v1/voices", {"xi-api-key": server.api_key})
        assert status == 200


async def test_revoked_key_stops_working_everywhere(server) -> None:
    repo = ApiKeyRepository(server.app[POOL])
    record, key = await repo.create(workspace="revocation", role="viewer")
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as s:
        assert (await _status(s, f"{server.url}/v1/voices", headers))[0] == 200
        await repo.revoke(record.prefix)
        status, body = await _status(s, f"{server.url}/v1/voices", headers)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        # Sockets are refused before the upgrade.
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await s.ws_connect(f"{server.ws_url}/v1/tts/stream", headers=headers)
        assert exc.value.status == 401


async def test_websocket_without_key_is_refused(server) -> None:
    async with aiohttp.ClientSession() as s:
        for path in ("/v1/tts/stream", "/v1/stt/stream"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await s.ws_connect(f"{server.ws_url}{path}")
            assert exc.value.status == 401


async def test_health_and_metrics_need_no_key(server) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{server.url}/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with s.get(f"{server.url}/readyz") as r:
            body = await r.json()
            assert r.status == 200, body
            assert body["checks"]["database"] and body["checks"]["redis"]
            assert any(k.startswith("engine:") for k in body["checks"])
        async with s.get(f"{server.url}/metrics") as r:
            assert r.status == 200
            text = await r.text()
    assert "voicestream_event_loop_lag_seconds" in text


async def test_browser_key_in_a_websocket_subprotocol(server) -> None:
    """Browsers cannot set socket headers: OpenAI's Realtime client offers the key as the
    subprotocol "openai-insecure-api-key.<key>" next to "realtime"."""
    url = f"{server.ws_url}/openai/v1/realtime?model=gpt-realtime"
    async with aiohttp.ClientSession() as s:
        offered = ("realtime", f"openai-insecure-api-key.{server.api_key}")
        async with s.ws_connect(url, protocols=offered) as ws:
            assert ws.protocol == "realtime"  # the key itself is never echoed back
            first = await ws.receive_json(timeout=30)
            assert first["type"] == "session.created"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(url, protocols=("realtime", "openai-insecure-api-key.vs_wrong"))
        assert refused.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as missing:
            await s.ws_connect(url, protocols=("realtime",))
        assert missing.value.status == 401
