"""A job's ``result.files[].url`` is signed afresh on each ``GET /v1/jobs/{id}`` and in the
listing (issue 10 §4): the URL stored with the job expires (here after one second), yet
reading an old job gives a URL that downloads its output.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from helpers import StartedServer
from jobs.job_servers import jobs_server
from server.waiting import eventually
from voicestream.engines.catalog import EngineRegistry
from voicestream.rest.resources import POOL
from voicestream.store.embedded import ServiceURLs


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def short_urls(
    embedded_services: ServiceURLs, registry: EngineRegistry
) -> AsyncIterator[StartedServer]:
    async with jobs_server(embedded_services, registry, file_url_seconds=1) as (server, _):
        yield server


def _absolute(server: StartedServer, url: str) -> str:
    return url if url.startswith("http") else f"{server.url}{url}"


async def _job(http: aiohttp.ClientSession, server: StartedServer, job_id: str) -> Any:
    async with http.get(f"{server.url}/v1/jobs/{job_id}", headers=server.headers()) as r:
        assert r.status == 200
        return await r.json()


async def test_an_old_job_s_output_url_still_downloads(
    http: aiohttp.ClientSession, short_urls: StartedServer
) -> None:
    server = short_urls
    body = {"type": "tts", "input": {"text": "Hello.", "voice": "slt", "format": "wav_16000"}}
    async with http.post(f"{server.url}/v1/jobs", json=body, headers=server.headers()) as r:
        job_id = (await r.json())["id"]
        assert r.status == 202

    async def completed() -> Any:
        job = await _job(http, server, job_id)
        assert job["status"] not in ("failed", "cancelled"), job
        return job if job["status"] == "completed" else None

    await eventually(completed, within=60, what="the tts job to complete")
    # The URL as stored with the job, which GET /v1/jobs/{id} used to hand out as it was.
    stored = await server.app[POOL].fetchval("SELECT result FROM jobs WHERE id = $1::uuid", job_id)
    stored = json.loads(stored) if isinstance(stored, str) else stored
    old_url = _absolute(server, stored["files"][0]["url"])

    async def expired() -> bool:
        async with http.get(old_url) as r:
            return r.status == 410

    await eventually(expired, within=10, what="the stored URL to expire")
    fresh = (await _job(http, server, job_id))["result"]["files"][0]
    assert fresh["url"] != stored["files"][0]["url"]
    async with http.get(_absolute(server, fresh["url"])) as r:
        assert r.status == 200, await r.text()
        audio = await r.read()
    assert audio[:4] == b"RIFF" and len(audio) == fresh["bytes"]

    async with http.get(f"{server.url}/v1/jobs", headers=server.headers()) as r:
        listed = next(j for j in (await r.json())["data"] if j["id"] == job_id)
    async with http.get(_absolute(server, listed["result"]["files"][0]["url"])) as r:
        assert r.status == 200, await r.text()
        assert await r.read() == audio
