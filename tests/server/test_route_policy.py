"""A route without a policy entry stops the server at start-up, naming the route, sub-apps'
routes included; nothing is opened before."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from voicestream.server.route_policy import RouteWithoutPolicy, add_policy_check


async def _ok(request: web.Request) -> web.Response:
    return web.Response()


async def _start(app: web.Application) -> None:
    runner = web.AppRunner(app)
    try:
        await runner.setup()
    finally:
        await runner.cleanup()


async def test_a_route_without_an_entry_stops_the_start() -> None:
    opened: list[str] = []

    async def resource(app: web.Application) -> AsyncIterator[None]:
        opened.append("opened")
        yield

    app = web.Application()
    app.router.add_get("/healthz", _ok)
    app.router.add_get("/v1/agents/{agent_id}", _ok)
    app.router.add_post("/v1/secret", _ok)
    sub = web.Application()
    sub.router.add_delete("/{thing_id}", _ok)
    app.add_subapp("/v1/things", sub)
    app.cleanup_ctx.append(resource)
    add_policy_check(app)
    with pytest.raises(RouteWithoutPolicy) as refused:
        await _start(app)
    message = str(refused.value)
    assert "POST /v1/secret" in message and "DELETE /v1/things/{thing_id}" in message
    assert "/healthz" not in message and "/v1/agents" not in message
    assert opened == []


async def test_an_app_whose_routes_all_have_entries_starts() -> None:
    app = web.Application()
    app.router.add_get("/healthz", _ok)  # and its HEAD, which follows GET
    sub = web.Application()
    sub.router.add_get("/{agent_id}", _ok)
    app.add_subapp("/v1/agents", sub)
    add_policy_check(app)
    await _start(app)
