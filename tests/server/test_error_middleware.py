"""The error middleware on its own: failures that are not the client's fault still get JSON.

A handler whose own outgoing call is refused (an LLM endpoint, a webhook target) raises
``ConnectionRefusedError``, which is also what a vanished client looks like; answering it by
re-raising made aiohttp write a plain-text 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from voicestream.server.middleware import error_middleware


async def _refused(request: web.Request) -> web.Response:
    raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)")


async def _timed_out(request: web.Request) -> web.Response:
    raise TimeoutError


@pytest_asyncio.fixture
async def bare_server() -> AsyncIterator[str]:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/refused", _refused)
    app.router.add_get("/timed-out", _timed_out)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("path", ["/refused", "/timed-out"])
async def test_a_failed_outgoing_call_is_503_json(bare_server: str, path: str) -> None:
    async with aiohttp.ClientSession() as s, s.get(bare_server + path) as r:
        assert r.status == 503, await r.text()
        assert r.content_type == "application/json"
        body = await r.json()
        assert r.headers["Retry-After"] == "2"
    assert body["error"]["code"] == "engine_unavailable"
    assert body["error"]["message"]
