"""Request rate limits per caller (issue 9 §5): a burst, then 429 with Retry-After and the
IETF RateLimit-* headers, no overshoot under concurrency, recovery after Retry-After, sockets
refused at the upgrade, and fail-open (with a warning) while Redis is away.

A server of its own with a small limit reaches the session's Redis through a TCP proxy the
test can cut, which is a real outage as the server sees it (connections refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import pytest

from fixtures_services import unique_name
from helpers import StartedServer, settings_for_test_server, start_test_server
from server.waiting import eventually
from voicestream.engines.catalog import EngineRegistry
from voicestream.rest.resources import POOL
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKeyRepository

PER_MINUTE = 10  # one request back every 6 s: far longer than a burst of requests takes
BURST = 4


class RedisProxy:
    """Forwards TCP connections to Redis; ``cut`` refuses and drops them until ``resume``."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def resume(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._pipes -= {writer, up_writer}


@dataclass(frozen=True)
class Limited:
    server: StartedServer
    proxy: RedisProxy

    async def new_key(self) -> str:
        """A key of its own: a fresh bucket."""
        repo = ApiKeyRepository(self.server.app[POOL])
        _, key = await repo.create(workspace=unique_name("rates"), role="owner")
        return key


@pytest.fixture(scope="module")
async def limited(
    embedded_services: ServiceURLs,
    registry: EngineRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Limited]:
    target = urlsplit(embedded_services.redis_url)
    assert target.hostname is not None and target.port is not None
    proxy = RedisProxy(target.hostname, target.port)
    await proxy.resume()
    services = ServiceURLs(embedded_services.database_url, f"redis://127.0.0.1:{proxy.port}/0")
    settings = settings_for_test_server(
        services,
        tmp_path_factory.mktemp("rates"),
        rate_limit_requests_per_minute=PER_MINUTE,
        rate_limit_burst=BURST,
    )
    async with start_test_server(settings, registry) as started:
        yield Limited(started, proxy)
    with contextlib.suppress(AssertionError):
        await proxy.cut()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _get(s: aiohttp.ClientSession, url: str, key: str) -> tuple[int, dict[str, str], object]:
    async with s.get(url, headers=_auth(key)) as r:
        return r.status, dict(r.headers), await r.json()


async def test_a_burst_past_the_limit_is_refused_exactly_then_allowed_again(
    limited: Limited,
) -> None:
    key = await limited.new_key()
    url = f"{limited.server.url}/v1/voices"
    async with aiohttp.ClientSession() as s:
        results = await asyncio.gather(*(_get(s, url, key) for _ in range(3 * BURST)))
        allowed = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] == 429]
        assert len(allowed) == BURST and len(refused) == 2 * BURST, [r[0] for r in results]
        # Informative headers on every success: the burst, counting down.
        assert {h["RateLimit-Limit"] for _, h, _ in allowed} == {str(BURST)}
        remaining = sorted(int(h["RateLimit-Remaining"]) for _, h, _ in allowed)
        assert remaining == list(range(BURST)), remaining
        for _, headers, body in refused:
            assert body["error"]["code"] == "rate_limited", body  # type: ignore[index]
            assert headers["Content-Type"].startswith("application/json")
            assert headers["RateLimit-Limit"] == str(BURST)
            assert headers["RateLimit-Remaining"] == "0"
            retry_after = int(headers["Retry-After"])
            assert 1 <= retry_after <= 60 / PER_MINUTE
            assert int(headers["RateLimit-Reset"]) >= retry_after
        wait = max(int(h["Retry-After"]) for _, h, _ in refused)

        async def allowed_again() -> bool:
            return (await _get(s, url, key))[0] == 200

        await eventually(allowed_again, within=wait + 5, every=0.5, what="allowed after waiting")
        # Each caller has its own bucket: another key was never limited.
        assert (await _get(s, url, await limited.new_key()))[0] == 200


async def test_a_socket_is_counted_and_refused_at_its_upgrade(limited: Limited) -> None:
    key = await limited.new_key()
    async with aiohttp.ClientSession() as s:
        for _ in range(BURST):
            assert (await _get(s, f"{limited.server.url}/v1/voices", key))[0] == 200
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(f"{limited.server.ws_url}/v1/tts/stream", headers=_auth(key))
        assert refused.value.status == 429
        assert refused.value.headers is not None
        assert int(refused.value.headers["Retry-After"]) >= 1
        assert refused.value.headers["RateLimit-Remaining"] == "0"


async def test_limits_fail_open_while_redis_is_away(
    limited: Limited, caplog: pytest.LogCaptureFixture
) -> None:
    """Decided: a Redis outage must not take the API down with it (server/rate_limits.py)."""
    key = await limited.new_key()
    url = f"{limited.server.url}/v1/voices"
    caplog.set_level(logging.WARNING, logger="voicestream.transports.stream_admission")
    async with aiohttp.ClientSession() as s:
        await limited.proxy.cut()
        try:
            for _ in range(BURST + 2):  # past the burst: nothing counts them now
                status, headers, _ = await _get(s, url, key)
                assert status == 200 and "RateLimit-Limit" not in headers
        finally:
            await limited.proxy.resume()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("request rate limits not enforced" in m for m in warnings), warnings

        async def counted_again() -> bool:
            _, headers, _ = await _get(s, url, key)
            return "RateLimit-Limit" in headers

        await eventually(counted_again, within=15, every=0.5, what="limits enforced again")
