"""``GET /v1/audit-logs`` and the entries critical actions leave, through the real server.

Agent and history actions appear with the actor (the key), its address and User-Agent; a
workspace sees only its own entries; only owners and admins may read the log; pages cover
every entry once; bad parameters are 422s. An entry that cannot be written stops the action.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from helpers import StartedServer, settings_for_test_server, start_test_server
from voicestream.engines.catalog import EngineRegistry
from voicestream.rest.resources import POOL
from voicestream.store import db
from voicestream.store.embedded import ServiceURLs
from voicestream.store.keys import ApiKey, ApiKeyRepository

_AGENT: Any = {"name": "front desk", "voice": "slt"}
_UA = "audit-test/1.0 (pytest)"


@dataclass(frozen=True)
class Workspace:
    name: str
    keys: dict[str, tuple[ApiKey, str]]  # by role: the stored key and its plaintext

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role][1]}", "User-Agent": _UA}

    def key(self, role: str) -> ApiKey:
        return self.keys[role][0]


async def _workspace(server: Any) -> Workspace:
    repo = ApiKeyRepository(server.app[POOL])
    name = f"audit-{uuid.uuid4().hex[:8]}"
    keys = {}
    for role in ("owner", "admin", "editor", "viewer"):
        keys[role] = await repo.create(workspace=name, role=role)
    return Workspace(name, keys)


@pytest.fixture
async def ws(server: Any) -> Workspace:
    return await _workspace(server)


async def _log(
    http: aiohttp.ClientSession, server: Any, ws: Workspace, query: str = "", role: str = "owner"
) -> dict[str, Any]:
    url = f"{server.url}/v1/audit-logs{query}"
    async with http.get(url, headers=ws.headers(role)) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def _create_agent(http: aiohttp.ClientSession, server: Any, ws: Workspace) -> str:
    async with http.post(
        f"{server.url}/v1/agents", json=_AGENT, headers=ws.headers("editor")
    ) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["id"])


async def test_agent_actions_are_recorded_with_actor_address_and_agent(
    server: Any, http: aiohttp.ClientSession, ws: Workspace
) -> None:
    base, headers = f"{server.url}/v1/agents", ws.headers("editor")
    agent = await _create_agent(http, server, ws)
    async with http.patch(f"{base}/{agent}", json={"name": "desk"}, headers=headers) as r:
        assert r.status == 200, await r.text()
    document = {"name": "hours", "text": "We open at nine."}
    async with http.post(f"{base}/{agent}/documents", json=document, headers=headers) as r:
        assert r.status == 201, await r.text()
        doc = (await r.json())["id"]
    async with http.delete(f"{base}/{agent}/documents/{doc}", headers=headers) as r:
        assert r.status == 204, await r.text()
    async with http.delete(f"{base}/{agent}", headers=headers) as r:
        assert r.status == 204, await r.text()

    entries = (await _log(http, server, ws))["data"]
    assert [(e["action"], e["target"]["id"]) for e in entries] == [
        ("agent.deleted", agent),
        ("agent.document_deleted", doc),
        ("agent.document_added", doc),
        ("agent.updated", agent),
        ("agent.created", agent),
    ]
    editor = ws.key("editor")
    for entry in entries:
        assert entry["actor"] == {
            "display": editor.prefix,
            "user_id": None,
            "api_key_id": str(editor.id),
        }
        assert (entry["ip"], entry["user_agent"]) == ("127.0.0.1", _UA)
        assert entry["workspace_id"] == str(editor.workspace_id)
    assert entries[3]["details"] == {"fields": ["name"]}
    assert entries[2]["target"]["type"] == "agent_document"


@pytest.fixture(scope="module")
async def behind_proxy(
    embedded_services: ServiceURLs, registry: EngineRegistry, tmp_path_factory: Any
) -> AsyncIterator[StartedServer]:
    """A server told to believe its proxy's X-Forwarded-* headers."""
    settings = settings_for_test_server(
        embedded_services, tmp_path_factory.mktemp("audit-proxy"), trust_forwarded_headers=True
    )
    async with start_test_server(settings, registry) as started:
        yield started


