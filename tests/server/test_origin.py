"""Browser-facing endpoints answer only pages of the server's own origin and the listed ones.

The test server lists ``https://shop.example`` (tests/conftest.py); every other page origin is
foreign. Requests without ``Origin`` (servers, SDKs) are unaffected.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from helpers import StartedServer, settings_for_test_server, start_test_server
from voicestream.config import ConfigError, load_settings
from voicestream.engines.catalog import EngineRegistry
from voicestream.server.origin import origin_allowed
from voicestream.store.embedded import ServiceURLs

RunningServer = Any  # tests/conftest.py's RunningServer, reached through the fixture

LISTED = "https://shop.example"
FOREIGN = "https://evil.example"
PUBLIC = "https://voice.example"

SOCKETS = [
    "/v1/tts/stream",
    "/v1/stt/stream",
    "/v1/convai/stream",
    "/openai/v1/realtime",
    "/elevenlabs/v1/text-to-speech/slt/stream-input",
    "/elevenlabs/v1/text-to-speech/slt/multi-stream-input",
    "/elevenlabs/v1/speech-to-text/realtime",
    "/elevenlabs/v1/convai/conversation",
    "/v1/telephony/twilio",
    "/v1/telephony/telnyx",
    "/v1/telephony/vonage",
]


def _upgrade_headers(origin: str) -> dict[str, str]:
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Origin": origin,
    }


async def _forbidden(response: aiohttp.ClientResponse) -> None:
    assert response.status == 403, await response.text()
    body = await response.json()
    assert body["error"]["code"] == "forbidden"
    assert "VOICESTREAM_ALLOWED_ORIGINS" in body["error"]["message"]


@pytest.mark.parametrize("path", SOCKETS)
async def test_a_foreign_page_cannot_open_any_socket(server: RunningServer, path: str) -> None:
    async with aiohttp.ClientSession() as s:
        # Refused before the upgrade, with a key or without one.
        async with s.get(
            f"{server.url}{path}", headers={**_upgrade_headers(FOREIGN), **server.headers()}
        ) as r:
            await _forbidden(r)
        async with s.get(f"{server.url}{path}", headers=_upgrade_headers("null")) as r:
            await _forbidden(r)


async def test_own_listed_and_originless_clients_open_sockets(server: RunningServer) -> None:
    url = f"{server.ws_url}/v1/tts/stream"
    async with aiohttp.ClientSession() as s:
        for origin in (server.url, LISTED, LISTED.upper() + "/", None):
            async with s.ws_connect(url, headers=server.headers(), origin=origin) as ws:
                await ws.send_json({"type": "text", "text": "Hi."})
                await ws.send_json({"type": "end"})
                frames = [m async for m in ws if m.type == aiohttp.WSMsgType.BINARY]
            assert frames and ws.close_code == 1000, origin
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(url, headers=server.headers(), origin=FOREIGN)
        assert refused.value.status == 403


async def test_the_widget_and_webrtc_signalling_check_the_origin(server: RunningServer) -> None:
    offer = f"{server.url}/v1/convai/webrtc/offer"
    preflight = {"Access-Control-Request-Method": "POST"}
    async with aiohttp.ClientSession() as s:
        for origin in (FOREIGN, "null", "https://shop.example.evil.example"):
            for path in ("/widget.js", "/demo"):
                async with s.get(f"{server.url}{path}", headers={"Origin": origin}) as r:
                    await _forbidden(r)
            async with s.options(offer, headers={"Origin": origin, **preflight}) as r:
                await _forbidden(r)
            async with s.post(offer, json={}, headers={"Origin": origin}) as r:
                await _forbidden(r)
        for origin in (server.url, LISTED, None):
            headers = {"Origin": origin} if origin else {}
            async with s.get(f"{server.url}/widget.js", headers=headers) as r:
                assert r.status == 200
            async with s.options(offer, headers={**headers, **preflight}) as r:
                assert r.status == 204
            # Past the origin check: the empty offer is the handler's validation error.
            async with s.post(offer, json={}, headers=headers) as r:
                assert r.status == 422


@pytest.mark.parametrize(
    ("origin", "hosts", "allowed", "ok"),
    [
        ("http://127.0.0.1:8080", ["127.0.0.1:8080"], frozenset(), True),
        ("https://voice.example", ["voice.example"], frozenset(), True),
        ("https://voice.example", ["voice.example:443"], frozenset(), True),
        ("http://voice.example", ["voice.example:8080"], frozenset(), False),
        ("http://[::1]:8080", ["[::1]:8080"], frozenset(), True),
        # Behind a proxy the Host is the upstream's; the forwarded host is the page's.
        ("https://voice.example", ["10.0.0.5:8080", "voice.example"], frozenset(), True),
        ("https://voice.example.evil", ["voice.example"], frozenset(), False),
        ("https://evil.example", ["voice.example"], frozenset({"https://shop.example"}), False),
        ("https://shop.example/", ["voice.example"], frozenset({"https://shop.example"}), True),
        ("https://anything.example", ["voice.example"], frozenset({"*"}), True),
        ("null", ["voice.example"], frozenset(), False),
        ("http://voice.example/path", ["voice.example"], frozenset(), False),
        ("http://voice.example:99999", ["voice.example"], frozenset(), False),
    ],
)
def test_origin_rules(origin: str, hosts: list[str], allowed: frozenset[str], ok: bool) -> None:
    assert origin_allowed(origin, hosts, allowed) is ok


def test_allowed_origins_setting_is_normalized_and_checked() -> None:
    env = {"VOICESTREAM_ALLOWED_ORIGINS": " https://A.example/ ,http://b.example:8080,, "}
    assert load_settings(env).allowed_origins == "https://a.example,http://b.example:8080"
    assert load_settings({"VOICESTREAM_ALLOWED_ORIGINS": "*"}).allowed_origins == "*"
    for bad in ("a.example", "ftp://a.example", "https://a.example/app"):
        with pytest.raises(ConfigError, match="VOICESTREAM_ALLOWED_ORIGINS"):
            load_settings({"VOICESTREAM_ALLOWED_ORIGINS": bad})


@pytest.fixture(scope="module")
async def behind_proxy(
    embedded_services: ServiceURLs, registry: EngineRegistry, tmp_path_factory: Any
) -> AsyncIterator[StartedServer]:
    """A server told to believe its proxy's X-Forwarded-Host/-Proto."""
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("behind-proxy"),
        trust_forwarded_headers=True,
    )
    async with start_test_server(settings, registry) as started:
        yield started


