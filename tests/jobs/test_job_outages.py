"""Jobs through outages, for real (``kill -9`` of the embedded services' processes):

- Redis restarted with jobs queued — and, worse, come back empty (its data and the consumer
  group lost): every job still runs, once (PostgreSQL is the truth; the sweeper puts queued
  jobs back on the stream, and the worker re-creates its group);
- PostgreSQL restarted while a job runs and others wait: the API and the in-process worker
  recover by themselves and every job completes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from fixtures_services import OwnDatabase, make_data_dir, own_database
from helpers import StartedServer, start_test_server
from jobs.job_servers import job_settings
from jobs.sample_job_types import ECHO, SLEEP
from server.waiting import eventually
from voicestream.config import load_settings
from voicestream.engines.catalog import EngineRegistry
from voicestream.engines.executor import InferenceExecutor
from voicestream.jobs.context import JobEngines
from voicestream.jobs.runtime import open_jobs
from voicestream.rest.files import FILES
from voicestream.server.jobs_runtime import SERVICE_URLS
from voicestream.store._proc import pid_alive
from voicestream.store.embedded import ServiceURLs
from voicestream.store.redis_client import create_redis

pytestmark = pytest.mark.timeout(240)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def _kill_and_await_restart(pid_file: Path) -> None:
    old = await asyncio.to_thread(_read_pid, pid_file)
    assert old is not None and await asyncio.to_thread(pid_alive, old)
    os.kill(old, signal.SIGKILL)

    async def restarted() -> bool:
        pid = await asyncio.to_thread(_read_pid, pid_file)
        return pid not in (None, old) and await asyncio.to_thread(pid_alive, pid)

    await eventually(restarted, within=60, every=0.1, what=f"{pid_file.name} restarted")


@asynccontextmanager
async def _server(
    registry: EngineRegistry, data_dir: Path, **overrides: Any
) -> AsyncIterator[StartedServer]:
    settings = load_settings(
        {},
        data_dir=data_dir,
        port=0,
        convai_silence_timeout_seconds=0,
        **{**job_settings("voicestream:jobs"), **overrides},
    )
    try:
        async with start_test_server(settings, registry, key_workspace="outages") as started:
            yield started
    finally:
        postgres = data_dir / "postgres"
        if postgres.is_symlink():  # as root the cluster may live outside the data dir
            await asyncio.to_thread(shutil.rmtree, postgres.resolve(), True)
        await asyncio.to_thread(shutil.rmtree, data_dir, True)


async def _submit(s: aiohttp.ClientSession, server: StartedServer, body: Any) -> str:
    async with s.post(f"{server.url}/v1/jobs", json=body, headers=server.headers()) as r:
        assert r.status == 202, await r.text()
        job_id: str = (await r.json())["id"]
        return job_id


async def _statuses(s: aiohttp.ClientSession, server: StartedServer) -> dict[str, str] | None:
    async with s.get(f"{server.url}/v1/jobs?limit=200", headers=server.headers()) as r:
        if r.status != 200:
            return None
        return {job["id"]: job["status"] for job in (await r.json())["data"]}


def _engines(registry: EngineRegistry) -> JobEngines:
    return JobEngines(registry, {}, InferenceExecutor("stt", 1), InferenceExecutor("media", 1))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def own(embedded_services: ServiceURLs) -> AsyncIterator[OwnDatabase]:
    async with own_database(embedded_services) as database:
        yield database


async def test_jobs_queued_when_redis_restarts_empty_all_run(
    own: OwnDatabase, registry: EngineRegistry, http: aiohttp.ClientSession
) -> None:
    data_dir = await asyncio.to_thread(make_data_dir, "voicestream-jobs-redis-")
    async with (
        # Its own redis-server (embedded in its data dir, supervised); no worker of its own.
        _server(
            registry,
            data_dir,
            database_url=own.url,
            jobs_worker=False,
            jobs_republish_seconds=1.0,
        ) as server,
    ):
        ids = [
            await _submit(http, server, {"type": ECHO, "input": {"text": f"r{i}"}})
            for i in range(4)
        ]

        async def on_the_stream() -> bool:
            pending = await own.pool.fetchval("SELECT count(*) FROM job_outbox")
            published = await own.pool.fetchval(
                "SELECT count(*) FROM jobs WHERE published_at IS NOT NULL"
            )
            return pending == 0 and published == len(ids)

        await eventually(on_the_stream, within=20, what="the jobs relayed to the stream")
        await _kill_and_await_restart(data_dir / "redis" / "redis.pid")
        redis_url = server.app[SERVICE_URLS].redis_url
        client = create_redis(redis_url)
        try:
            # Back, but empty: as if its data had been lost with it.
            await eventually(client.ping, within=20, what="redis answering")
            await client.flushall()
        finally:
            await client.aclose()
        engines = _engines(registry)
        files = server.app[FILES]
        async with open_jobs(
            server.settings,
            own.pool,
            redis_url,
            engines,
            worker=True,
            files=lambda job: files.for_job(job.workspace_id, job.id),
        ):

            async def all_done() -> bool:
                statuses = await _statuses(http, server)
                return statuses is not None and all(statuses[i] == "completed" for i in ids)

            await eventually(all_done, within=60, what="every queued job completed")
        attempts = await own.pool.fetch("SELECT attempts FROM jobs")
        assert [row["attempts"] for row in attempts] == [1] * len(ids)  # each ran once


async def test_workers_and_the_api_recover_from_a_postgres_restart(
    registry: EngineRegistry, http: aiohttp.ClientSession
) -> None:
    data_dir = await asyncio.to_thread(make_data_dir, "voicestream-jobs-postgres-")
    async with _server(registry, data_dir) as server:
        running = await _submit(http, server, {"type": SLEEP, "input": {"seconds": 2}})
        waiting = [
            await _submit(http, server, {"type": ECHO, "input": {"text": f"p{i}"}})
            for i in range(3)
        ]

        async def started() -> bool:
            statuses = await _statuses(http, server)
            return statuses is not None and statuses[running] == "running"

        await eventually(started, within=20, what="the sleep job running")
        await _kill_and_await_restart(data_dir / "postgres" / "postmaster.pid")

        async def all_done() -> bool:
            statuses = await _statuses(http, server)
            return statuses is not None and all(
                statuses[i] == "completed" for i in (running, *waiting)
            )

        await eventually(all_done, within=90, every=0.2, what="every job completed")
        # And new work goes through as before.
        after = await _submit(http, server, {"type": ECHO, "input": {"text": "after"}})

        async def after_done() -> bool:
            statuses = await _statuses(http, server)
            return statuses is not None and statuses[after] == "completed"

        await eventually(after_done, within=30, what="a job submitted after the restart")