async def test_the_address_is_the_proxys_report_only_behind_a_trusted_proxy(
    server: Any, behind_proxy: StartedServer, http: aiohttp.ClientSession, ws: Workspace
) -> None:
    # The client wrote the first hop; the proxy appended the address it saw.
    forwarded = {**ws.headers("editor"), "X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    for started in (server, behind_proxy):
        async with http.post(f"{started.url}/v1/agents", json=_AGENT, headers=forwarded) as r:
            assert r.status == 201, await r.text()
    entries = (await _log(http, server, ws))["data"]
    assert [e["ip"] for e in entries] == ["203.0.113.9", "127.0.0.1"]


async def test_history_export_and_delete_are_recorded(
    server: Any, http: aiohttp.ClientSession, ws: Workspace
) -> None:
    el = f"{server.url}/elevenlabs/v1"
    async with http.post(
        f"{el}/text-to-speech/slt", json={"text": "For the record."}, headers=ws.headers("editor")
    ) as r:
        assert r.status == 200, await r.text()
        await r.read()
        item = r.headers["history-item-id"]
    # A viewer may export (it only reads), and is recorded doing so.
    body = {"history_item_ids": [item]}
    async with http.post(f"{el}/history/download", json=body, headers=ws.headers("viewer")) as r:
        assert r.status == 200, await r.text()
    async with http.delete(f"{el}/history/{item}", headers=ws.headers("editor")) as r:
        assert r.status == 200, await r.text()
    async with http.delete(f"{el}/history/{item}", headers=ws.headers("editor")) as r:
        assert r.status == 404  # and no entry for a delete that found nothing

    entries = (await _log(http, server, ws, "?action=history.*"))["data"]
    assert [(e["action"], e["actor"]["api_key_id"]) for e in entries] == [
        ("history.deleted", str(ws.key("editor").id)),
        ("history.exported", str(ws.key("viewer").id)),
    ]
    assert entries[1]["details"]["history_item_ids"] == [item]


async def test_only_owners_and_admins_read_the_log(
    server: Any, http: aiohttp.ClientSession, ws: Workspace
) -> None:
    for role in ("owner", "admin"):
        assert (await _log(http, server, ws, role=role))["data"] == []
    for role in ("editor", "viewer"):
        async with http.get(f"{server.url}/v1/audit-logs", headers=ws.headers(role)) as r:
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "forbidden"
    async with http.get(f"{server.url}/v1/audit-logs") as r:
        assert r.status == 401


async def test_a_workspace_sees_only_its_own_entries(
    server: Any, http: aiohttp.ClientSession, ws: Workspace
) -> None:
    other = await _workspace(server)
    mine = await _create_agent(http, server, ws)
    theirs = await _create_agent(http, server, other)
    seen = [e["target"]["id"] for e in (await _log(http, server, ws))["data"]]
    assert seen == [mine]
    seen = [e["target"]["id"] for e in (await _log(http, server, other))["data"]]
    assert seen == [theirs]
    # Naming the other workspace's key or agent finds nothing either.
    query = f"?actor={other.key('editor').id}"
    assert (await _log(http, server, ws, query))["data"] == []
    assert (await _log(http, server, ws, f"?target_type=agent&target_id={theirs}"))["data"] == []


async def test_pages_cover_every_entry_once(
    server: Any, http: aiohttp.ClientSession, ws: Workspace
) -> None:
    agent = await _create_agent(http, server, ws)
    for n in range(6):
        async with http.patch(
            f"{server.url}/v1/agents/{agent}", json={"name": f"n{n}"}, headers=ws.headers("owner")
        ) as r:
            assert r.status == 200, await r.text()
    everything = [e["id"] for e in (await _log(http, server, ws, "?limit=200"))["data"]]
    assert len(everything) == 7 and everything == sorted(everything, reverse=True)
    paged: list[int] = []
    query = "?limit=3"
    for _ in range(4):  # 7 entries: 3 pages, and a fourth would be one too many
        page = await _log(http, server, ws, query)
        assert len(page["data"]) <= 3
        paged += [e["id"] for e in page["data"]]
        if page["next_cursor"] is None:
            break
        query = f"?limit=3&cursor={page['next_cursor']}"
    assert paged == everything
    updates = await _log(http, server, ws, "?action=agent.updated&limit=200")
    assert len(updates["data"]) == 6


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=201",
        "limit=ten",
        "cursor=bm90LWEtY3Vyc29y",
        "cursor=%%%",
        "action=KEY%25",
        "since=yesterday",
        "since=2024-01-01T00:00:00",  # no offset
        "since=2024-02-01T00:00:00Z&until=2024-01-01T00:00:00Z",
        "acton=key.created",  # a typo must not list everything
        "limit=5&limit=6",
    ],
)
async def test_bad_parameters_are_422(
    server: Any, http: aiohttp.ClientSession, ws: Workspace, query: str
) -> None:
    async with http.get(f"{server.url}/v1/audit-logs?{query}", headers=ws.headers("owner")) as r:
        assert r.status == 422, await r.text()
        assert (await r.json())["error"]["code"] == "invalid_request"


