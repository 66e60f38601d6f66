"""A process's jobs machinery, started and stopped as one: service, relay, broker, worker.

``voicestream serve`` opens it with a worker inside (unless ``VOICESTREAM_JOBS_WORKER`` is
off), so a single machine completes jobs with nothing configured; ``voicestream worker``
opens it on its own to scale out. Every process also relays the outbox and sweeps, so jobs
keep moving as long as any one of them runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from taskiq.receiver import Receiver

from ..config import Settings
from ..store import db
from .context import JobEngines
from .lifecycle import JobService
from .queue import TASK_NAME, open_broker
from .registry import load_job_types
from .relay import OutboxRelay
from .schedules import run_schedules
from .worker import FilesFactory, JobWorker

__all__ = ["Jobs", "open_jobs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Jobs:
    service: JobService
    relay: OutboxRelay
    worker: JobWorker | None  # None: this process submits and relays, workers run elsewhere


@contextlib.asynccontextmanager
async def open_jobs(
    settings: Settings,
    pool: db.Pool,
    redis_url: str,
    engines: JobEngines,
    *,
    worker: bool,
    files: FilesFactory,
    concurrency: int | None = None,
) -> AsyncIterator[Jobs]:
    load_job_types(settings)
    broker = open_broker(settings, redis_url, worker=worker)
    relay_ref: list[OutboxRelay] = []
    service = JobService(pool, settings, on_enqueued=lambda: relay_ref[0].poke())
    job_worker = JobWorker(service, engines, settings, files) if worker else None
    # The task's body only runs where a worker consumes; elsewhere it is only kicked.
    handler = job_worker.handle if job_worker is not None else _not_here

    # A plain function: taskiq renames what it registers (bound methods have no __name__).
    async def run_job(job_id: str) -> None:
        await handler(job_id)

    task = broker.register_task(run_job, task_name=TASK_NAME)
    relay = OutboxRelay(pool, task, service, settings)
    relay_ref.append(relay)
    await broker.startup()
    tasks: list[asyncio.Task[None]] = [
        asyncio.create_task(relay.run(), name="jobs-relay"),
        # Every process submits periodic jobs; idempotency keys keep one per period.
        asyncio.create_task(run_schedules(service, settings), name="jobs-schedules"),
    ]
    finish = asyncio.Event()
    listening: asyncio.Task[None] | None = None
    if job_worker is not None:
        receiver = Receiver(
            broker,
            max_async_tasks=concurrency or settings.jobs_concurrency,
            max_prefetch=0,
            run_startup=False,  # done above, once
            wait_tasks_timeout=15,
        )
        listening = asyncio.create_task(receiver.listen(finish), name="jobs-receiver")
    try:
        yield Jobs(service, relay, job_worker)
    finally:
        if job_worker is not None:
            await job_worker.close()
        finish.set()
        if listening is not None:
            try:
                await asyncio.wait_for(listening, 20)
            except TimeoutError:
                log.warning("the job receiver did not stop in time")
            except Exception as exc:  # its own errors are logged; do not fail the shutdown
                log.warning("the job receiver stopped with %s", exc)
        for task_ in tasks:
            task_.cancel()
        for task_ in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task_
        await broker.shutdown()


async def _not_here(job_id: str) -> None:
    raise RuntimeError("this process runs no job worker")
