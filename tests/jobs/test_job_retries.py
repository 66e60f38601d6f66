"""Retries: a failing attempt comes back after an exponential, jittered backoff; after the
last attempt the job is dead (``failed``) with the last error; a caller's error is not
retried. On a server of its own with quick retries (``conftest.FAST_JOBS``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest_asyncio

from helpers import StartedServer
from jobs.job_servers import FAST_JOBS, jobs_server
from jobs.sample_job_types import FLAKY
from server.waiting import eventually
from voicestream.engines.catalog import EngineRegistry
from voicestream.jobs.lifecycle import retry_delay
from voicestream.store.embedded import ServiceURLs


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def retry_server(
    embedded_services: ServiceURLs, registry: EngineRegistry
) -> AsyncIterator[StartedServer]:
    async with jobs_server(embedded_services, registry) as (server, _):
        yield server


async def _get(s: aiohttp.ClientSession, server: StartedServer, job_id: str) -> dict[str, Any]:
    async with s.get(f"{server.url}/v1/jobs/{job_id}", headers=server.headers()) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def _submit(s: aiohttp.ClientSession, server: StartedServer, job_input: Any) -> str:
    body = {"type": FLAKY, "input": job_input}
    async with s.post(f"{server.url}/v1/jobs", json=body, headers=server.headers()) as r:
        assert r.status == 202, await r.text()
        job_id: str = (await r.json())["id"]
        return job_id


def test_the_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 10.0)):
        delays = [retry_delay(attempt, 1.0, 10.0) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > full / 10  # jittered, not one fixed value


async def test_a_failing_job_is_retried_after_a_backoff_then_completes(
    retry_server: StartedServer, http: aiohttp.ClientSession
) -> None:
    job_id = await _submit(http, retry_server, {"fail_times": 2})
    seen: list[dict[str, Any]] = []

    async def waiting_to_retry() -> dict[str, Any] | None:
        job = await _get(http, retry_server, job_id)
        seen.append(job)
        return job if job["status"] == "queued" and job["attempts"] == 1 else None

    between = await eventually(waiting_to_retry, within=20, every=0.02, what="a retry pending")
    assert between["error"]["code"] == "job_failed"
    assert "attempt 1 failed on purpose" in between["error"]["message"]
    retry_at = datetime.fromisoformat(between["next_attempt_at"])
    assert retry_at > datetime.fromisoformat(between["started_at"])

    async def completed() -> dict[str, Any] | None:
        job = await _get(http, retry_server, job_id)
        return job if job["status"] == "completed" else None

    done = await eventually(completed, within=20, what="the third attempt completing")
    assert done["attempts"] == 3 and done["result"] == {"attempt": 3}
    # The second attempt started no sooner than its backoff allowed (half the base, at least).
    finished = datetime.fromisoformat(done["finished_at"])
    started = datetime.fromisoformat(done["started_at"])
    assert (finished - started).total_seconds() >= FAST_JOBS["jobs_retry_base_seconds"] / 2


async def test_after_the_last_attempt_the_job_is_dead_with_the_last_error(
    retry_server: StartedServer, http: aiohttp.ClientSession
) -> None:
    job_id = await _submit(http, retry_server, {"fail_times": 99})

    async def dead() -> dict[str, Any] | None:
        job = await _get(http, retry_server, job_id)
        return job if job["status"] == "failed" else None

    done = await eventually(dead, within=30, what="the job dead-lettered")
    assert done["attempts"] == FAST_JOBS["jobs_max_attempts"]
    assert done["error"] == {
        "code": "job_failed",
        "message": "RuntimeError: attempt 3 failed on purpose",
    }
    assert done["next_attempt_at"] is None and done["result"] is None


async def test_a_callers_error_is_not_retried(
    retry_server: StartedServer, http: aiohttp.ClientSession
) -> None:
    job_id = await _submit(http, retry_server, {"fail_times": 0, "permanent": True})

    async def dead() -> dict[str, Any] | None:
        job = await _get(http, retry_server, job_id)
        return job if job["status"] == "failed" else None

    done = await eventually(dead, within=20, what="the job failed")
    assert done["attempts"] == 1 and done["error"]["code"] == "not_found"
