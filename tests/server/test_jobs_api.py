"""``/v1/jobs`` against the session server (its in-process worker runs the jobs): submission
with Idempotency-Key (same body, other body, concurrent), the lifecycle with progress, cancel
of a running job at its checkpoint, listing with cursor and filters, roles and tenants."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp

from fixtures_services import unique_name
from jobs.sample_job_types import ECHO, FLAKY, SLEEP
from server.waiting import eventually
from voicestream.rest.resources import POOL
from voicestream.store import jobs as job_store
from voicestream.store.keys import ApiKeyRepository

NOBODY = "3d8d3f1c-0fbf-45c5-b87d-056a335f8071"


async def _key(server: Any, role: str = "owner", workspace: str | None = None) -> dict[str, str]:
    _, key = await ApiKeyRepository(server.app[POOL]).create(
        workspace=workspace or unique_name("jobs-api"), role=role
    )
    return server.headers(key)


async def _call(
    s: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with s.request(method, url, **kw) as r:
        assert r.content_type == "application/json", await r.text()
        return r.status, await r.json(), dict(r.headers)


async def _submit(
    s: aiohttp.ClientSession, server: Any, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    status, job, _ = await _call(s, "POST", f"{server.url}/v1/jobs", json=body, headers=headers)
    assert status == 202, job
    return job


async def _finished(
    s: aiohttp.ClientSession, server: Any, headers: dict[str, str], job_id: str, within: float = 20
) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        _, job, _ = await _call(s, "GET", f"{server.url}/v1/jobs/{job_id}", headers=headers)
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    result: dict[str, Any] = await eventually(done, within=within, what=f"job {job_id} finished")
    return result


async def test_a_job_runs_to_completion_with_its_result(server, http) -> None:
    headers = await _key(server)
    job = await _submit(http, server, headers, {"type": ECHO, "input": {"text": "hi", "steps": 3}})
    assert job["status"] == "queued" and job["progress"] == 0 and job["attempts"] == 0
    assert job["input"] == {"text": "hi", "steps": 3}
    done = await _finished(http, server, headers, job["id"])
    assert done["status"] == "completed", done
    assert done["result"] == {"echo": "hi"}
    assert done["progress"] == 100 and done["attempts"] == 1 and done["error"] is None
    assert done["started_at"] is not None and done["finished_at"] >= done["started_at"]


async def test_same_idempotency_key_and_body_give_the_same_job(server, http) -> None:
    headers = await _key(server)
    body = {"type": ECHO, "input": {"text": "once"}}
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = await _submit(http, server, {**headers, **key}, body)
    # Key order in the body does not make it another body.
    status, again, replay_headers = await _call(
        http,
        "POST",
        f"{server.url}/v1/jobs",
        data='{"input": {"text": "once"}, "type": "' + ECHO + '"}',
        headers={**headers, **key, "Content-Type": "application/json"},
    )
    assert status == 202 and again["id"] == first["id"], again
    assert replay_headers.get("Idempotent-Replayed") == "true"
    # Without a key, the same body is a new job.
    other = await _submit(http, server, headers, body)
    assert other["id"] != first["id"]


async def test_same_idempotency_key_with_another_body_is_422(server, http) -> None:
    headers = await _key(server)
    key = {"Idempotency-Key": f"k-{uuid.uuid4()}"}
    first = await _submit(http, server, {**headers, **key}, {"type": ECHO, "input": {"text": "a"}})
    status, body, _ = await _call(
        http,
        "POST",
        f"{server.url}/v1/jobs",
        json={"type": ECHO, "input": {"text": "b"}},
        headers={**headers, **key},
    )
    assert status == 422, body
    assert body["error"]["code"] == "invalid_request"
    assert "Idempotency-Key" in body["error"]["message"]
    assert body["error"]["details"]["job_id"] == first["id"]


async def test_concurrent_requests_with_one_key_make_one_job(server, http) -> None:
    headers = await _key(server)
    key = f"k-{uuid.uuid4()}"
    body = {"type": ECHO, "input": {"text": "race"}}

    async def post() -> tuple[int, dict[str, Any]]:
        status, answer, _ = await _call(
            http,
            "POST",
            f"{server.url}/v1/jobs",
            json=body,
            headers={**headers, "Idempotency-Key": key},
        )
        return status, answer

    answers = await asyncio.gather(*(post() for _ in range(8)))
    assert {status for status, _ in answers} <= {202, 409}, answers
    ids = {answer["id"] for status, answer in answers if status == 202}
    assert len(ids) == 1, answers
    conflicts = [answer for status, answer in answers if status == 409]
    assert all(a["error"]["code"] == "conflict" for a in conflicts), conflicts
    rows = await server.app[POOL].fetchval(
        "SELECT count(*) FROM jobs WHERE idempotency_key = $1", key
    )
    assert rows == 1


async def test_a_key_still_in_flight_is_409(server, http) -> None:
    """While the first request with a key holds it (its transaction open), the second waits
    for nothing: 409. The first request's hold is the lock the submission takes."""
    record, plaintext = await ApiKeyRepository(server.app[POOL]).create(
        workspace=unique_name("jobs-api"), role="owner"
    )
    headers = server.headers(plaintext)
    key = f"k-{uuid.uuid4()}"
    workspace_id = record.workspace_id
    async with server.app[POOL].acquire() as conn, conn.transaction():
        assert await job_store.try_idempotency_lock(conn, workspace_id, key)
        status, body, _ = await _call(
            http,
            "POST",
            f"{server.url}/v1/jobs",
            json={"type": ECHO, "input": {"text": "x"}},
            headers={**headers, "Idempotency-Key": key},
        )
    assert status == 409, body
    assert body["error"]["code"] == "conflict"
    # Once the first is done, the key works.
    body = {"type": ECHO, "input": {"text": "x"}}
    await _submit(http, server, {**headers, "Idempotency-Key": key}, body)


