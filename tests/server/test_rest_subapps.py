"""The REST domains are aiohttp sub-apps, each owning its prefix (issue 9 §0), and mounting them
so changed nothing a client or an operator sees: the root app's middlewares (errors, auth,
metrics) still run for their routes, unknown paths and methods under a sub-app's prefix still
answer the JSON error shape, and metrics still label routes by their full canonical path."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from aiohttp.web_urldispatcher import PrefixedSubAppResource

from voicestream.config import load_settings
from voicestream.server.app import create_app

# Fixed, not random: xdist workers must collect the same parameter ids.
_SOME_ID = "5b0e6a2e-8f3c-4d1a-9c2b-7e4f1a6d3c90"

SUB_APP_PREFIXES = {
    "/v1/agents",
    "/v1/api-keys",
    "/v1/audit-logs",
    "/v1/auth",
    "/v1/convai/sessions",
    "/v1/invitations",
    "/v1/usage",
    "/v1/workspaces",
}


def _root_routes(app: web.Application) -> list[str]:
    return [
        resource.canonical
        for resource in app.router.resources()
        if not isinstance(resource, PrefixedSubAppResource)
    ]


def test_each_rest_domain_is_a_sub_app_owning_its_prefix() -> None:
    app = create_app(load_settings({}))  # composed, not started: only its router is read
    mounted = {
        resource.canonical
        for resource in app.router.resources()
        if isinstance(resource, PrefixedSubAppResource)
    }
    assert SUB_APP_PREFIXES <= mounted
    # A root route under a sub-app's prefix would be shadowed by the sub-app's own 404.
    stray = [
        path
        for path in _root_routes(app)
        for prefix in mounted
        if path == prefix or path.startswith(prefix + "/")
    ]
    assert stray == []


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", f"/v1/agents/{_SOME_ID}/nothing", 404, "not_found"),
        ("GET", "/v1/agents/", 404, "not_found"),
        ("PUT", "/v1/agents", 405, "method_not_allowed"),
        ("DELETE", "/v1/auth/login", 405, "method_not_allowed"),
        ("GET", "/v1/auth/nothing", 404, "not_found"),
        ("GET", f"/v1/workspaces/{_SOME_ID}/nothing", 404, "not_found"),
        ("POST", "/v1/invitations/nothing", 404, "not_found"),
        ("GET", "/v1/convai/sessions/a/b", 404, "not_found"),
    ],
)
async def test_unknown_paths_and_methods_under_a_sub_app_are_json(
    server, method: str, path: str, status: int, code: str
) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, f"{server.url}{path}", headers=server.headers()) as r,
    ):
        assert r.status == status, await r.text()
        assert r.content_type == "application/json"
        assert (await r.json())["error"]["code"] == code


async def test_root_middlewares_run_for_sub_app_routes(server) -> None:
    async with aiohttp.ClientSession() as s:
        # Auth (a root middleware) refuses before the sub-app's handler runs.
        async with s.get(f"{server.url}/v1/agents") as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "unauthorized"
        async with s.get(f"{server.url}/v1/agents", headers=server.headers()) as r:
            assert r.status == 200, await r.text()
        async with s.get(f"{server.url}/v1/convai/sessions", headers=server.headers()) as r:
            assert r.status == 200, await r.text()
        async with s.get(f"{server.url}/metrics") as r:
            text = await r.text()
    # The metrics middleware labels a sub-app's route by its full path, prefix included.
    for route in ("/v1/agents", "/v1/convai/sessions"):
        assert f'voicestream_http_requests_total{{route="{route}",status="200"}}' in text
    assert 'voicestream_http_requests_total{route="/v1/agents",status="401"}' in text
