"""The server operator's key and its cross-workspace views (``/v1/operator/...``).

An operator key (minted outside any workspace) reads every workspace, with member counts, live
keys, plan and usage, and nothing else: it cannot synthesize, read a workspace's routes or use
the admin console. A workspace's keys and members, owners included, get 403 on the operator's
routes, so no workspace's admin ever sees another workspace.
"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from helpers import StartedServer
from server.workspace_people import house_error, team
from voicestream.rest.resources import POOL, USAGE
from voicestream.store.keys import ApiKeyRepository
from voicestream.store.operator_keys import OperatorKeyRepository


async def _get(
    http: aiohttp.ClientSession, server: StartedServer, path: str, token: str | None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(server.url + path, headers=headers) as r:
        return r.status, await r.json()


async def _every_workspace(
    http: aiohttp.ClientSession, server: StartedServer, key: str
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    path = "/v1/operator/workspaces?limit=500"
    while True:
        status, page = await _get(http, server, path, key)
        assert status == 200, page
        found.update((w["id"], w) for w in page["workspaces"])
        if page["next_cursor"] is None:
            return found
        path = f"/v1/operator/workspaces?limit=500&cursor={page['next_cursor']}"


async def test_an_operator_key_sees_every_workspace_and_acts_in_none(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, first, people = await team(server)
    _, second, _ = await team(server)
    await server.app[USAGE].record(uuid.UUID(first), "tts_characters", 42)
    _, operator = await OperatorKeyRepository(server.app[POOL]).create("ops")

    seen = await _every_workspace(http, server, operator)
    assert {first, second} <= set(seen)
    for workspace_id in (first, second):
        assert seen[workspace_id]["members"] == 4, seen[workspace_id]
        assert seen[workspace_id]["plan"] == "free", seen[workspace_id]
    assert seen[first]["usage"]["tts_characters"] == 42
    assert seen[second]["usage"]["tts_characters"] == 0

    status, one = await _get(http, server, f"/v1/operator/workspaces/{first}", operator)
    assert status == 200 and one["id"] == first and one["usage"]["tts_characters"] == 42, one
    status, total = await _get(http, server, "/v1/operator/usage", operator)
    assert status == 200 and total["totals"]["tts_characters"] >= 42, total
    assert total["active_workspaces"] >= 1, total

    # Nothing inside a workspace: not the workspace routes, the admin console or synthesis.
    for path in ("/v1/voices", "/v1/usage", "/v1/admin/seats", f"/v1/workspaces/{first}"):
        status, body = await _get(http, server, path, operator)
        assert status == 403, (path, body)
        house_error(body, "forbidden")
    tts = {"text": "Hi.", "voice": "slt", "format": "pcm_16000"}
    async with http.post(server.url + "/v1/tts", json=tts, headers=server.headers(operator)) as r:
        assert r.status == 403, await r.text()

    # A workspace's owner, by key or signed in, never sees across workspaces.
    _, owner_key = await ApiKeyRepository(server.app[POOL]).create(
        workspace_id=uuid.UUID(first), role="owner"
    )
    for token in (owner_key, people["owner"].token):
        for path in (
            "/v1/operator/workspaces",
            f"/v1/operator/workspaces/{second}",
            "/v1/operator/usage",
        ):
            status, body = await _get(http, server, path, token)
            assert status == 403, (path, body)
            house_error(body, "forbidden")
    status, body = await _get(http, server, "/v1/operator/workspaces", None)
    assert status == 401, body


async def test_a_revoked_operator_key_is_refused(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    keys = OperatorKeyRepository(server.app[POOL])
    key, secret = await keys.create()
    assert (await _get(http, server, "/v1/operator/usage", secret))[0] == 200
    await keys.revoke(key.prefix)
    status, body = await _get(http, server, "/v1/operator/usage", secret)
    assert status == 401, body
    house_error(body, "unauthorized")


async def test_operator_routes_refuse_bad_input(
    server: StartedServer, http: aiohttp.ClientSession
) -> None:
    _, secret = await OperatorKeyRepository(server.app[POOL]).create()
    for query in (
        "limit=0",
        "limit=501",
        "cursor=nonsense",
        "since=2026-02-01&until=2026-01-01",
        "since=yesterday",
        "colour=blue",
    ):
        status, body = await _get(http, server, f"/v1/operator/workspaces?{query}", secret)
        assert status == 422, (query, body)
        house_error(body, "invalid_request")
    status, body = await _get(http, server, "/v1/operator/usage?until=2020-13-01", secret)
    assert status == 422, body
    for missing in ("not-a-uuid", str(uuid.uuid4())):
        status, body = await _get(http, server, f"/v1/operator/workspaces/{missing}", secret)
        assert status == 404, body
        house_error(body, "not_found")