async def test_cancel_stops_a_running_job_at_its_next_checkpoint(server, http) -> None:
    headers = await _key(server)
    job = await _submit(http, server, headers, {"type": SLEEP, "input": {"seconds": 30}})

    async def running() -> bool:
        _, now, _ = await _call(http, "GET", f"{server.url}/v1/jobs/{job['id']}", headers=headers)
        return now["status"] == "running" and now["progress"] >= 0 and now["started_at"]

    await eventually(running, within=20, what="the job running")
    status, asked, _ = await _call(
        http, "POST", f"{server.url}/v1/jobs/{job['id']}/cancel", headers=headers
    )
    assert status == 202, asked
    assert asked["cancel_requested_at"] is not None
    done = await _finished(http, server, headers, job["id"], within=10)
    assert done["status"] == "cancelled", done
    assert done["result"] is None and done["progress"] < 100
    # A finished job cannot be cancelled again.
    status, body, _ = await _call(
        http, "POST", f"{server.url}/v1/jobs/{job['id']}/cancel", headers=headers
    )
    assert status == 409 and body["error"]["code"] == "conflict", body


async def test_a_permanent_error_fails_the_job_at_once_with_the_error(server, http) -> None:
    headers = await _key(server)
    job = await _submit(
        http, server, headers, {"type": FLAKY, "input": {"fail_times": 0, "permanent": True}}
    )
    done = await _finished(http, server, headers, job["id"])
    assert done["status"] == "failed", done
    assert done["attempts"] == 1
    assert done["error"]["code"] == "not_found" and "no file" in done["error"]["message"]


async def test_listing_pages_and_filters(server, http) -> None:
    headers = await _key(server)
    ids = [
        (await _submit(http, server, headers, {"type": ECHO, "input": {"text": f"n{i}"}}))["id"]
        for i in range(5)
    ]
    for job_id in ids:
        await _finished(http, server, headers, job_id)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, page, _ = await _call(
            http, "GET", f"{server.url}/v1/jobs", params=params, headers=headers
        )
        assert status == 200, page
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))  # newest first, each once
    status, page, _ = await _call(
        http, "GET", f"{server.url}/v1/jobs?status=completed&type={ECHO}", headers=headers
    )
    assert status == 200 and len(page["data"]) == 5
    status, page, _ = await _call(
        http, "GET", f"{server.url}/v1/jobs?status=queued,running", headers=headers
    )
    assert status == 200 and page["data"] == []
    for bad in ("status=done", "limit=0", "limit=x", "cursor=nonsense", "colour=red"):
        status, body, _ = await _call(http, "GET", f"{server.url}/v1/jobs?{bad}", headers=headers)
        assert status == 422, (bad, body)


async def test_bad_submissions_are_422_and_store_nothing(server, http) -> None:
    headers = await _key(server)
    cases: list[Any] = [
        {"type": "no.such.type", "input": {}},
        {"type": ECHO, "input": {"text": ""}},
        {"type": ECHO, "input": {"text": "x", "colour": "red"}},
        {"type": ECHO},
        {"input": {"text": "x"}},
        {"type": ECHO, "input": [1, 2]},
        [1, 2],
    ]
    for body in cases:
        status, answer, _ = await _call(
            http, "POST", f"{server.url}/v1/jobs", json=body, headers=headers
        )
        assert status == 422, (body, answer)
        assert answer["error"]["code"] == "invalid_request"
    status, answer, _ = await _call(
        http,
        "POST",
        f"{server.url}/v1/jobs",
        json={"type": ECHO, "input": {"text": "x"}},
        headers={**headers, "Idempotency-Key": "has space"},
    )
    assert status == 422, answer
    status, page, _ = await _call(http, "GET", f"{server.url}/v1/jobs", headers=headers)
    assert page["data"] == []


async def test_roles_and_tenants(server, http) -> None:
    workspace = unique_name("jobs-roles")
    owner = await _key(server, "owner", workspace)
    viewer = await _key(server, "viewer", workspace)
    stranger = await _key(server)
    job = await _submit(http, server, owner, {"type": ECHO, "input": {"text": "mine"}})
    status, _, _ = await _call(http, "GET", f"{server.url}/v1/jobs/{job['id']}", headers=viewer)
    assert status == 200
    status, body, _ = await _call(
        http, "POST", f"{server.url}/v1/jobs", json={"type": ECHO, "input": {"text": "x"}},
        headers=viewer,
    )  # fmt: skip
    assert status == 403, body
    for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{NOBODY}", "/v1/jobs/not-a-uuid"):
        status, body, _ = await _call(http, "GET", f"{server.url}{path}", headers=stranger)
        assert status == 404 and body["error"]["code"] == "not_found", (path, body)
    status, body, _ = await _call(
        http, "POST", f"{server.url}/v1/jobs/{job['id']}/cancel", headers=stranger
    )
    assert status == 404, body
    _, page, _ = await _call(http, "GET", f"{server.url}/v1/jobs", headers=stranger)
    assert page["data"] == []
