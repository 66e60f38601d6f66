"""``voicestream worker`` processes, for real: one is SIGKILLed while its job runs, another
takes the job over when the dead one's lease lapses and finishes it — once: one result, one
completion, the attempt count saying it ran twice. The API server runs no worker itself."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from fixtures_services import CLI, cli_env, make_data_dir
from helpers import StartedServer
from jobs.job_servers import job_settings, jobs_server
from jobs.sample_job_types import SLEEP
from server.waiting import eventually
from voicestream.config import Settings
from voicestream.engines.catalog import EngineRegistry
from voicestream.store.embedded import ServiceURLs

TESTS = Path(__file__).parent.parent


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def crash_server(
    embedded_services: ServiceURLs, registry: EngineRegistry
) -> AsyncIterator[tuple[StartedServer, Any]]:
    async with jobs_server(
        embedded_services, registry, jobs_worker=False, webhook_allow_private=True
    ) as started:
        yield started


@asynccontextmanager
async def _webhook_receiver() -> AsyncIterator[tuple[str, list[str]]]:
    """An endpoint on 127.0.0.1 that records the ``webhook-id`` of every request."""
    ids: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        ids.append(request.headers["webhook-id"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/hook", ids
    finally:
        await runner.cleanup()


def _worker_env(settings: Settings, data_dir: Path) -> dict[str, str]:
    stream = settings.jobs_stream
    env = {Settings.env_name(k): str(v) for k, v in job_settings(stream).items()}
    return cli_env(
        **env,
        DATABASE_URL=settings.database_url or "",
        REDIS_URL=settings.redis_url or "",
        VOICESTREAM_DATA_DIR=str(data_dir),
        VOICESTREAM_JOB_TYPE_MODULES="jobs.sample_job_types",
        VOICESTREAM_WEBHOOK_ALLOW_PRIVATE="true",
        # The test job types need no models: the lightest engines keep start-up cheap.
        VOICESTREAM_STT_ENGINE="pocketsphinx",
        VOICESTREAM_STT_PARTIALS="none",
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    )


@asynccontextmanager
async def _worker(settings: Settings) -> AsyncIterator[asyncio.subprocess.Process]:
    data_dir = await asyncio.to_thread(make_data_dir, "voicestream-worker-")
    log = await asyncio.to_thread(open, data_dir / "worker.log", "wb")
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "worker",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=_worker_env(settings, data_dir),
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def _job(s: aiohttp.ClientSession, server: StartedServer, job_id: str) -> dict[str, Any]:
    async with s.get(f"{server.url}/v1/jobs/{job_id}", headers=server.headers()) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


# Two worker processes start (imports, engines constructed): slow on a loaded machine.
@pytest.mark.timeout(240)
async def test_a_killed_workers_job_is_finished_once_by_another_worker(
    crash_server: tuple[StartedServer, Any], http: aiohttp.ClientSession
) -> None:
    server, own = crash_server
    settings = server.settings
    async with _webhook_receiver() as (hook_url, hook_ids):
        endpoint = {"url": hook_url, "events": ["job.completed"]}
        async with http.post(
            f"{server.url}/v1/webhooks", json=endpoint, headers=server.headers()
        ) as r:
            assert r.status == 201, await r.text()
        await _crash_and_recover(server, own, settings, http, hook_ids)


async def _crash_and_recover(
    server: StartedServer,
    own: Any,
    settings: Settings,
    http: aiohttp.ClientSession,
    hook_ids: list[str],
) -> None:
    body = {"type": SLEEP, "input": {"seconds": 4}}
    headers = {**server.headers(), "Idempotency-Key": f"crash-{uuid.uuid4()}"}
    async with http.post(f"{server.url}/v1/jobs", json=body, headers=headers) as r:
        assert r.status == 202, await r.text()
        job_id = (await r.json())["id"]

    async with _worker(settings) as first:

        async def running_in_first() -> bool:
            job = await _job(http, server, job_id)
            return job["status"] == "running" and job["progress"] > 0

        await eventually(running_in_first, within=60, every=0.1, what="the first worker running it")
        first.send_signal(signal.SIGKILL)
        await first.wait()
        assert first.returncode == -signal.SIGKILL

    async with _worker(settings) as second:

        async def completed() -> dict[str, Any] | None:
            job = await _job(http, server, job_id)
            return job if job["status"] in ("completed", "failed") else None

        done = await eventually(completed, within=60, every=0.1, what="the second worker")
        assert done["status"] == "completed", done
        assert done["result"]["pid"] == second.pid
        assert done["attempts"] == 2  # the killed attempt counts
    rows = await own.pool.fetch("SELECT status, result FROM jobs WHERE id = $1", uuid.UUID(job_id))
    assert len(rows) == 1 and rows[0]["status"] == "completed"
    assert await own.pool.fetchval("SELECT count(*) FROM job_outbox") == 0
    # One ledger posting for the outcome, one webhook event (retries of it may repeat its id).
    kinds = await own.pool.fetch(
        "SELECT kind FROM ledger_transactions WHERE job_id = $1 ORDER BY id", uuid.UUID(job_id)
    )
    assert [row["kind"] for row in kinds] == ["reserve", "settle"]
    events = await own.pool.fetch(
        "SELECT event_id FROM webhook_deliveries WHERE event_type LIKE 'job.%'"
    )
    assert [row["event_id"] for row in events] == [f"evt_{job_id}_completed"]
    await eventually(lambda: hook_ids, within=30, what="the webhook delivered")
    assert len(set(hook_ids)) == 1, hook_ids
