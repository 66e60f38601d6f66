"""Retention policies (``/v1/admin/retention``) and the ``retention`` job: what is older than a
workspace's policy disappears from the database, object storage and the vectors; what is
younger stays, and so does everything of a workspace without a policy."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from server.waiting import eventually
from server.workspace_contents import Contents, age, fill_workspace, unit_vector
from server.workspace_people import team
from voicestream.rest.files import FILES
from voicestream.rest.resources import KNOWLEDGE, POOL
from voicestream.store.keys import ApiKeyRepository

POLICY = {
    "conversation_transcripts": 30,
    "conversation_audio": None,
    "tts_history": 30,
    "job_outputs": 30,
    "uploads": 30,
}


async def _admin_key(server: Any, workspace_id: str) -> dict[str, str]:
    _, secret = await ApiKeyRepository(server.app[POOL]).create(
        workspace_id=uuid.UUID(workspace_id), role="admin"
    )
    return {"Authorization": f"Bearer {secret}"}


async def _status(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> int:
    async with http.get(url, headers=headers) as response:
        return response.status


async def _finished_job(
    http: aiohttp.ClientSession, server: Any, job_id: str, headers: dict[str, str]
) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        async with http.get(f"{server.url}/v1/jobs/{job_id}", headers=headers) as response:
            job: dict[str, Any] = await response.json()
        return job if job["status"] in ("completed", "failed") else None

    job = await eventually(finished, within=30, what="the retention job to finish")
    assert job["status"] == "completed", job
    return job


async def _present(
    server: Any, http: aiohttp.ClientSession, c: Contents, h: dict[str, str]
) -> dict[str, Any]:
    """What of ``c`` the API, storage and vectors still have."""
    base = server.url
    files = server.app[FILES]
    vectors = server.app[KNOWLEDGE].vectors
    memories = await vectors.recall(
        c.workspace_id, c.end_user_id, unit_vector(c.memory_text), limit=10
    )
    keys = await server.app[POOL].fetch(
        "SELECT storage_key FROM files WHERE id = ANY($1::uuid[])",
        [uuid.UUID(c.upload_id), uuid.UUID(c.output_id)],
    )
    turns = await server.app[POOL].fetchval(
        "SELECT count(*) FROM conversation_turns WHERE conversation_id = $1",
        uuid.UUID(c.conversation_id),
    )
    return {
        "history": await _status(http, f"{base}/elevenlabs/v1/history/{c.history_item_id}", h),
        "conversation": await _status(http, f"{base}/v1/convai/sessions/{c.conversation_id}", h),
        "turns": turns,
        "memory": [hit.text for hit in memories],
        "upload": await _status(http, f"{base}/v1/files/{c.upload_id}", h),
        "output": await _status(http, f"{base}/v1/files/{c.output_id}", h),
        "objects": len([k for k in keys if await files.storage.size(k["storage_key"]) is not None]),
    }


async def test_retention_removes_what_is_past_the_policy_everywhere(server, http) -> None:
    _, workspace_id, _ = await team(server)
    headers = await _admin_key(server, workspace_id)
    old = await fill_workspace(server, workspace_id, "old-one")
    young = await fill_workspace(server, workspace_id, "young-one")
    await age(server, old, days=40)
    await age(server, young, days=10)
    _, other_id, _ = await team(server)  # no policy: nothing of it expires
    other = await fill_workspace(server, other_id, "other-old")
    await age(server, other, days=400)
    other_headers = await _admin_key(server, other_id)

    admin = f"{server.url}/v1/admin/retention"
    async with http.get(admin, headers=headers) as response:
        assert response.status == 200
        assert await response.json() == dict.fromkeys(POLICY)  # keep everything by default
    async with http.put(admin, json=POLICY, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert await response.json() == POLICY
    async with http.get(admin, headers=headers) as response:
        assert await response.json() == POLICY
    async with http.post(f"{admin}/runs", headers=headers) as response:
        assert response.status == 202, await response.text()
        job_id = (await response.json())["id"]
    job = await _finished_job(http, server, job_id, headers)
    assert job["result"]["removed"] == {
        "conversation_transcripts": 1,
        "conversation_audio": 0,
        "tts_history": 1,
        "job_outputs": 1,
        "uploads": 1,
    }

    gone = await _present(server, http, old, headers)
    assert gone == {
        "history": 404,
        "conversation": 404,
        "turns": 0,
        "memory": [],
        "upload": 404,
        "output": 404,
        "objects": 0,
    }
    kept = {
        "history": 200,
        "conversation": 200,
        "turns": 2,
        "upload": 200,
        "output": 200,
        "objects": 2,
    }
    found = await _present(server, http, young, headers)
    assert young.memory_text in found.pop("memory")
    assert found == kept
    found = await _present(server, http, other, other_headers)
    assert other.memory_text in found.pop("memory")
    assert found == kept
    # Knowledge is no retention class: the agents' documents and passages stay.
    counts = await server.app[KNOWLEDGE].vectors.count_workspace(workspace_id)
    assert counts["knowledge"] == 4


async def test_retention_bad_input_is_refused(server, http) -> None:
    _, workspace_id, people = await team(server)
    headers = await _admin_key(server, workspace_id)
    admin = f"{server.url}/v1/admin/retention"
    for body in (
        {"tts_history": 0},
        {"uploads": 36501},
        {"tts_history": "ten"},
        {"forever": 3},
        [1, 2],
    ):
        async with http.put(admin, json=body, headers=headers) as response:
            assert response.status == 422, (body, response.status)
            assert (await response.json())["error"]["code"] == "invalid_request"
    async with http.put(admin, data=b"{", headers=headers) as response:
        assert response.status == 400
    async with http.post(f"{admin}/runs", json={"now": True}, headers=headers) as response:
        assert response.status == 422
    # An editor may not change the policy, nor start the job through /v1/jobs.
    editor = {"Authorization": f"Bearer {people['editor'].token}"}
    async with http.put(admin, json={"tts_history": 1}, headers=editor) as response:
        assert response.status == 403
    job = {"type": "retention", "input": {}}
    async with http.post(f"{server.url}/v1/jobs", json=job, headers=editor) as response:
        assert response.status == 422
