"""Process entry for ``voicestream worker``: runs jobs from the shared stream until stopped.

A worker needs what the server's jobs need — PostgreSQL, Redis, the engines, the webhook
sender — but no HTTP. Several may run at once, on one machine or many, against one Redis and
one PostgreSQL; SIGTERM or SIGINT stops it gracefully: running jobs are given back (queued
again at once, the attempt not counted) for another worker to take. A worker killed outright
(SIGKILL, a crash) loses nothing either: its jobs' leases lapse and another worker takes them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from dataclasses import replace

from ..config import Settings
from ..engines.catalog import EngineRegistry, build_default_registry, finish_loading
from ..engines.executor import InferenceExecutor
from ..jobs.context import JobEngines
from ..jobs.runtime import open_jobs
from ..jobs.webhook_sender import run_webhook_sender
from ..moderation.service import open_moderator
from ..resilience.circuit_breakers import BreakerPolicy, configure_breakers
from ..store.files import open_file_store
from ..store.secrets import load_or_create_secret
from ..store.services import open_services
from .main import configure_logging, install_uvloop

__all__ = ["run_worker"]

log = logging.getLogger("voicestream.worker")


def run_worker(settings: Settings, *, concurrency: int | None = None) -> None:
    """Blocking: run until SIGINT/SIGTERM."""
    configure_logging(settings.log_level)
    configure_breakers(BreakerPolicy.from_settings(settings))
    install_uvloop()
    loader: list[threading.Thread] = []
    asyncio.run(_work(settings, concurrency, loader))
    if any(thread.is_alive() for thread in loader):
        # Everything is closed and stored; only a model load that cannot be interrupted is
        # left, in native code that aborts if the interpreter is torn down under it.
        logging.shutdown()
        os._exit(0)


async def _work(
    settings: Settings, concurrency: int | None, loader: list[threading.Thread]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    secret_key = settings.secret_key
    if secret_key is None:
        secret_key = await asyncio.to_thread(load_or_create_secret, settings.data_dir)
    registry = await asyncio.to_thread(build_default_registry, settings, warm=False)
    executors = {
        name: InferenceExecutor(f"tts-{name}", settings.tts_threads)
        for name in registry.tts_engine_names()
    }
    stt_executor = InferenceExecutor("stt", settings.stt_threads)
    media_executor = InferenceExecutor("media", settings.tts_threads)
    engines = JobEngines(registry, executors, stt_executor, media_executor)
    try:
        async with (
            open_services(settings) as services,
            run_webhook_sender(services.pool, settings, secret_key),
            open_file_store(settings, services.pool, secret_key) as files,
            open_moderator(services.pool, settings) as moderator,
            open_jobs(
                settings,
                services.pool,
                services.urls.redis_url,
                # What a job speaks meets its workspace's content policy, as in the server.
                replace(engines, screen_for=moderator.screen_for),
                worker=True,
                concurrency=concurrency,
                files=lambda job: files.for_job(job.workspace_id, job.id),
            ),
        ):
            # The models load while the worker already takes jobs (a job whose engine is not
            # ready yet fails its attempt as unavailable and is retried), in a daemon thread: a
            # worker stopped meanwhile must not wait for a load it will never use.
            thread = threading.Thread(
                target=_load_models, args=(registry, settings), name="load-models", daemon=True
            )
            thread.start()
            loader.append(thread)
            log.info(
                "worker running jobs from %s (concurrency %d)",
                settings.jobs_stream,
                concurrency or settings.jobs_concurrency,
            )
            await stop.wait()
            log.info("worker stopping")
    finally:
        for ex in (*executors.values(), stt_executor, media_executor):
            await asyncio.to_thread(ex.shutdown)


def _load_models(registry: EngineRegistry, settings: Settings) -> None:
    try:
        finish_loading(registry, settings)
    except Exception:  # each engine's failure is handled inside; this is a bug, not a model
        log.exception("loading the models failed")