@asynccontextmanager
async def refusing_audit(server: Any, ws: Workspace) -> AsyncIterator[None]:
    """Appends for ``ws`` fail in the database (as a full disk or a lock timeout would)."""
    pool: db.Pool = server.app[POOL]
    name = f"audit_refuse_{uuid.uuid4().hex[:8]}"
    workspace_id = ws.key("owner").workspace_id
    await pool.execute(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'no space left'; END $$"
    )
    await pool.execute(
        f"CREATE TRIGGER {name} BEFORE INSERT ON audit_log FOR EACH ROW "
        f"WHEN (NEW.workspace_id = '{workspace_id}') EXECUTE FUNCTION {name}()"
    )
    try:
        yield
    finally:
        await pool.execute(f"DROP TRIGGER {name} ON audit_log")
        await pool.execute(f"DROP FUNCTION {name}()")


async def test_a_creation_whose_entry_cannot_be_written_is_undone(
    server: Any, http: aiohttp.ClientSession, ws: Workspace
) -> None:
    base, headers = f"{server.url}/v1/agents", ws.headers("editor")
    async with refusing_audit(server, ws):
        async with http.post(base, json=_AGENT, headers=headers) as r:
            assert r.status == 503, await r.text()
            assert (await r.json())["error"]["code"] == "service_unavailable"
    async with http.get(base, headers=headers) as r:
        assert (await r.json())["agents"] == []


async def test_changes_stop_without_their_entry(
    server: Any, http: aiohttp.ClientSession, ws: Workspace
) -> None:
    agent = await _create_agent(http, server, ws)
    url, headers = f"{server.url}/v1/agents/{agent}", ws.headers("editor")
    el = f"{server.url}/elevenlabs/v1"
    async with http.post(
        f"{el}/text-to-speech/slt", json={"text": "Keep me."}, headers=headers
    ) as r:
        assert r.status == 200, await r.text()
        await r.read()
        item = r.headers["history-item-id"]
    async with refusing_audit(server, ws):
        async with http.patch(url, json={"name": "changed"}, headers=headers) as r:
            assert r.status == 503, await r.text()
        async with http.delete(url, headers=headers) as r:
            assert r.status == 503, await r.text()
        async with http.delete(f"{el}/history/{item}", headers=headers) as r:
            assert r.status == 503, await r.text()
        body = {"history_item_ids": [item]}
        async with http.post(f"{el}/history/download", json=body, headers=headers) as r:
            assert r.status == 503, await r.text()
            assert r.content_type == "application/json"  # an error, not the audio
    async with http.get(url, headers=headers) as r:
        assert r.status == 200 and (await r.json())["name"] == _AGENT["name"]
    async with http.get(f"{el}/history/{item}", headers=headers) as r:
        assert r.status == 200
