"""Data export and deletion on request (``/v1/admin/data-exports``, ``/v1/admin/data-deletions``).

The export archive holds everything the workspace owns, compared with what the API lists, with
a manifest whose checksums match, and no secret or another workspace's row in it. After a
deletion nothing of the workspace can be found (the API refuses its credentials, no row, no
stored object, no vector point is left) and its tombstone is there, readable with the receipt.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from typing import Any

import aiohttp

from server.waiting import JsonTextRecorder, eventually
from server.workspace_contents import fill_workspace
from server.workspace_people import team
from voicestream.rest.files import FILES
from voicestream.rest.resources import KNOWLEDGE, POOL
from voicestream.store.keys import ApiKeyRepository
from voicestream.store.workspace_data import count_owned_rows


async def _key(server: Any, workspace_id: str, role: str) -> dict[str, str]:
    _, secret = await ApiKeyRepository(server.app[POOL]).create(
        workspace_id=uuid.UUID(workspace_id), role=role
    )
    return {"Authorization": f"Bearer {secret}"}


async def _get(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Any:
    async with http.get(url, headers=headers) as response:
        assert response.status == 200, (url, response.status, await response.text())
        return await response.json()


def _lines(archive: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in archive.read(name).decode().splitlines()]


async def test_export_archive_holds_everything_the_workspace_owns(server, http) -> None:
    _, workspace_id, _ = await team(server)
    contents = await fill_workspace(server, workspace_id, "exported")
    _, other_id, _ = await team(server)
    other = await fill_workspace(server, other_id, "not-exported")
    headers = await _key(server, workspace_id, "admin")

    async with http.post(f"{server.url}/v1/admin/data-exports", headers=headers) as response:
        assert response.status == 202, await response.text()
        export_id = (await response.json())["id"]
    url = f"{server.url}/v1/admin/data-exports/{export_id}"

    async def done() -> dict[str, Any] | None:
        export: dict[str, Any] = await _get(http, url, headers)
        return export if export["status"] in ("completed", "failed") else None

    export = await eventually(done, within=30, what="the export to finish")
    assert export["status"] == "completed", export
    link = export["archive"]["url"]  # signed; relative on the local file store
    async with http.get(server.url + link if link.startswith("/") else link) as response:
        assert response.status == 200
        data = await response.read()
    assert len(data) == export["archive"]["bytes"]
    archive = zipfile.ZipFile(io.BytesIO(data))

    # The manifest's checksums and sizes are the entries'.
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["workspace_id"] == workspace_id
    listed = {entry["path"] for entry in manifest["entries"]}
    assert listed == set(archive.namelist()) - {"manifest.json"}
    for entry in manifest["entries"]:
        body = archive.read(entry["path"])
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry["path"]
        assert len(body) == entry["bytes"]

    # Compared with the API's own listings.
    agents = await _get(http, f"{server.url}/v1/agents", headers)
    exported_agents = _lines(archive, "tables/agents.jsonl")
    assert {a["id"] for a in exported_agents} == {a["id"] for a in agents["agents"]}
    history = await _get(http, f"{server.url}/elevenlabs/v1/history", headers)
    assert {h["id"] for h in _lines(archive, "tables/history_items.jsonl")} == {
        h["history_item_id"] for h in history["history"]
    }
    audio = _lines(archive, "tables/history_audio.jsonl")
    assert [a["history_item_id"] for a in audio] == [contents.history_item_id]
    sessions = await _get(http, f"{server.url}/v1/convai/sessions", headers)
    exported_sessions = _lines(archive, "tables/conversations.jsonl")
    assert {c["id"] for c in exported_sessions} == {s["id"] for s in sessions["sessions"]}
    turns = _lines(archive, "tables/conversation_turns.jsonl")
    assert sorted(t["text"] for t in turns) == ["hello back, exported", "hello from exported"]
    files = _lines(archive, "tables/files.jsonl")
    assert {f["id"] for f in files} >= {contents.upload_id, contents.output_id}
    assert archive.read(f"files/{contents.upload_id}/notes.txt") == contents.upload_bytes
    assert archive.read(f"files/{contents.output_id}/out.txt") == b"output of exported"
    members = _lines(archive, "tables/memberships.jsonl")
    assert len(members) == 4  # the team: owner, admin, editor, viewer
    knowledge = _lines(archive, "vectors/knowledge.jsonl")
    assert sorted(p["payload"]["text"] for p in knowledge) == [
        "passage one of exported",
        "passage two of exported",
    ]
    memory = _lines(archive, "vectors/memory.jsonl")
    assert [p["payload"]["text"] for p in memory] == [contents.memory_text]
    assert export["counts"]["tables/agents.jsonl"] == len(exported_agents)

    # No secret leaves, and nothing of another workspace.
    keys = _lines(archive, "tables/api_keys.jsonl")
    assert len(keys) == 2 and {k["key_hash"] for k in keys} == {"[redacted]"}
    assert contents.key_secret.encode() not in data
    for secret_like in ("hash", "secret_sealed", "password"):
        for name in archive.namelist():
            if name.startswith("tables/"):
                for row in _lines(archive, name):
                    for column, value in row.items():
                        if secret_like in column and value is not None:
                            assert value == "[redacted]", (name, column)
    everything = b"".join(archive.read(name) for name in archive.namelist())
    for foreign in (other.workspace_id, other.agent_id, other.history_item_id, "not-exported"):
        assert foreign.encode() not in everything, foreign


async def test_export_bad_input_and_other_workspaces(server, http) -> None:
    _, workspace_id, people = await team(server)
    headers = await _key(server, workspace_id, "admin")
    _, other_id, _ = await team(server)
    other_headers = await _key(server, other_id, "admin")
    base = f"{server.url}/v1/admin/data-exports"
    async with http.post(base, json={"tables": ["agents"]}, headers=headers) as response:
        assert response.status == 422
    async with http.post(base, headers=other_headers) as response:
        assert response.status == 202
        theirs = (await response.json())["id"]
    for export_id in (theirs, str(uuid.uuid4()), "not-an-id"):
        async with http.get(f"{base}/{export_id}", headers=headers) as response:
            assert response.status == 404, export_id
            assert (await response.json())["error"]["code"] == "not_found"
    # Another job of the workspace is no export.
    job = {"type": "data_export", "input": {}}
    editor = {"Authorization": f"Bearer {people['editor'].token}"}
    async with http.post(f"{server.url}/v1/jobs", json=job, headers=editor) as response:
        assert response.status == 422  # never through /v1/jobs: an editor would read it all
    async with http.post(base, headers=editor) as response:
        assert response.status == 403


async def test_deletion_leaves_nothing_but_the_tombstone(server, http) -> None:
    name, workspace_id, people = await team(server)
    contents = await fill_workspace(server, workspace_id, "deleted")
    _, other_id, _ = await team(server)
    other = await fill_workspace(server, other_id, "survivor")
    owner = {"Authorization": f"Bearer {people['owner'].token}"}
    admin = {"Authorization": f"Bearer {people['admin'].token}"}
    key = {"Authorization": f"Bearer {contents.key_secret}"}
    pool = server.app[POOL]
    storage_keys = [
        row["storage_key"]
        for row in await pool.fetch(
            "SELECT storage_key FROM files WHERE workspace_id = $1", uuid.UUID(workspace_id)
        )
    ]
    assert len(storage_keys) == 2
    base = f"{server.url}/v1/admin/data-deletions"

    # Only the owner, and only naming the workspace.
    async with http.post(base, json={"confirm": name}, headers=admin) as response:
        assert response.status == 403
    for body in ({"confirm": name + "x"}, {}, {"confirm": name, "extra": 1}):
        async with http.post(base, json=body, headers=owner) as response:
            assert response.status == 422, body
    async with http.get(f"{server.url}/v1/agents", headers=key) as response:
        assert response.status == 200  # nothing was deleted by the refusals

    # A socket opened with the workspace's key (never sent text: no audio is made).
    socket = JsonTextRecorder(
        await http.ws_connect(
            f"{server.ws_url}/elevenlabs/v1/text-to-speech/slt/stream-input",
            params={"output_format": "pcm_16000"},
            headers=await _key(server, workspace_id, "editor"),
        )
    )
    async with http.post(base, json={"confirm": name}, headers=owner) as response:
        assert response.status == 202, await response.text()
        created = await response.json()
    receipt = created["receipt"]
    assert created["workspace_id"] == workspace_id and created["status"] == "pending"
    url = f"{base}/{created['id']}"

    async def verified() -> dict[str, Any] | None:
        async with http.get(url, params={"receipt": receipt}) as response:
            assert response.status == 200, await response.text()
            found: dict[str, Any] = await response.json()
        return found if found["verified"] or found["status"] == "failed" else None

    tombstone = await eventually(verified, within=30, what="the deletion to be verified")
    assert tombstone["status"] == "deleted" and tombstone["verified"], tombstone
    assert tombstone["remaining"] == {"rows": 0, "files": 0, "vectors": 0}
    assert tombstone["counts"]["files"] == 2
    assert tombstone["counts"]["vectors"] == {"knowledge": 2, "memory": 1}
    assert tombstone["counts"]["rows"]["agents"] == 1
    assert tombstone["workspace_name"] == name
    for wrong in ("x" * 43, ""):
        async with http.get(url, params={"receipt": wrong}) as response:
            assert response.status in (404, 422), wrong

    # Nothing of it can be found: its key's socket is closed, its key and members' sessions
    # are refused, ...
    await eventually(lambda: socket.ws.closed, within=5, what="the key's socket to close")
    assert socket.ws.close_code == 4401, socket.describe()
    async with http.get(f"{server.url}/v1/agents", headers=key) as response:
        assert response.status == 401
    async with http.get(f"{server.url}/v1/agents", headers=owner) as response:
        assert response.status == 403  # a member of no workspace now
    # ... no row, no stored object, no vector point is left, ...
    rows = await count_owned_rows(pool, uuid.UUID(workspace_id))
    assert not any(rows.values()), {t: n for t, n in rows.items() if n}
    storage = server.app[FILES].storage
    assert [k for k in storage_keys if await storage.size(k) is not None] == []
    vectors = server.app[KNOWLEDGE].vectors
    assert await vectors.count_workspace(workspace_id) == {"knowledge": 0, "memory": 0}
    # ... while the audit log keeps the tombstone.
    entry = await pool.fetchrow(
        "SELECT actor_display, details FROM audit_log "
        "WHERE workspace_id = $1 AND action = 'workspace.data_deleted'",
        uuid.UUID(workspace_id),
    )
    assert entry is not None
    details = json.loads(entry["details"])
    assert details["files"] == 2 and details["vectors"] == 3 and details["rows"] > 0
    assert entry["actor_display"] == f"user:{people['owner'].id}"
    # Another workspace keeps everything.
    assert await vectors.count_workspace(other_id) == {"knowledge": 2, "memory": 1}
    other_key = {"Authorization": f"Bearer {other.key_secret}"}
    async with http.get(f"{server.url}/v1/files/{other.upload_id}", headers=other_key) as r:
        assert r.status == 200