@pytest.fixture(scope="module")
async def public_origin(
    embedded_services: ServiceURLs, registry: EngineRegistry, tmp_path_factory: Any
) -> AsyncIterator[StartedServer]:
    """A server told the one origin its pages are served from."""
    settings = settings_for_test_server(
        embedded_services,
        tmp_path_factory.mktemp("public-origin"),
        public_origin=PUBLIC,
        allowed_origins=LISTED,
    )
    async with start_test_server(settings, registry) as started:
        yield started


async def _widget_status(url: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/widget.js", headers=headers) as r:
        if r.status == 403:
            await _forbidden(r)
        return r.status


async def test_a_spoofed_forwarded_host_is_not_believed_by_default(server: RunningServer) -> None:
    # A client (or a proxy that passes the header through) names the foreign page's host.
    for forwarded in (
        {"X-Forwarded-Host": "evil.example"},
        {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
    ):
        headers = {"Origin": FOREIGN, **forwarded}
        assert await _widget_status(server.url, headers) == 403
        async with aiohttp.ClientSession() as s:
            url = f"{server.url}/v1/tts/stream"
            async with s.get(url, headers={**_upgrade_headers(FOREIGN), **forwarded}) as r:
                await _forbidden(r)


async def test_a_trusted_proxy_s_forwarded_host_and_proto_name_the_origin(
    behind_proxy: StartedServer,
) -> None:
    proxied = {"X-Forwarded-Host": "voice.example", "X-Forwarded-Proto": "https"}
    assert await _widget_status(behind_proxy.url, {"Origin": PUBLIC, **proxied}) == 200
    assert await _widget_status(behind_proxy.url, {"Origin": FOREIGN, **proxied}) == 403
    # The proxy was reached over https: a plain-http page of that host is another origin.
    assert (
        await _widget_status(behind_proxy.url, {"Origin": "http://voice.example", **proxied}) == 403
    )
    # Without a proto the forwarded host is compared with the page's scheme's default port.
    forwarded_host = {"X-Forwarded-Host": "voice.example"}
    assert await _widget_status(behind_proxy.url, {"Origin": PUBLIC, **forwarded_host}) == 200
    # The Host the browser sent still counts.
    assert await _widget_status(behind_proxy.url, {"Origin": behind_proxy.url}) == 200


async def test_a_configured_public_origin_replaces_the_host(public_origin: StartedServer) -> None:
    url = public_origin.url
    assert await _widget_status(url, {"Origin": PUBLIC}) == 200
    assert await _widget_status(url, {"Origin": LISTED}) == 200
    # Host is no longer consulted, nor a forwarded host (trust is off).
    assert await _widget_status(url, {"Origin": url}) == 403
    assert await _widget_status(url, {"Origin": FOREIGN, "X-Forwarded-Host": "evil.example"}) == 403
    assert await _widget_status(url, {}) == 200  # no Origin: not a page


def test_public_origin_setting_is_one_origin() -> None:
    env = {"VOICESTREAM_PUBLIC_ORIGIN": "https://Voice.example/"}
    assert load_settings(env).public_origin == PUBLIC
    for bad in ("*", "https://a.example,https://b.example", "voice.example"):
        with pytest.raises(ConfigError, match="VOICESTREAM_PUBLIC_ORIGIN"):
            load_settings({"VOICESTREAM_PUBLIC_ORIGIN": bad})
    assert load_settings({}).trust_forwarded_headers is False
